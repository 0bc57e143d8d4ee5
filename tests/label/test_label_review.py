"""make review / make apply-review: the queue's selection, Label Studio files, corrections with provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import label, review
from psyedge.contract import FIELDS
from testkit.fake_gemini import FakeGemini
from testkit.label_builders import read_jsonl, write_config, write_shards


@pytest.fixture()
def labeled(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> Path:
    """40 samples labeled by the fake; the first request of every 5th prompt is invalid (re-asked)."""
    order: dict[str, int] = {}
    fake.faults = lambda key, n, reask: ("out_of_range" if order.setdefault(key,
                                                                            len(order)) % 5 == 0 and n == 0
                                         else None)
    write_shards(tmp_path, shards=2, per_shard=20)
    cfg = write_config(tmp_path / "c.yaml")
    assert label.main(["--provider", "gemini", "--data-dir", str(tmp_path), "--config", str(cfg)]) == 0
    return tmp_path


def test_queue_selects_risk_reasked_and_random(labeled: Path) -> None:
    counts = review.write_queue(labeled, fraction=0.1, seed=0)
    rows = read_jsonl(labeled / "labeling/results/dataset.jsonl")
    queue = read_jsonl(labeled / "labeling/review/queue.jsonl")
    q_ids = {q["id"] for q in queue}
    assert {r["id"] for r in rows if r["risk_flag"] != "none"} <= q_ids
    assert {r["id"] for r in rows if r["reasks"] > 0} <= q_ids and counts["reasked"] == 8
    randoms = {r["id"] for r in rows if review.in_random_sample(r["id"], 0.1, 0)}
    assert randoms <= q_ids and counts["random"] == len(randoms)
    assert q_ids == {r["id"] for r in rows if r["risk_flag"] != "none" or r["reasks"] > 0} | randoms
    assert all(q["dialogue"].startswith("来访者：") and q["conversation"] for q in queue)
    tasks = json.loads((labeled / "labeling/review/label_studio_tasks.json").read_text())
    assert len(tasks) == len(queue)
    pred = tasks[0]["predictions"][0]
    assert {r["from_name"] for r in pred["result"]} == set(FIELDS) and 0 < pred["score"] <= 1
    assert all(r["to_name"] == "dialogue" and r["type"] == "choices" for r in pred["result"])
    xml = (labeled / "labeling/review/label_studio_config.xml").read_text()
    assert '<Choices name="risk_flag" toName="dialogue"' in xml and '<Choice value="self_harm"/>' in xml


def test_apply_jsonl_and_label_studio_with_precedence(labeled: Path, tmp_path: Path) -> None:
    rows = read_jsonl(labeled / "labeling/results/dataset.jsonl")
    a, b = rows[0], rows[1]
    fix1 = tmp_path / "fix1.jsonl"
    fix1.write_text(json.dumps({"id": a["id"], "depression_level": 3, "anxiety_level": 3,
                                "risk_flag": "suicidal",
                                "student_distress_score": 9, "reviewer": "dr.li",
                                "note": "explicit plan"}) + "\n")
    review.apply_reviewed(labeled, fix1)
    # a Label Studio export: a later correction of `a` (only risk_flag changed) and one of `b`
    export = [{"id": 1, "data": {"sample_id": a["id"]}, "annotations": [{"completed_by": {"email": "wang@x"},
               "result": [{"from_name": "risk_flag", "value": {"choices": ["self_harm"]}}]}]},
              {"id": 2, "data": {"sample_id": b["id"]}, "annotations": [{"completed_by": 7, "result": [
                  {"from_name": k, "value": {"choices": [str(v)]}} for k, v in
                  {"depression_level": 0, "anxiety_level": 1, "risk_flag": "none",
                   "student_distress_score": 2}.items()]}]},
              {"id": 3, "data": {"sample_id": rows[2]["id"]}, "annotations": []}]
    fix2 = tmp_path / "export.json"
    fix2.write_text(json.dumps(export))
    review.apply_reviewed(labeled, fix2)
    merged = {r["id"]: r for r in read_jsonl(labeled / "labeling/results/dataset.jsonl")}
    ra = merged[a["id"]]
    assert ra["risk_flag"] == "self_harm" and ra["label_source"] == "human" and ra["reviewed_by"] == "wang@x"
    assert ra["depression_level"] == a["depression_level"]  # left alone in LS -> the teacher's value
    assert ra["teacher_labels"] == {k: a[k] for k in FIELDS} and ra["reviewed_from"] == str(fix2)
    assert merged[b["id"]]["student_distress_score"] == 2 and merged[b["id"]]["reviewed_by"] == "7"
    assert merged[rows[2]["id"]]["label_source"] == "teacher"
    # a re-run of the labeler re-merges and keeps the human labels
    assert label.main(["--provider", "gemini", "--data-dir", str(labeled), "--config",
                       str(labeled / "c.yaml")]) == 0
    again = {r["id"]: r for r in read_jsonl(labeled / "labeling/results/dataset.jsonl")}
    assert again[a["id"]]["risk_flag"] == "self_harm" and again[a["id"]]["label_source"] == "human"


def test_apply_rejects_invalid_correction(labeled: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rows = read_jsonl(labeled / "labeling/results/dataset.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n" + json.dumps({"id": rows[0]["id"], "depression_level": 5, "anxiety_level": 0,
                                      "risk_flag": "none", "student_distress_score": 0}) + "\n")
    assert review.main(["apply", "--data-dir", str(labeled), "--reviewed", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl line 2" in err and "depression_level" in err
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"id": "nope", "depression_level": 1, "anxiety_level": 0,
                                   "risk_flag": "none", "student_distress_score": 0}) + "\n")
    assert review.main(["apply", "--data-dir", str(labeled), "--reviewed", str(unknown)]) == 2
    assert "id 'nope' is not in" in capsys.readouterr().err
    assert review.main(["queue", "--data-dir", str(tmp_path / "none")]) == 2
