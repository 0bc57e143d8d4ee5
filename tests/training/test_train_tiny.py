"""End to end on the tiny profile: QLoRA (real 4-bit on CPU) -> adapter -> merge -> greedy answers.

One training run (the `tiny` profile, about a minute on 2 free cores) on a synthetic set whose
labels follow a keyword rule, shared by the tests below.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psyedge.contract import CONTRACT_VERSION
from psyedge.metadata import make_manifest
from psyedge.prompt import get_template, prompt_hash, render
from training import merge, sft, train
from training.synthetic import RULES, write_rule_dataset

pytestmark = pytest.mark.slow

#: Held-out exact-match accuracy the merged tiny model must reach (measured: 1.0 at 80 steps),
#: and the most the untrained model may score (measured: 0.0: it emits random characters).
TRAINED_MIN_ACCURACY = 0.8
UNTRAINED_MAX_ACCURACY = 0.1
#: |merged - (base + adapter)| logits, both computed in fp32 from the bf16 weights. The merged
#: weights are W + BA rounded once to bf16 (relative error 2^-9); measured max 0.035 on logits of
#: magnitude up to 18 (std 1.6).
LOGIT_ATOL = 0.1


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
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/psyedge_train.json",
                 "train_results.json", "eval_results.json", "training_loss.png", "training_eval_loss.png",
                 "config.yaml"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1].startswith("checkpoint-")
    results = json.loads((out / "train_results.json").read_text())
    assert results["global_step"] == 80 and results["resumed_from_step"] == 0
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
    for keyword, _ in RULES:
        ids = torch.tensor([tiny_tokenizer(render([{"role": "user", "text": keyword}]))["input_ids"]])
        with torch.no_grad():
            want, got, before = reference(ids).logits, merged(ids).logits, plain(ids).logits
        diff = (want - got).abs().max().item()
        assert diff < LOGIT_ATOL, f"max |merged - (base+adapter)| = {diff}"
        assert torch.equal(want.argmax(-1), got.argmax(-1))
        assert (want - before).abs().max().item() > 10 * LOGIT_ATOL  # the adapter did change the model


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
