"""`make label` -> `make sft` with a teacher that refuses the risky dialogues (real google-genai
client, fake Gemini on 127.0.0.1): the set is refused until the refusals are labeled, never
trained on silently without its risk examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from make_builders import FakeGemini, Make, fast_label_config, jsonl, teacher_dir

from psyedge.lexicon import conversation_risk

BLOCK_KINDS = ("prompt", "finish", "empty")


@pytest.fixture()
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini(block_risky=BLOCK_KINDS)
    server.start()
    yield server
    server.stop()


def test_refusals_stop_sft_until_a_fallback_labels_them(tmp_path: Path, fake: FakeGemini) -> None:
    make = Make(tmp_path, GEMINI_API_KEY=fake.api_key, GOOGLE_GEMINI_BASE_URL=fake.url)
    cfg = fast_label_config(tmp_path / "label_config.yaml")
    make.folders(LABEL_CONFIG=str(cfg), PROVIDER="gemini")
    data = tmp_path / "data"
    stopped = make.run("sft")
    assert stopped.returncode != 0, "\n".join(make.log)
    gemini = teacher_dir(data, "gemini", cfg)
    blocked = jsonl(gemini / "blocked.jsonl")
    assert blocked, "the samples hold no risky dialogue: the test proves nothing"
    unified = {r["id"]: r for r in jsonl(data / "processed" / "unified_min.jsonl")}
    classes = {conversation_risk(unified[b["id"]]["conversation"]) for b in blocked}
    assert "none" not in classes
    # make label succeeded (refusals are not failures to retry); make sft named the lost class
    assert all(f"the lexicon finds {c} in" in stopped.stderr for c in classes), stopped.stderr
    assert "labeling report by lexicon class" in stopped.stdout
    assert not (data / "datasets" / "sft_student_mental.jsonl").exists()
    assert set(fake.stats.blocked.values()) == {1}
    stats = json.loads((gemini / "stats.json").read_text())
    assert sum(stats["report"][c]["blocked"] for c in classes) == len(blocked)

    make.ok("review")
    queue = jsonl(data / "labeling" / "review" / "queue.jsonl")
    assert {q["id"] for q in queue[: len(blocked)]} == {b["id"] for b in blocked}
    tasks = json.loads((data / "labeling" / "review" / "label_studio_tasks.json").read_text())
    assert {t["data"]["sample_id"] for t in tasks} >= {b["id"] for b in blocked}

    sent = sum(fake.stats.requests.values())
    built = make.ok("sft", "FALLBACK=rules")
    assert sum(fake.stats.requests.values()) == sent, "a refused prompt was sent again"
    rows = {r["id"]: r for r in jsonl(gemini / "dataset.jsonl")}
    assert all(rows[b["id"]]["provenance"] == "fallback:rules" for b in blocked)
    sft_stats = json.loads((data / "datasets" / "sft_stats.json").read_text())
    assert sft_stats["fallback_records"] == len(blocked) and sft_stats["warnings"] == []
    assert f"fallback labels {len(blocked)})" in built.stdout
