"""Unit tests of the labeling parts: rules teacher, config, journal repair, rate limiter, reply checks,
cost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from pipeline import label
from pipeline.cost import (
    CJK_TOKENS_PER_CHAR,
    OTHER_TOKENS_PER_CHAR,
    CostReport,
    estimate_tokens,
    prompt_token_stats,
)
from pipeline.labeling.config import ConfigError, load_config
from pipeline.labeling.journal import read_rows
from pipeline.labeling.providers.rules import rule_labels
from pipeline.labeling.records import Reply, Usage
from pipeline.labeling.replies import check_reply, gemini_schema, reask_messages
from pipeline.ratelimit import RateLimiter
from psyedge.contract import FIELDS, validate
from testkit.label_builders import conversation, read_jsonl, write_config, write_shards

CONFIG = Path(__file__).resolve().parents[2] / "pipeline" / "label_config.yaml"


# ---- rules -------------------------------------------------------------------------------------------

def test_rules_labels_follow_the_text() -> None:
    calm = rule_labels([{"role": "user", "text": "老师您好，我想问问选课的事。"}])
    assert calm == {"depression_level": 0, "anxiety_level": 0, "risk_flag": "none",
                    "student_distress_score": 0}
    anxious = rule_labels([{"role": "user", "text": "考试前我非常紧张，心慌，失眠，特别担心挂科，很焦虑。"}])
    assert (anxious["anxiety_level"] == 3 and anxious["depression_level"] == 0
            and anxious["student_distress_score"] >= 4)
    crisis = rule_labels([{"role": "user", "text": "我觉得活着没意思，不想活了。"}])
    assert (crisis["risk_flag"] == "suicidal" and crisis["depression_level"] >= 2
            and crisis["student_distress_score"] >= 5)
    for labels in (calm, anxious, crisis):
        validate(labels)


def test_rules_reads_only_the_student() -> None:
    """A counselor asking about suicide is not the student's risk."""
    conv = [{"role": "user", "text": "最近学习压力有点大。"},
            {"role": "assistant", "text": "你有没有想过自杀？很绝望吗？"}]
    assert rule_labels(conv)["risk_flag"] == "none" and rule_labels(conv)["depression_level"] == 0


def test_rules_run_gives_varied_labels(tmp_path: Path) -> None:
    write_shards(tmp_path, shards=1, per_shard=16)
    cfg = write_config(tmp_path / "c.yaml")
    assert label.main(["--provider", "rules", "--data-dir", str(tmp_path), "--config", str(cfg)]) == 0
    rows = read_jsonl(tmp_path / "labeling/results/dataset.jsonl")
    assert len(rows) == 16
    for k in FIELDS:
        assert len({r[k] for r in rows}) >= 2, k
    assert label.main(["--provider", "rules", "--data-dir", str(tmp_path), "--config", str(cfg)]) == 0
    assert [r["id"]
            for r in read_jsonl(tmp_path / "labeling/results/dataset.jsonl")] == [r["id"] for r in rows]


# ---- config ------------------------------------------------------------------------------------------

def test_shipped_config_resolves_every_provider() -> None:
    flash = load_config(CONFIG, "gemini")
    assert flash.model == "gemini-2.5-flash" and flash.price.input == 0.30 and flash.rpm == 1000
    assert flash.thinking_budget == 0 and flash.temperature == 0
    batch = load_config(CONFIG, "gemini-batch")
    assert batch.batch_discount == 0.5 and batch.price.output == 2.50
    assert load_config(CONFIG, "rules").model == "rules-v1"
    assert load_config(CONFIG, "openai").base_url.startswith("http")
    assert load_config(CONFIG, "gemini", "gemini-2.5-pro", {"rpm": 5}).rpm == 5


