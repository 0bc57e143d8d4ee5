"""The SFT set: join, canonical output, no train/serve skew, stratified split, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.io import read_jsonl, write_jsonl
from psyedge.contract import Labels, canonical_json
from psyedge.prompt import INSTRUCTION, render, render_training_text
from training import sft
from training.config import load_config, profile_path
from training.synthetic import write_rule_dataset

LLAMAFACTORY_YAML = (Path(__file__).resolve().parents[2] / "training" / "llamafactory"
                     / "qlora_sft_deepseekr1.yaml")


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    write_rule_dataset(tmp_path, 90, seed=3)
    return tmp_path


def _labels_file(data_dir: Path) -> Path:
    return data_dir / "labeling" / "results" / "dataset.jsonl"


def test_records_have_no_skew(data_dir: Path) -> None:
    """The SFT prompt of every sample equals the SDK's rendered prompt for its conversation."""
    sft.build_sft(data_dir, "deepseek-r1")
    conversations = {r["id"]: r["conversation"]
                     for r in read_jsonl(data_dir / "processed" / "unified_min.jsonl")}
    labels = {r["id"]: r for r in read_jsonl(_labels_file(data_dir))}
    records = list(read_jsonl(data_dir / "datasets" / sft.SFT_NAME))
    assert len(records) == 90
    for rec in records:
        assert rec["instruction"] == INSTRUCTION
        for template in ("deepseek-r1", "chatml", "raw"):
            prompt, answer = render_training_text(rec["instruction"], rec["input"], rec["output"], template)
            assert prompt == render(conversations[rec["id"]], template)
        assert rec["output"] == canonical_json({k: labels[rec["id"]][k] for k in Labels.__dataclass_fields__})
        assert Labels.from_json(rec["output"]).to_json() == rec["output"]


def test_split_is_stratified_and_deterministic(data_dir: Path) -> None:
    stats = sft.build_sft(data_dir, "deepseek-r1")
    first = (data_dir / "datasets" / sft.SFT_NAME).read_bytes()
    # 30 suicidal + 60 none: round(5%) gives 2 and 3 validation records.
    assert stats["splits"]["validation"]["risk_flag"] == {"none": 3, "suicidal": 2}
    assert stats["splits"]["train"]["total"] == 85
    sft.build_sft(data_dir, "deepseek-r1")
    assert (data_dir / "datasets" / sft.SFT_NAME).read_bytes() == first
    train = list(read_jsonl(data_dir / "datasets" / sft.SPLIT_FILES["train"]))
    val = list(read_jsonl(data_dir / "datasets" / sft.SPLIT_FILES["validation"]))
    assert len(train) == 85 and len(val) == 5 and not {r["id"] for r in train} & {r["id"] for r in val}


def test_rare_risk_class_reaches_validation() -> None:
    recs = [{"id": f"a{i}", "output": canonical_json({"depression_level": 0, "anxiety_level": 0,
                                                      "risk_flag": "none", "student_distress_score": 0})}
            for i in range(40)]
    recs += [{"id": f"v{i}", "output": canonical_json({"depression_level": 0, "anxiety_level": 0,
                                                       "risk_flag": "violence", "student_distress_score": 3})}
             for i in range(3)]
    sft.assign_splits(recs, 0.05)
    assert sum(r["split"] == "validation" for r in recs if r["id"].startswith("v")) == 1
    assert sum(r["split"] == "validation" for r in recs if r["id"].startswith("a")) == 2


def test_invalid_labels_are_refused_with_id_and_reason(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    rows = list(read_jsonl(_labels_file(data_dir)))
    rows[4]["depression_level"] = 7
    rows[9]["risk_flag"] = "maybe"
    del rows[11]["anxiety_level"]
    rows.append({"id": "ghost", "depression_level": 0, "anxiety_level": 0, "risk_flag": "none",
                 "student_distress_score": 0})
    write_jsonl(_labels_file(data_dir), rows)
    with pytest.raises(sft.SftError) as err:
        sft.build_sft(data_dir, "deepseek-r1")
    msg = str(err.value)
    assert "4 record(s) refused" in msg
    assert f"{rows[4]['id']}: invalid labels" in msg and "depression_level" in msg and "7" in msg
    assert f"{rows[9]['id']}: invalid labels" in msg and "'maybe'" in msg
    assert f"{rows[11]['id']}: invalid labels" in msg and "anxiety_level" in msg
    assert "ghost: no conversation" in msg
    assert not (data_dir / "datasets" / sft.SFT_NAME).exists()

    assert sft.main(["--data-dir", str(data_dir)]) == 1
    assert rows[4]["id"] in capsys.readouterr().err
    assert sft.main(["--data-dir", str(data_dir), "--skip-invalid"]) == 0
    stats = json.loads((data_dir / "datasets" / "sft_stats.json").read_text())
    assert stats["records"] == 87 and stats["refused"] == 4
    assert {r["id"] for r in stats["refused_ids"]} == {rows[4]["id"], rows[9]["id"], rows[11]["id"], "ghost"}


def test_missing_inputs_and_bad_template(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert sft.main(["--data-dir", str(tmp_path)]) == 1
    assert "make label" in capsys.readouterr().err
    write_rule_dataset(tmp_path, 6)
    assert sft.main(["--data-dir", str(tmp_path), "--template", "llama9"]) == 1
    assert "deepseek-r1" in capsys.readouterr().err


def test_dataset_info_for_llamafactory(data_dir: Path) -> None:
    sft.build_sft(data_dir, "deepseek-r1")
    info = json.loads((data_dir / "datasets" / "dataset_info.json").read_text())
    assert set(info) == {"student_mental", "student_mental_val"}
    for entry in info.values():
        assert entry["formatting"] == "alpaca"
        assert entry["columns"] == {"prompt": "instruction", "response": "output"}
        assert (data_dir / "datasets" / entry["file_name"]).is_file()


def test_llamafactory_yaml_matches_a40_profile() -> None:
    lf = yaml.safe_load(LLAMAFACTORY_YAML.read_text())
    a40 = load_config(profile_path("a40"))
    assert lf["template"] == sft.LF_TEMPLATES[a40.template] == "deepseekr1"
    assert lf["enable_thinking"] is False
    assert (lf["dataset"], lf["eval_dataset"]) == (sft.LF_DATASETS["train"], sft.LF_DATASETS["validation"])
    assert (lf["quantization_bit"], lf["quantization_type"], lf["double_quantization"]) == (4, "nf4", True)
    assert lf["upcast_layernorm"] is a40.upcast_layernorm is True
    pairs = {"lora_rank": a40.lora_r, "lora_alpha": a40.lora_alpha, "lora_dropout": a40.lora_dropout,
             "per_device_train_batch_size": a40.per_device_batch_size,
             "gradient_accumulation_steps": a40.gradient_accumulation_steps,
             "learning_rate": a40.learning_rate,
             "num_train_epochs": a40.epochs, "lr_scheduler_type": a40.lr_scheduler,
             "cutoff_len": a40.max_length, "eval_steps": a40.eval_steps, "save_steps": a40.save_steps}
    for key, value in pairs.items():
        assert lf[key] == value, key
    # a40's `dtype: auto` resolves to bf16 on its GPU (CUDA with bf16), which LF states outright.
    assert a40.dtype == "auto" and lf["bf16"] is True
