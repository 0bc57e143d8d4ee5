"""The SFT stage refuses a set that lost a risk class the inputs contain, and counts fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.io import read_jsonl, write_jsonl
from psyedge.lexicon import conversation_risk
from training import sft
from training.synthetic import write_rule_dataset


def _relabel_suicidal(data_dir: Path, **changes: str) -> int:
    """Apply `changes` to every label row whose conversation the lexicon calls suicidal."""
    convs = {r["id"]: r["conversation"] for r in read_jsonl(data_dir / "processed/unified_min.jsonl")}
    path = data_dir / "labeling/results/dataset.jsonl"
    rows = list(read_jsonl(path))
    hit = [r for r in rows if conversation_risk(convs[r["id"]]) == "suicidal"]
    for r in hit:
        r.update(changes)
    write_jsonl(path, rows)
    return len(hit)


def test_a_risk_class_without_labels_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_rule_dataset(tmp_path, 60, seed=1)
    n = _relabel_suicidal(tmp_path, risk_flag="none")  # a teacher that never flags suicide
    assert n > 0
    assert sft.main(["--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"the lexicon finds suicidal in {n} conversation(s) but no record is labeled suicidal" in err
    assert "FALLBACK=rules" in err and "--allow-missing-risk" in err
    assert not (tmp_path / "datasets" / sft.SFT_NAME).exists()
    assert sft.main(["--data-dir", str(tmp_path), "--allow-missing-risk"]) == 0
    stats = sft.build_sft(tmp_path, "deepseek-r1", allow_missing_risk=True)
    assert stats["warnings"] == [f"the lexicon finds suicidal in {n} conversation(s) but no "
                                 "record is labeled suicidal"]
    assert stats["lexicon_classes"]["suicidal"] == n


def test_fallback_labels_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_rule_dataset(tmp_path, 60, seed=1)
    n = _relabel_suicidal(tmp_path, label_source="fallback:rules")
    assert sft.main(["--data-dir", str(tmp_path)]) == 0
    assert f"fallback labels {n})" in capsys.readouterr().out
    stats = sft.build_sft(tmp_path, "deepseek-r1")
    assert stats["fallback_records"] == n and stats["warnings"] == []
    assert stats["label_sources"]["fallback:rules"] == n
