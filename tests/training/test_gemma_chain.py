"""The real chain, CI-sized: Gemma 3 270M -> a few gemma-cpu steps -> merge -> f16 GGUF -> Q4_K_M
-> the SDK Screener, on PsySUICIDE records (held-out idx never among them).

Proves each hop runs on the real weights with the profile's code path (answer-only logits, plain
LoRA on the float32 base, the PsySUICIDE SFT file); it says nothing about quality, which is the
benchmark's job (`make demo-real`). A few dozen records and three steps keep it to a few minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.io import write_jsonl
from psyedge.contract import validate
from training import merge, psysuicide_sft, train
from training.config import load_config, profile_path

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

TRAIN_RECORDS = 24
VAL_RECORDS = 4
STEPS = 3


@pytest.fixture(scope="module")
def chain(gemma_base: Path, real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from convert.quantize import quantize
    from convert.to_gguf import convert

    valid = real_data / "psysuicide" / "valid.json"
    rows = psysuicide_sft.load_psysuicide(valid)
    held = psysuicide_sft.read_holdout(valid)
    records, _ = psysuicide_sft.build_records(rows, held)
    # Suicidal and none rows alike, so both answers occur in a handful of steps.
    suicidal = [r for r in records if '"suicidal"' in r["output"]]
    other = [r for r in records if '"suicidal"' not in r["output"]]
    picked = [r | {"split": "train"} for pair in zip(suicidal, other, strict=False)
              for r in pair][:TRAIN_RECORDS]
    picked += [r | {"split": "validation"} for r in other[-VAL_RECORDS:]]
    data = tmp_path_factory.mktemp("gemma-data")
    write_jsonl(data / "datasets" / psysuicide_sft.OUT_NAME, picked)

    cfg = yaml.safe_load(profile_path("gemma-cpu").read_text("utf-8"))
    cfg.update(max_steps=STEPS, logging_steps=1, eval_steps=STEPS, save_steps=STEPS)
    config = data / "gemma-ci.yaml"
    config.write_text(yaml.safe_dump(cfg), "utf-8")
    out = tmp_path_factory.mktemp("runs") / "gemma"
    rc = train.main(["--profile", "gemma-cpu", "--config", str(config), "--base-model", str(gemma_base),
                     "--data-dir", str(data), "--out", str(out), "--submit", "local"])
    assert rc == 0
    merged = merge.merge(gemma_base, out / "adapter", out / "merged")
    f16 = convert(merged, out / "model-f16.gguf", "f16").path
    q4 = Path(quantize(f16, out / "model-Q4_K_M.gguf", "Q4_K_M").out)
    return {"out": out, "merged": merged, "q4": q4, "held": held, "rows": rows, "picked": picked}


def test_training_used_the_answer_only_path_on_psysuicide(chain: dict) -> None:
    results = json.loads((chain["out"] / "train_results.json").read_text("utf-8"))
    assert results["global_step"] == STEPS and results["train_examples"] == TRAIN_RECORDS
    assert results["dtype"] == "float32"
    losses = [h["loss"] for h in json.loads((chain["out"] / "trainer_log_history.json").read_text("utf-8"))
              if "loss" in h]
    # The untrained base puts little mass on the canonical JSON: a loss of a few nats per token.
    assert len(losses) == STEPS and all(0.0 < x < 20.0 for x in losses)
    evals = json.loads((chain["out"] / "eval_results.json").read_text("utf-8"))
    assert 0.0 < evals["eval_loss"] < 20.0
    manifest = json.loads((chain["out"] / "adapter" / train.TRAIN_MANIFEST).read_text("utf-8"))
    assert manifest["template"] == "raw" and manifest["profile"] == "gemma-cpu"
    assert not {r["idx"] for r in chain["picked"]} & chain["held"]


def test_lora_adapts_only_the_profiles_last_layers(chain: dict) -> None:
    from safetensors import safe_open

    layers = load_config(profile_path("gemma-cpu")).lora_layers
    adapter = chain["out"] / "adapter"
    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text("utf-8"))
    assert adapter_cfg["layers_to_transform"] == list(range(18 - layers, 18))
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert {int(k.split(".layers.")[1].split(".")[0]) for k in keys} == set(range(18 - layers, 18))
    assert len(keys) == layers * 7 * 2  # q, k, v, o, gate, up, down of each, A and B


def test_merged_base_stays_float32(chain: dict) -> None:
    config = json.loads((chain["merged"] / "config.json").read_text("utf-8"))
    assert config.get("dtype", config.get("torch_dtype")) == "float32"


def test_the_q4_k_m_screens_held_out_text_with_the_raw_template(chain: dict) -> None:
    from psyedge.screener import Screener

    texts = [r.text for r in chain["rows"] if r.idx in chain["held"]][:2]
    with Screener(chain["q4"], n_ctx=1024, lexicon=False) as screener:
        assert screener.template.name == "raw"  # read from the GGUF's psyedge.template
        for text in texts:
            result = screener.assess([{"role": "user", "text": text}])
            validate(result.labels.to_dict())
            assert sum(result.probabilities["risk_flag"].values()) == pytest.approx(1.0, abs=1e-4)


def test_the_adapter_gguf_rides_on_the_release_q4_k_m(chain: dict, gemma_base: Path,
                                                      gemma_release: Path) -> None:
    """What `make demo-real` ships: the release Q4_K_M with the adapter applied at run time.

    The adapter names the template itself (the release file has no psyedge.* keys), and its 63
    weights (the last 9 layers x 7 projections) all load onto the release's tensors.
    """
    import gguf

    from convert.lora_gguf import convert_adapter
    from psyedge.screener import Screener

    adapter = convert_adapter(chain["out"] / "adapter", gemma_base, chain["out"] / "adapter-f32.gguf")
    layers = load_config(profile_path("gemma-cpu")).lora_layers
    assert adapter.n_weights == layers * 7 and adapter.rank == 16
    names = {t.name for t in gguf.GGUFReader(adapter.path).tensors}
    assert "blk.17.attn_output.weight.lora_a" in names and "blk.0.attn_q.weight.lora_a" not in names
    text = next(r.text for r in chain["rows"] if r.idx in chain["held"])
    with Screener(gemma_release, n_ctx=1024, lexicon=False, adapter=adapter.path) as screener:
        assert screener.template.name == "raw"
        validate(screener.assess([{"role": "user", "text": text}]).labels.to_dict())
