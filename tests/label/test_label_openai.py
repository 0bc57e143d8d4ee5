"""The openai provider against the fake's OpenAI-style /v1/chat/completions (faults included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import label
from psyedge.contract import FIELDS, LABEL_SCHEMA
from testkit.fake_gemini import FakeGemini, random_faults
from testkit.label_builders import read_jsonl, write_config, write_shards


def test_openai_compatible_endpoint(tmp_path: Path, fake: FakeGemini,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSYEDGE_TEST_OPENAI_KEY", "sk-local-secret-999")
    fake.faults = random_faults(rate=0.25, seed=5, kinds=("429", "503", "truncated", "out_of_range"))
    ids = write_shards(tmp_path, shards=1, per_shard=12)
    cfg = write_config(tmp_path / "c.yaml", openai_url=f"{fake.url}/v1")
    assert label.main(["--provider", "openai", "--data-dir", str(tmp_path), "--config", str(cfg)]) == 0
    res = tmp_path / "labeling/results"
    rows, fails = read_jsonl(res / "dataset.jsonl"), read_jsonl(res / "failed.jsonl")
    assert sorted([r["id"] for r in rows] + [f["id"] for f in fails]) == sorted(ids)
    assert rows and all(r["provider"] == "openai" for r in rows)
    body = fake.stats.bodies[0]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"] == LABEL_SCHEMA["properties"]
    assert body["temperature"] == 0.0 and body["messages"][0]["role"] == "user"
    assert fake.stats.api_keys == {"Bearer sk-local-secret-999"}
    cost = json.loads((res / "cost.json").read_text())
    assert cost["tokens"] == {k: fake.stats.usage[k] for k in ("input", "output", "thinking")}
    assert "sk-local-secret-999" not in "".join(p.read_text() for p in res.iterdir() if p.is_file())
    for r in rows:
        assert set(FIELDS) <= set(r)
