"""The shipped samples (the embedded default of `make data` / `make demo`) are what they claim."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import clean
from pipeline.parsers import cpsycound
from psyedge.prompt import check_conversation

SAMPLES = clean.SAMPLES


def test_samples_clean_without_drops_and_feed_the_labeler(tmp_path: Path) -> None:
    assert clean.main(["--data-dir", str(tmp_path), "--no-progress", "--strict"]) == 0
    stats = json.loads((tmp_path / "processed" / "stats.json").read_text())
    small = json.loads((tmp_path / "processed" / "stats_min.json").read_text())
    assert stats["by_source"] == {"cpsycound": 25, "cpsycoune": 8, "psyqa": 10}
    assert small["total"] >= 30 and all(small["by_source"].values())
    assert set(stats["pii_replaced"]) >= {"landline", "email", "qq"}
    text = (tmp_path / "processed" / "unified_min.jsonl").read_text(encoding="utf-8")
    # suicidal, self-harm, violence and distress cues, so labeling and training see every class
    for cue in ("不想活了", "死了算了", "划手臂", "划手腕", "捅他", "焦虑", "失眠", "抑郁"):
        assert cue in text, cue


def test_samples_cover_the_irregular_formats() -> None:
    d = SAMPLES / "CPsyCounD"
    assert len(cpsycound.list_files(d)) == 25
    raw = {p.name: p.read_bytes() for p in d.glob("case_*.txt")}
    assert any(b.startswith(b"\xef\xbb\xbf") and b"\r\n" in b for b in raw.values())  # BOM + CRLF
    gb = [n for n, b in raw.items() if _not_utf8(b)]
    assert gb and "来访者".encode("gb18030") in raw[gb[0]]
    texts = {n: (b.decode("gb18030") if n in gb else b.decode("utf-8-sig")) for n, b in raw.items()}
    assert any("来访者（" in t for t in texts.values())  # 来访者（姚先生）-style speaker
    assert any("\n1. " in t for t in texts.values())  # numbered advice continuation lines
    assert any("\n妈妈:" in t or "\n妈妈：" in t for t in texts.values())
    assert (SAMPLES / "CPsyCounE" / "Family Relationship").is_dir()
    q = json.loads((SAMPLES / "psyqa_sample.json").read_text(encoding="utf-8"))
    assert any("questionID" in r for r in q) and any("title" in r and "likes" in r["answers"][0] for r in q)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_demo_conversations_are_valid_sdk_input() -> None:
    lines = (SAMPLES / "demo_conversations.jsonl").read_text(encoding="utf-8").splitlines()
    convs = [json.loads(line) for line in lines if line.strip()]
    assert len(convs) == 5 and len({c["id"] for c in convs}) == 5
    for c in convs:
        assert check_conversation(c["conversation"])
    assert any("不想活了" in t["text"] for c in convs for t in c["conversation"])
