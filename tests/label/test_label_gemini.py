"""The gemini provider end to end: real google-genai client -> fake Gemini server on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline import label
from pipeline.labeling.journal import SHARD_RE
from psyedge.contract import FIELDS, validate
from psyedge.prompt import instruction_and_transcript, prompt_hash
from testkit.fake_gemini import FakeGemini, expected_labels, prompt_key, random_faults
from testkit.label_builders import read_jsonl, write_config, write_shards

KNOWN_REASONS = {"invalid_reply", "max_tokens", "blocked", "transient_errors", "bad_input"}


def run(data: Path, cfg: Path, *extra: str, provider: str = "gemini") -> int:
    return label.main(["--provider", provider, "--data-dir", str(data), "--config", str(cfg), *extra])


def test_request_shape_schema_and_labels(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    ids = write_shards(tmp_path, shards=1, per_shard=4)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    body = fake.stats.bodies[0]
    gen = body["generationConfig"]
    assert gen["responseMimeType"] == "application/json"
    assert gen["temperature"] == 0.0
    # the SDK writes some fields in proto snake_case (the API takes both spellings)
    assert gen.get("thinkingConfig",
                   gen.get("thinking_config")) in ({"thinkingBudget": 0}, {"thinking_budget": 0})
    props = gen["responseSchema"]["properties"]
    # Gemini takes no integer enums: levels are integers with bounds, risk_flag a string enum.
    assert props["depression_level"] == {**props["depression_level"], "type": "INTEGER", "minimum": 0,
                                         "maximum": 3}
    assert "enum" not in props["student_distress_score"] and props["student_distress_score"]["maximum"] == 9
    assert props["risk_flag"]["enum"] == ["none", "suicidal", "self_harm", "violence"]
    assert all(p.startswith("/v1beta/models/fake-flash:generateContent") for p in fake.stats.paths)
    assert fake.stats.api_keys == {fake.api_key}
    rows = read_jsonl(tmp_path / "labeling/results/dataset.jsonl")
    assert [r["id"] for r in rows] == ids
    recs = [json.loads(line)
            for line in (tmp_path / "labeling/input_part_0000.jsonl").read_text().splitlines()]
    for row, rec in zip(rows, recs, strict=True):
        want = expected_labels(prompt_key(instruction_and_transcript(rec["conversation"])))
        assert {k: row[k] for k in FIELDS} == want
        validate({k: row[k] for k in FIELDS})
        assert (row["prompt_version"] == prompt_hash() and row["model"] == "fake-flash"
                and row["provider"] == "gemini")
        assert row["finish_reason"] == "STOP" and row["attempts"] == 1 and row["usage"]["calls"] == 1


def test_v1_path_and_base_url_from_env_only(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    """GOOGLE_GEMINI_BASE_URL alone points the run at the fake; api_version v1 uses /v1/ paths."""
    write_shards(tmp_path, shards=1, per_shard=2)
    assert run(tmp_path, write_config(tmp_path / "c.yaml", api_version="v1")) == 0
    assert fake.stats.paths and all(p.startswith("/v1/models/") for p in fake.stats.paths)


def test_faults_twenty_percent_three_shards(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    """20% faulty replies (every kind) over 3 shards: each id labeled or failed with a reason, once."""
    fake.faults = random_faults(rate=0.2, seed=3, always_bad_every=9)
    fake.slow_s = 0.6
    ids = write_shards(tmp_path, shards=3, per_shard=20, duplicates=1)
    assert run(tmp_path, write_config(tmp_path / "c.yaml", timeout=0.3)) == 0
    res = tmp_path / "labeling/results"
    rows, fails = read_jsonl(res / "dataset.jsonl"), read_jsonl(res / "failed.jsonl")
    got = [r["id"] for r in rows] + [f["id"] for f in fails]
    assert sorted(got) == sorted(ids) and len(set(got)) == len(got)
    assert fails, "always_bad prompts must end in failed.jsonl"
    for f in fails:
        assert f["reason"] in KNOWN_REASONS and f["error"]
        assert f["reason"] != "invalid_reply" or f["reasks"] == 2
    for s in range(3):  # per shard: labeled + failed = input
        name = f"input_part_{s:04d}"
        n_in = len(read_jsonl(tmp_path / f"labeling/{name}.jsonl"))
        assert len(read_jsonl(res / f"{name}.jsonl")) + len(read_jsonl(res / f"{name}.failed.jsonl")) == n_in
    kinds = set(fake.stats.faults)
    assert {"429", "500", "503", "slow", "truncated", "out_of_range", "unknown_enum"} <= kinds, kinds
    for r in rows:
        validate({k: r[k] for k in FIELDS})
    assert any(r["reasks"] > 0 for r in rows) and any(r["attempts"] > 1 for r in rows)
    # the dedup'd record of each shard reused its twin's labels without a request
    dups = [r for r in rows if r["dedup_of"]]
    assert dups and all(r["usage"]["calls"] == 0 for r in dups)
    # the bill equals what the server delivered (slow replies the client gave up on are not received)
    cost = json.loads((res / "cost.json").read_text())
    assert cost["tokens"] == {k: fake.stats.usage[k] for k in ("input", "output", "thinking")}
    assert cost["requests"] == fake.stats.usage["calls"]
    assert cost["cost_usd"]["total"] == pytest.approx(
        (fake.stats.usage["input"] * 0.30
         + (fake.stats.usage["output"] + fake.stats.usage["thinking"]) * 2.50) / 1e6,
        abs=1e-5)


def test_retry_delay_is_honoured(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    """A 429 with retryDelay 0.4s holds the retry at least that long (backoff alone is <= 0.05 s)."""
    fake.retry_delay = "0.4s"
    fake.faults = lambda key, n, reask: "429" if n == 0 else None
    write_shards(tmp_path, shards=1, per_shard=1)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    t = fake.stats.times
    assert len(t) == 2 and t[1] - t[0] >= 0.38
    row = read_jsonl(tmp_path / "labeling/results/dataset.jsonl")[0]
    assert row["attempts"] == 2 and row["usage"]["calls"] == 1


def test_transient_errors_exhausted_go_to_failed(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    fake.faults = lambda key, n, reask: "503"
    write_shards(tmp_path, shards=1, per_shard=2)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    fails = read_jsonl(tmp_path / "labeling/results/failed.jsonl")
    assert [f["reason"] for f in fails] == ["transient_errors"] * 2
    assert "http_503 after 7 attempts" in fails[0]["error"] and fails[0]["attempts"] == 7


def test_truncated_max_tokens_is_reasked_not_repaired(tmp_path: Path, fake: FakeGemini,
                                                      gemini_env: dict) -> None:
    fake.faults = lambda key, n, reask: "truncated" if n == 0 else None
    write_shards(tmp_path, shards=1, per_shard=1)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    row = read_jsonl(tmp_path / "labeling/results/dataset.jsonl")[0]
    assert row["reasks"] == 1 and row["attempts"] == 2
    reask_body = fake.stats.bodies[1]
    assert [c["role"] for c in reask_body["contents"]] == ["user", "model", "user"]
    assert "MAX_TOKENS" in reask_body["contents"][2]["parts"][0]["text"]


def test_out_of_range_is_never_clamped(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    fake.faults = lambda key, n, reask: "out_of_range"
    write_shards(tmp_path, shards=1, per_shard=1)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    assert read_jsonl(tmp_path / "labeling/results/dataset.jsonl") == []
    fail = read_jsonl(tmp_path / "labeling/results/failed.jsonl")[0]
    assert fail["reason"] == "invalid_reply" and '"depression_level":7' in fail["raw_text"]
    assert "depression_level" in fail["error"]


def test_resume_skips_done_and_relabels_on_new_model(tmp_path: Path, fake: FakeGemini,
                                                     gemini_env: dict) -> None:
    write_shards(tmp_path, shards=2, per_shard=3)
    cfg = write_config(tmp_path / "c.yaml")
    assert run(tmp_path, cfg, "--shard", "1") == 0
    assert sum(fake.stats.requests.values()) == 3
    assert run(tmp_path, cfg) == 0            # shard 1 is done: only shard 0 is sent
    assert sum(fake.stats.requests.values()) == 6
    assert run(tmp_path, cfg) == 0            # everything done: nothing sent
    assert sum(fake.stats.requests.values()) == 6
    text = cfg.read_text().replace("fake-flash:",
                                   "fake-flash:\n    rpm: 0\n  fake-pro:\n    price: {input: 1, output: 1, "
                                   "thinking: 1}\n  x-unused:", 1)
    cfg.write_text(text)
    assert run(tmp_path, cfg, "--model", "fake-pro") == 0   # another model: everything relabeled
    assert sum(fake.stats.requests.values()) == 12
    rows = read_jsonl(tmp_path / "labeling/results/dataset.jsonl")
    assert {r["model"] for r in rows} == {"fake-pro"} and len(rows) == 6


def test_log_and_stats_written(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    write_shards(tmp_path, shards=1, per_shard=2)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    res = tmp_path / "labeling/results"
    assert "labeling 1 shard(s) with gemini/fake-flash" in (res / "labeling.log").read_text()
    stats = json.loads((res / "stats.json").read_text())
    assert stats["shards"]["input_part_0000.jsonl"]["labeled"] == 2
    assert json.loads((res / "config.json").read_text())["model"] == "fake-flash"
    assert all(SHARD_RE.match(p.name) for p in (tmp_path / "labeling").glob("input_part_*.jsonl"))


def test_rate_limit_spaces_requests(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    """rpm 600 -> one request every 0.1 s, whatever the concurrency."""
    write_shards(tmp_path, shards=1, per_shard=6)
    t0 = time.monotonic()
    assert run(tmp_path, write_config(tmp_path / "c.yaml", rpm=600, concurrency=8)) == 0
    t = sorted(fake.stats.times)
    assert len(t) == 6 and t[-1] - t[0] >= 0.45 and time.monotonic() - t0 < 5


def test_blocked_prompt_is_reported_as_blocked(tmp_path: Path, fake: FakeGemini, gemini_env: dict) -> None:
    fake.faults = lambda key, n, reask: "blocked"
    write_shards(tmp_path, shards=1, per_shard=1)
    assert run(tmp_path, write_config(tmp_path / "c.yaml")) == 0
    fail = read_jsonl(tmp_path / "labeling/results/failed.jsonl")[0]
    # a refusal is final: asked once, never re-asked as if the answer were malformed
    assert fail["reason"] == "blocked" and fail["finish_reason"] == "BLOCKED_SAFETY" and fail["attempts"] == 1
    assert fail["block_reason"] == "SAFETY" and fail["reasks"] == 0
    assert fail["usage"]["input"] == fake.stats.usage["input"] > 0