@pytest.mark.parametrize("text, message", [
    ("defaults: {rmp: 5}\nmodels: {m: {}}\nproviders: {rules: {model: m}}", "unknown key(s) ['rmp']"),
    ("defaults: {}\nmodels: {}\nproviders: {rules: {model: m}}", "model 'm' has no entry under models"),
    ("defaults: {concurrency: 0}\nmodels: {m: {}}\nproviders: {rules: {model: m}}",
     "concurrency must be >= 1"),
    ("limits: {}", "unknown section(s) ['limits']"),
    ("defaults: [1", "not valid YAML"),
    ("models: {m: {price: {inptu: 1}}}\nproviders: {rules: {model: m}}",
     "price has unknown key(s) ['inptu']"),
])
def test_config_errors_name_the_fix(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError,
                       match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(path, "rules")


# ---- journal -----------------------------------------------------------------------------------------

def test_torn_tail_is_cut_and_middle_damage_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    p.write_bytes(b'{"id":"a"}\n{"id":"b"}\n{"id":"c", "depr')
    assert [r["id"] for r in read_rows(p)] == ["a", "b"]
    assert p.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n'
    p.write_bytes(b'{"id":"a"}\nnot json\n{"id":"c"}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_rows(p)


# ---- replies -----------------------------------------------------------------------------------------

def test_check_reply_never_clamps() -> None:
    ok = '{"depression_level":1,"anxiety_level":2,"risk_flag":"none","student_distress_score":4}'
    assert check_reply(Reply(ok, "STOP", Usage()))[0] == json.loads(ok)
    assert "cut off" in check_reply(Reply(ok, "MAX_TOKENS", Usage()))[1]
    assert "depression_level" in check_reply(Reply(ok.replace(":1,", ":4,", 1), "STOP", Usage()))[1]
    assert "risk_flag" in check_reply(Reply(ok.replace("none", "maybe"), "STOP", Usage()))[1]
    assert "not JSON" in check_reply(Reply(ok[:20], "STOP", Usage()))[1]
    msgs = reask_messages("P", [("bad", "why")])
    assert [r for r, _ in msgs] == ["user", "model", "user"] and "why" in msgs[2][1]


def test_gemini_schema_is_derived_from_the_contract() -> None:
    s = gemini_schema()
    assert s["propertyOrdering"] == list(FIELDS)
    assert (s["properties"]["anxiety_level"]["minimum"] == 0
            and s["properties"]["anxiety_level"]["maximum"] == 3)
    assert all("enum" not in v for k, v in s["properties"].items() if k != "risk_flag")


# ---- rate limiter --------------------------------------------------------------------------------------

def test_rpm_spacing_and_pause() -> None:
    async def go() -> tuple[float, float]:
        lim = RateLimiter(rpm=1200)  # one per 50 ms
        t0 = time.monotonic()
        await asyncio.gather(*(lim.acquire() for _ in range(9)))
        spaced = time.monotonic() - t0
        lim.pause(0.2)
        t1 = time.monotonic()
        await lim.acquire()
        return spaced, time.monotonic() - t1

    spaced, paused = asyncio.run(go())
    assert 0.35 <= spaced < 0.7 and paused >= 0.19


def test_tpm_bucket_waits_for_tokens() -> None:
    async def go() -> float:
        lim = RateLimiter(tpm=6000)  # 100 tokens/s, bucket of 6000
        await lim.acquire(6000)
        t0 = time.monotonic()
        await lim.acquire(30)  # bucket empty: 0.3 s of refill
        return time.monotonic() - t0

    assert 0.25 <= asyncio.run(go()) < 0.6


# ---- cost ---------------------------------------------------------------------------------------------

def test_cost_report_uses_config_prices_and_discount(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, "gemini-batch")
    rows = [{"usage": {"input": 1_000_000, "output": 100_000, "thinking": 0, "calls": 10}},
            {"usage": {"input": 0, "output": 0, "thinking": 0, "calls": 0}}]
    d = CostReport.from_rows(rows, cfg).to_dict()
    assert d["tokens"] == {"input": 1_000_000, "output": 100_000, "thinking": 0}
    assert d["cost_usd"]["total"] == pytest.approx((0.30 + 0.25) * 0.5)
    assert d["avg_input_tokens_per_request"] == 100_000


def test_prompt_token_estimate() -> None:
    assert estimate_tokens("焦虑" * 100) == pytest.approx(200 * CJK_TOKENS_PER_CHAR, abs=2)
    assert estimate_tokens("abcd" * 25) == pytest.approx(100 * OTHER_TOKENS_PER_CHAR, abs=2)
    stats = prompt_token_stats([conversation(i) for i in range(5)])
    assert stats["method"] == "estimate" and 150 < stats["avg_input_tokens"] < 400
    stats = prompt_token_stats([conversation(0)], count=len)
    assert stats["method"] == "tokenizer" and stats["avg_input_tokens"] == stats["avg_prompt_chars"]
