"""gemini-batch: one job per shard through the real client, persisted job name, row errors retried."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import label
from psyedge.contract import FIELDS, validate
from testkit.fake_gemini import FakeGemini
from testkit.label_builders import read_jsonl, write_config, write_shards


def run(data: Path, cfg: Path) -> int:
    return label.main(["--provider", "gemini-batch", "--data-dir", str(data), "--config", str(cfg)])


def test_batch_with_row_errors_and_invalid_rows(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    # first request of some prompts: a row error (job SUCCEEDED anyway) or an invalid answer
    plan = {0: "500", 1: "unknown_enum", 2: "truncated"}
    order: dict[str, int] = {}

    def faults(key: str, n: int, reask: bool) -> str | None:
        i = order.setdefault(key, len(order))
        return plan.get(i) if n == 0 else None

    fake.faults = faults
    ids = write_shards(tmp_path, shards=2, per_shard=5)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    res = tmp_path / "labeling/results"
    rows = read_jsonl(res / "dataset.jsonl")
    assert [r["id"] for r in rows] == ids and read_jsonl(res / "failed.jsonl") == []
    for r in rows:
        validate({k: r[k] for k in FIELDS})
    # shard 0: round 1 (5 requests, 3 bad) + round 2 (the 3); shard 1: one clean round
    assert fake.stats.batches_created == 3
    assert any(p.startswith("/v1beta/models/fake-flash:batchGenerateContent") for p in fake.stats.paths)
    assert any(p.startswith("/v1beta/batches/job") for p in fake.stats.paths)
    assert not list(res.glob("*.batch.json"))  # state removed once a shard is complete
    reasked = {r["id"] for r in rows if r["reasks"]}
    assert len(reasked) == 2
    cost = json.loads((res / "cost.json").read_text())
    assert cost["tokens"] == {k: fake.stats.usage[k] for k in ("input", "output", "thinking")}
    assert cost["batch_discount"] == 0.5
    full = (fake.stats.usage["input"] * 0.30
            + (fake.stats.usage["output"] + fake.stats.usage["thinking"]) * 2.5) / 1e6
    assert cost["cost_usd"]["total"] == pytest.approx(full * 0.5, abs=1e-6)


def test_pending_job_is_persisted_and_collected_later(tmp_path: Path, fake: FakeGemini,
                                                      gemini_env: dict) -> None:
    fake.batch_polls = 1000  # the job keeps running
    write_shards(tmp_path, shards=1, per_shard=3)
    cfg = write_config(tmp_path / "c.yaml", wait=0.1)
    assert run(tmp_path, cfg) == label.EXIT_PENDING
    state = json.loads((tmp_path / "labeling/results/input_part_0000.batch.json").read_text())
    assert state["job"] == "batches/job0001" and len(state["job_keys"]) == 3
    assert not (tmp_path / "labeling/results/dataset.jsonl").exists()  # make must not see a finished target
    fake.batch_polls = 0  # the job finishes; a re-run polls the same job, no new submission
    assert run(tmp_path, cfg) == 0
    assert fake.stats.batches_created == 1
    assert len(read_jsonl(tmp_path / "labeling/results/dataset.jsonl")) == 3
