"""Adapters trained elsewhere come in with their provenance; a seed-style SFT file is split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psyedge.contract import canonical_json
from psyedge.prompt import INSTRUCTION, prompt_hash
from training.adapter_import import TRAIN_MANIFEST, AdapterImportError, import_adapter
from training.sft import SftError, iter_split


def _adapter(folder: Path, record: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}", "utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    if record is not None:
        (folder / TRAIN_MANIFEST).write_text(json.dumps(record), "utf-8")
    return folder


def test_an_adapter_that_records_nothing_is_imported_as_unrecorded(tmp_path: Path) -> None:
    src = _adapter(tmp_path / "unsloth-out")
    final = import_adapter(src, tmp_path / "run", "deepseek-r1", trainer="unsloth")
    record = json.loads((final / TRAIN_MANIFEST).read_text("utf-8"))
    assert record["recorded"] is False and record["trainer"] == "unsloth"
    assert record["imported_from"] == str(src.resolve())
    assert (final / "adapter_model.safetensors").read_bytes() == b"weights"


def test_an_adapter_trained_on_another_prompt_is_refused(tmp_path: Path) -> None:
    good = {"trainer": "llamafactory", "template": "deepseek-r1", "prompt_hash": prompt_hash()}
    final = import_adapter(_adapter(tmp_path / "lf", good), tmp_path / "run", "deepseek-r1")
    assert json.loads((final / TRAIN_MANIFEST).read_text("utf-8"))["recorded"] is True
    stale = _adapter(tmp_path / "old", {**good, "prompt_hash": "0" * 16})
    with pytest.raises(AdapterImportError, match="another prompt"):
        import_adapter(stale, tmp_path / "run2", "deepseek-r1")
    assert not (tmp_path / "run2" / "adapter").exists()
    other = _adapter(tmp_path / "chatml", {**good, "template": "chatml"})
    with pytest.raises(AdapterImportError, match="template='chatml'"):
        import_adapter(other, tmp_path / "run3", "deepseek-r1")


def _seed_rows(n: int) -> list[dict]:
    flags = ["none", "suicidal", "none", "self_harm", "none", "violence"]
    return [{"instruction": INSTRUCTION, "input": f"来访者：第{i}句。\n",
             "output": canonical_json({"depression_level": 1, "anxiety_level": 1,
                                       "risk_flag": flags[i % len(flags)],
                                       "student_distress_score": 2})} for i in range(n)]


def test_a_seed_style_sft_file_is_split_not_emptied(tmp_path: Path) -> None:
    out = tmp_path / "datasets"
    out.mkdir()
    rows = _seed_rows(60)
    (out / "seed.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    train = list(iter_split(tmp_path, "train", "seed.jsonl"))
    val = list(iter_split(tmp_path, "validation", "seed.jsonl"))
    assert len(train) + len(val) == 60 and val and len(train) > len(val)
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in val)
    assert [r["id"] for r in train] == [r["id"] for r in iter_split(tmp_path, "train", "seed.jsonl")]


def test_a_half_split_sft_file_names_its_first_unsplit_row(tmp_path: Path) -> None:
    out = tmp_path / "datasets"
    out.mkdir()
    rows = _seed_rows(4)
    for r in rows[:2]:
        r["split"] = "train"
    (out / "half.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(SftError, match=r"half\.jsonl:3: no 'split' field"):
        list(iter_split(tmp_path, "train", "half.jsonl"))


def test_an_import_never_replaces_another_adapter_of_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ours = _adapter(run / "adapter", {"trainer": "psyedge", "template": "deepseek-r1"})
    src = _adapter(tmp_path / "lf-out")
    with pytest.raises(AdapterImportError, match="already holds an adapter"):
        import_adapter(src, run, "deepseek-r1")
    assert (ours / "adapter_model.safetensors").read_bytes() == b"weights"
    other = tmp_path / "run2"
    import_adapter(src, other, "deepseek-r1")
    (src / "adapter_model.safetensors").write_bytes(b"retrained")
    import_adapter(src, other, "deepseek-r1")  # the same source again: a rerun replaces it
    assert (other / "adapter" / "adapter_model.safetensors").read_bytes() == b"retrained"
