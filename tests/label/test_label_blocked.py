"""A teacher that refuses the risky dialogues: refusals are final, counted, queued and fallen back on.

The fake refuses every dialogue in which the SDK lexicon finds risk in the student's lines, in
the three ways Gemini does (prompt blocked, SAFETY stop without text, empty STOP answer), and
labels the rest `risk_flag: none`, through the real google-genai client.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import label, review
from psyedge.lexicon import conversation_risk
from testkit.fake_gemini import BLOCK_KINDS, FakeGemini
from testkit.label_builders import read_jsonl, write_config, write_shards


def _run(data: Path, cfg: Path, *extra: str, provider: str = "gemini") -> int:
    return label.main(["--provider", provider, "--data-dir", str(data), "--config", str(cfg), *extra])


def _risky_ids(data: Path) -> set[str]:
    recs = [r for p in sorted((data / "labeling").glob("input_part_*.jsonl")) for r in read_jsonl(p)]
    return {r["id"] for r in recs if conversation_risk(r["conversation"]) != "none"}


@pytest.fixture()
def refused(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> Path:
    """24 samples, 6 of them suicidal by the lexicon, labeled by a teacher that refuses those."""
    fake.block_risky = BLOCK_KINDS
    write_shards(tmp_path, shards=2, per_shard=12)
    assert _run(tmp_path, write_config(tmp_path / "c.yaml")) == label.EXIT_OK
    return tmp_path


def test_refusals_are_final_and_recorded(refused: Path, fake: FakeGemini) -> None:
    res = refused / "labeling/results"
    risky = _risky_ids(refused)
    assert len(risky) == 6
    # every refused prompt was sent once: no retry as transient, no re-ask as malformed
    assert fake.stats.blocked and set(fake.stats.blocked.values()) == {1}
    assert all(fake.stats.requests[k] == 1 for k in fake.stats.blocked)
    blocked = read_jsonl(res / "blocked.jsonl")
    assert {b["id"] for b in blocked} == risky
    fails = {f["id"]: f for f in read_jsonl(res / "failed.jsonl")}
    assert set(fails) == risky and {f["reason"] for f in fails.values()} == {"blocked"}
    by_finish = {b["finish_reason"]: b for b in blocked}
    assert set(by_finish) == {"BLOCKED_SAFETY", "SAFETY", "STOP"}, "all three refusal shapes"
    assert by_finish["BLOCKED_SAFETY"]["block_reason"] == "SAFETY"
    assert by_finish["SAFETY"]["safety_ratings"][0] == {
        "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    assert all(b["attempts"] == 1 and b["reasks"] == 0 and b["error"] for b in blocked)
    # safety settings went out per category, from the config, and were recorded
    sent = fake.stats.bodies[0]["safetySettings"]
    assert {(s["category"], s["threshold"]) for s in sent} == {
        ("HARM_CATEGORY_DANGEROUS_CONTENT", "BLOCK_NONE"), ("HARM_CATEGORY_HARASSMENT", "BLOCK_NONE")}
    config = json.loads((res / "config.json").read_text())
    assert config["safety_settings"]["HARM_CATEGORY_DANGEROUS_CONTENT"] == "BLOCK_NONE"


def test_report_counts_by_lexicon_class(refused: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats = json.loads((refused / "labeling/results/stats.json").read_text())
    report = stats["report"]
    assert report["suicidal"] == {"inputs": 6, "labeled": 0, "blocked": 6, "failed": 0, "fallback": 0,
                                  "teacher_labels": {f: {} for f in report["suicidal"]["teacher_labels"]}}
    assert report["none"]["inputs"] == report["none"]["labeled"] == 18
    assert report["none"]["teacher_labels"]["risk_flag"] == {"none": 18}
    assert stats["missing_risk_classes"] == ["suicidal"]
    assert "shards" in stats  # the per-shard counts stay beside the report


def test_refused_samples_lead_the_review_queue(refused: Path) -> None:
    res = refused / "labeling/results"
    counts = review.write_queue(refused, fraction=0.0, results=res)
    queue = read_jsonl(refused / "labeling/review/queue.jsonl")
    risky = _risky_ids(refused)
    assert counts["blocked"] == 6 and {q["id"] for q in queue[:6]} == risky
    assert all(q["reasons"][0].startswith("blocked:") and q["labels"] is None for q in queue[:6])
    assert all(q["dialogue"] for q in queue[:6])
    tasks = json.loads((refused / "labeling/review/label_studio_tasks.json").read_text())
    refused_tasks = [t for t in tasks if t["data"]["sample_id"] in risky]
    assert len(refused_tasks) == 6 and all(t["predictions"] == [] for t in refused_tasks)
    assert all("blocked:" in t["data"]["reasons"] for t in refused_tasks)


def test_fallback_rules_labels_refusals_without_asking_again(refused: Path, fake: FakeGemini) -> None:
    sent = sum(fake.stats.requests.values())
    assert _run(refused, refused / "c.yaml", "--fallback", "rules") == label.EXIT_OK
    assert sum(fake.stats.requests.values()) == sent, "a refused sample was sent to the teacher again"
    res = refused / "labeling/results"
    rows = {r["id"]: r for r in read_jsonl(res / "dataset.jsonl")}
    risky = _risky_ids(refused)
    assert len(rows) == 24 and not read_jsonl(res / "failed.jsonl")
    for sid in risky:
        assert rows[sid]["provenance"] == rows[sid]["label_source"] == "fallback:rules"
        assert rows[sid]["risk_flag"] == "suicidal" and rows[sid]["provider"] == "rules"
    assert {r["label_source"] for i, r in rows.items() if i not in risky} == {"teacher"}
    stats = json.loads((res / "stats.json").read_text())
    assert stats["report"]["suicidal"]["fallback"] == 6 and stats["missing_risk_classes"] == []
    assert stats["fallback"] == {"teacher": "rules", "refused": 6, "sent": 6, "labeled": 6, "failed": 0}
    assert len(read_jsonl(res / "blocked.jsonl")) == 6  # still listed for the reviewers
    # a re-run with the fallback sends nothing anywhere
    assert _run(refused, refused / "c.yaml", "--fallback", "rules") == label.EXIT_OK
    assert json.loads((res / "stats.json").read_text())["fallback"]["sent"] == 0


def test_reask_blocked_is_configurable(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    fake.block_risky = ("empty",)
    write_shards(tmp_path, shards=1, per_shard=8)
    cfg = write_config(tmp_path / "c.yaml")
    cfg.write_text(cfg.read_text().replace("reasks: 2", "reasks: 2\n  reask_blocked: 1"))
    assert _run(tmp_path, cfg) == label.EXIT_OK
    assert fake.stats.blocked and set(fake.stats.blocked.values()) == {2}
    fails = read_jsonl(tmp_path / "labeling/results/failed.jsonl")
    assert {(f["reason"], f["reasks"]) for f in fails} == {("blocked", 1)}


def test_batch_refusals_are_final(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    fake.block_risky = BLOCK_KINDS
    write_shards(tmp_path, shards=1, per_shard=12)
    assert _run(tmp_path, write_config(tmp_path / "c.yaml"), provider="gemini-batch") == 0
    assert fake.stats.batches_created == 1, "a refused row went into a second round"
    blocked = read_jsonl(tmp_path / "labeling/results/blocked.jsonl")
    assert {b["id"] for b in blocked} == _risky_ids(tmp_path) and len(blocked) == 2
