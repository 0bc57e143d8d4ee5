"""End to end on the tiny profile: QLoRA (real 4-bit on CPU) -> adapter -> merge -> greedy answers.

One training run (the `tiny` profile, about a minute on 2 free cores) on a synthetic set whose
labels follow a keyword rule, shared by the tests below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from psyedge.contract import CONTRACT_VERSION
from psyedge.metadata import make_manifest
from psyedge.prompt import get_template, prompt_hash, render
from training import merge, sft, train
from training.precision import choose as choose_precision
from training.synthetic import RULES, write_rule_dataset

pytestmark = pytest.mark.slow

#: Held-out exact-match accuracy the merged tiny model must reach (measured: 1.0 at 80 steps),
#: and the most the untrained model may score (measured: 0.0: it emits random characters).
TRAINED_MIN_ACCURACY = 0.8
UNTRAINED_MAX_ACCURACY = 0.1
#: |merged - (base + adapter)| logits, both computed in float32, so CPU kernels add only float32
#: accumulation-order noise (about 1e-6 here). What legitimately differs is the merged file:
#: W + BA rounded once to bf16, at most 2^-8 relative per weight (2^-9 on average), which moves
#: logits of magnitude up to 18 by about 18 * 2^-9 = 0.035 (measured: 0.035). 0.1 leaves room
#: for the rounding errors of two layers adding up.
LOGIT_ATOL = 0.1
#: Where the reference's top two logits are closer than 2 * LOGIT_ATOL, a legitimate change of
#: each by less than LOGIT_ATOL can swap them: those positions are counted, not compared. At
#: least this share of positions must be clear of such ties, or the comparison says nothing.
MIN_CLEAR_SHARE = 0.8  # measured 0.92 (238 of 259)


@pytest.fixture(scope="module")
def run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = tmp_path_factory.mktemp("rule-data")
    write_rule_dataset(data, 300, seed=0)
    sft.build_sft(data, "deepseek-r1")
    out = tmp_path_factory.mktemp("runs") / "tiny"
    rc = train.main(["--profile", "tiny", "--base-model", str(tiny_base), "--data-dir", str(data),
                     "--out", str(out), "--submit", "local"])
    assert rc == 0
    merged = merge.merge(tiny_base, out / "adapter", out / "merged")
    return {"data": data, "out": out, "merged": merged}


def test_outputs_and_loss_falls(run: dict) -> None:
    out = run["out"]
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json",
                 "adapter/psyedge_train.json",
                 "train_results.json", "eval_results.json", "training_loss.png", "training_eval_loss.png",
                 "config.yaml"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1].startswith("checkpoint-")
    results = json.loads((out / "train_results.json").read_text())
    assert results["global_step"] == 80 and results["resumed_from_step"] == 0
    chosen = choose_precision("auto")  # the tiny profile says `dtype: auto`
    assert (results["dtype"], results["device"]) == (chosen.dtype, chosen.device), results
    resolved = yaml.safe_load((out / "config.yaml").read_text())["resolved"]
    assert resolved == chosen.to_dict()
    assert results["first_loss"] > 5.0, results  # ~ln(5101) = 8.5 for the random model
    assert results["last_loss"] < 0.05 * results["first_loss"], results
    eval_loss = json.loads((out / "eval_results.json").read_text())["eval_loss"]
    assert eval_loss < 0.5, eval_loss
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (adapter_cfg["r"], adapter_cfg["lora_alpha"], adapter_cfg["lora_dropout"]) == (16, 32, 0.05)
    targets = adapter_cfg["target_modules"]  # peft resolves "all-linear" to full module names
    assert len(targets) == 2 * 7 and "lm_head" not in str(targets)
    assert {t.rsplit(".", 1)[-1] for t in targets} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                       "up_proj", "down_proj"}


def test_restart_resumes_from_last_checkpoint(run: dict, tiny_base: Path) -> None:
    """Running the same command again continues from checkpoint-80 instead of step 0."""
    out = run["out"]
    rc = train.main(["--profile", "tiny", "--base-model", str(tiny_base), "--data-dir", str(run["data"]),
                     "--out", str(out), "--submit", "local"])
    assert rc == 0
    results = json.loads((out / "train_results.json").read_text())
    assert results["resumed_from_step"] == 80
    # transformers 5.24 takes one extra step when resumed from the final checkpoint; the point
    # here is that training continued from step 80, not from 0 (tests/training/test_slurm.py
    # checks a mid-run resume ends exactly at max_steps).
    assert results["global_step"] - results["resumed_from_step"] <= 1, results


def test_merged_folder(run: dict, tiny_base: Path) -> None:
    merged = run["merged"]
    assert (merged / "model.safetensors").is_file()
    assert not list(merged.glob("model-*.safetensors")), "expected one safetensors file"
    assert (merged / "tokenizer.json").read_bytes() == (tiny_base / "tokenizer.json").read_bytes()
    jinja = get_template("deepseek-r1").jinja
    assert (merged / "chat_template.jinja").read_text() == jinja
    assert json.loads((merged / "tokenizer_config.json").read_text())["chat_template"] == jinja
    manifest = json.loads((merged / "psyedge.json").read_text())
    expected = make_manifest("deepseek-r1", tiny_base.name, merge.adapter_hash(run["out"] / "adapter"))
    trained = json.loads((run["out"] / "adapter" / "psyedge_train.json").read_text())
    # Where the adapter came from: this trainer, its profile and the SFT set it saw.
    expected["adapter_source"] = {"trainer": "psyedge", "profile": "tiny",
                                  "sft_sha256": trained["sft_sha256"]}
    assert manifest == expected
    assert manifest["contract_version"] == CONTRACT_VERSION and manifest["prompt_hash"] == prompt_hash()
    cfg = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["dtype"] == "bfloat16"


def test_merged_logits_equal_base_plus_adapter(run: dict, tiny_base: Path, tiny_tokenizer) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, run["out"] / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(run["merged"], dtype=torch.float32).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    positions = ties = 0
    for keyword, _ in RULES:
        ids = torch.tensor([tiny_tokenizer(render([{"role": "user", "text": keyword}]))["input_ids"]])
        with torch.no_grad():
            want, got, before = reference(ids).logits[0], merged(ids).logits[0], plain(ids).logits[0]
        diff = (want - got).abs().max().item()
        assert diff < LOGIT_ATOL, f"max |merged - (base+adapter)| = {diff}"
        top2 = want.topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * LOGIT_ATOL
        assert torch.equal(want.argmax(-1)[clear], got.argmax(-1)[clear])
        positions += len(clear)
        ties += int((~clear).sum())
        assert (want - before).abs().max().item() > 10 * LOGIT_ATOL  # the adapter did change the model
    print(f"\nargmax compared at {positions - ties} of {positions} positions ({ties} near ties)")
    assert positions - ties >= MIN_CLEAR_SHARE * positions, (ties, positions)


def test_merge_rounds_the_float32_sum_once(run: dict, tiny_base: Path) -> None:
    """Each merged weight is W + scale * B @ A, computed exactly, then rounded once to bf16.

    Rounding once to bf16 errs by at most half a unit in the last place (ulp = 2^(e - 7) for
    8 significant bits); a merge in bf16 rounds B @ A first and then the sum, and errs by more.
    """
    import torch
    from safetensors.torch import load_file

    adapter_cfg = json.loads((run["out"] / "adapter" / "adapter_config.json").read_text())
    scale = adapter_cfg["lora_alpha"] / adapter_cfg["r"]
    lora = load_file(run["out"] / "adapter" / "adapter_model.safetensors")
    base = load_file(tiny_base / "model.safetensors")
    merged = load_file(run["merged"] / "model.safetensors")
    checked = 0
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        name = key.split("base_model.model.", 1)[1].replace(".lora_A.weight", ".weight")
        exact = base[name].double() + scale * (b.double() @ a.double())
        got = merged[name]
        assert got.dtype == torch.bfloat16, (name, got.dtype)
        half_ulp = torch.exp2(torch.floor(torch.log2(exact.abs().clamp_min(1e-30))) - 8)
        # float32 computes the sum with an error of a few 2^-24 of its operands, which matters
        # only where W and the update nearly cancel.
        fp32_err = 4 * 2.0**-24 * (base[name].double().abs() + scale * (b.double().abs() @ a.double().abs()))
        excess = ((got.double() - exact).abs() / (half_ulp + fp32_err)).max().item()
        assert excess <= 1.0 + 1e-9, f"{name}: off by {excess:.3f} of half a bf16 ulp (+ float32 error)"
        checked += 1
    assert checked == 2 * 7, checked


def test_learns_the_keyword_rule(run: dict, tiny_base: Path, tmp_path: Path, capsys) -> None:
    from training.greedy import exact_match, greedy_answers

    held_out = write_rule_dataset(tmp_path, 12, seed=12345, id_prefix="held")  # unseen conversations
    conversations = [s["conversation"] for s in held_out]
    labels = [s["labels"] for s in held_out]
    trained = exact_match(greedy_answers(run["merged"], conversations, max_new_tokens=32), labels)
    untrained = exact_match(greedy_answers(tiny_base, conversations, max_new_tokens=32), labels)
    with capsys.disabled():
        print(f"\nheld-out exact match: merged tiny model {trained:.2f}, untrained {untrained:.2f}")
    assert trained >= TRAINED_MIN_ACCURACY, trained
    assert untrained <= UNTRAINED_MAX_ACCURACY, untrained
