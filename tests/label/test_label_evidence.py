"""LABEL_MODE=evidence: literal quotes with the labels, checked and re-asked, shown to reviewers,
never trained on."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import label, review
from pipeline.io import write_jsonl
from pipeline.labeling.replies import student_text
from psyedge.prompt import evidence_prompt, evidence_prompt_hash, prompt_hash
from testkit.fake_gemini import FakeGemini, prompt_key
from testkit.label_builders import read_jsonl, write_config, write_shards
from training import sft


def _label(data: Path) -> int:
    cfg = write_config(data / "c.yaml")
    return label.main(["--provider", "gemini", "--data-dir", str(data), "--config", str(cfg),
                       "--mode", "evidence"])


def test_quotes_are_literal_and_a_fabricated_one_is_reasked(tmp_path: Path, fake: FakeGemini,
                                                             gemini_env: dict) -> None:
    ids = write_shards(tmp_path, shards=1, per_shard=8)
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "labeling/input_part_0000.jsonl")}
    liar = prompt_key(evidence_prompt(recs[ids[0]]["conversation"]))
    fake.faults = lambda key, n, reask: "fake_quote" if key == liar and n == 0 else None
    assert _label(tmp_path) == label.EXIT_OK
    schema = fake.stats.bodies[0]["generationConfig"]["responseSchema"]
    quotes = schema["properties"]["evidence"]  # the SDK writes some keys in snake_case
    assert quotes.get("maxItems", quotes.get("max_items")) == 3 and "evidence" in schema["required"]
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "labeling/results/dataset.jsonl")}
    assert set(rows) == set(ids)
    for sid, row in rows.items():
        assert row["evidence"] and row["prompt_version"] == evidence_prompt_hash() != prompt_hash()
        source = student_text(recs[sid]["conversation"])
        assert all(q in source for q in row["evidence"]), row["evidence"]
    # the invented quote cost exactly one re-ask, which named it
    assert fake.stats.requests[liar] == 2 and rows[ids[0]]["reasks"] == 1
    reask = [b for b in fake.stats.bodies if len(b["contents"]) == 3]
    assert len(reask) == 1 and "我从来没有说过这句话" in reask[0]["contents"][2]["parts"][0]["text"]
    assert all(r["reasks"] == 0 for sid, r in rows.items() if sid != ids[0])


def test_quotes_reach_the_review_queue_and_not_the_sft_set(tmp_path: Path, fake: FakeGemini,
                                                           gemini_env: dict) -> None:
    write_shards(tmp_path, shards=1, per_shard=8)
    assert _label(tmp_path) == label.EXIT_OK
    review.write_queue(tmp_path, fraction=1.0)
    queue = read_jsonl(tmp_path / "labeling/review/queue.jsonl")
    assert len(queue) == 8 and all(q["evidence"] for q in queue)
    tasks = json.loads((tmp_path / "labeling/review/label_studio_tasks.json").read_text())
    for task, item in zip(tasks, queue, strict=True):
        spans = [r for r in task["predictions"][0]["result"] if r["from_name"] == "evidence"]
        assert [s["value"]["text"] for s in spans] == item["evidence"]
        for s in spans:
            v = s["value"]
            assert task["data"]["dialogue"][v["start"]:v["end"]] == v["text"]
    xml = (tmp_path / "labeling/review/label_studio_config.xml").read_text()
    assert '<Labels name="evidence" toName="dialogue">' in xml
    # the SFT set holds the four labels only
    recs = read_jsonl(tmp_path / "labeling/input_part_0000.jsonl")
    write_jsonl(tmp_path / "processed/unified_min.jsonl", recs)
    sft.build_sft(tmp_path, "deepseek-r1", allow_missing_risk=True,
                  labels=tmp_path / "labeling/results/dataset.jsonl")
    out = (tmp_path / "datasets" / sft.SFT_NAME).read_text("utf-8")
    assert out.count('"output"') == 8 and "evidence" not in out
