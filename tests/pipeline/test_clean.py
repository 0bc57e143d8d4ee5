"""The cleaner and its CLI: record cleaning, outputs, drop ledger, accounting, PII, exit codes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pipeline_builders import (
    LONG_ANSWER,
    PII_VALUES,
    e_items,
    pii_sentence,
    psyqa_item,
    student_dialogue,
    write_case,
    write_e,
)

from pipeline import clean
from pipeline.parsers.base import Drop, Record


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cli(inputs: dict[str, Path], out: Path, *extra: str) -> int:
    return clean.main(["--psyqa", str(inputs["psyqa"]), "--cpsycound", str(inputs["cpsycound"]),
                       "--cpsycoune", str(inputs["cpsycoune"]), "--data-dir", str(out), "--no-progress",
                       *extra])


def test_clean_record_merges_removes_fillers_and_normalises() -> None:
    rec = Record("cpsycound-case_1", "cpsycound", None,
                 [("user", "我\u3000很 焦虑\u200b。"), ("assistant", "嗯。"), ("user", "考试\n\n\n快到了"),
                  ("assistant", "好的"), ("assistant", "说说看？"), ("user", "\u200b")], "p",
                 {"file": "case_1.txt"})
    removed: Counter[str] = Counter()
    out = clean.clean_record(rec, removed, Counter())
    assert isinstance(out, dict)
    assert out["conversation"] == [{"role": "user", "text": "我 很 焦虑。\n考试\n快到了"},
                                   {"role": "assistant", "text": "说说看？"}]
    assert removed == Counter({"filler_reply": 2, "merged": 1, "empty": 1})


def test_one_speaker_is_dropped() -> None:
    rec = Record("x", "cpsycoune", "T", [("user", "你好"), ("assistant", "嗯嗯！"), ("user", "在吗")], "p")
    out = clean.clean_record(rec, Counter(), Counter())
    assert isinstance(out, Drop) and out.reason == "one_speaker" and out.detail == "only user turns have text"


def test_outputs_ids_order_and_stats(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli(inputs, out) == 0
    unified = rows(out / "processed" / "unified.jsonl")
    assert [r["id"] for r in unified] == ["cpsycound-case_0", "cpsycound-case_1", "cpsycound-case_10",
                                          "cpsycoune-Education-1", "cpsycoune-Family_Relationship-2",
                                          "psyqa-1", "psyqa-2"]
    assert all(set(r) == {"id", "source", "topic", "conversation", "meta"} for r in unified)
    assert unified[4]["topic"] == "Family Relationship"
    stats = json.loads((out / "processed" / "stats.json").read_text())
    assert stats["total"] == 7 and stats["by_source"] == {"cpsycound": 3, "cpsycoune": 2, "psyqa": 2}
    assert stats["avg_turns"] == {"cpsycound": 4.0, "cpsycoune": 4.0, "psyqa": 2.0}
    assert stats["topic_hist"]["cpsycoune"] == {"Education": 1, "Family Relationship": 1}
    small = json.loads((out / "processed" / "stats_min.json").read_text())
    assert small["total"] == 7 and small["shards"] == 1
    assert rows(out / "labeling" / "input_part_0001.jsonl") == rows(out / "processed" / "unified_min.jsonl")
    assert (out / "processed" / "topic_hist.png").read_bytes()[:4] == b"\x89PNG"
    first = (out / "processed" / "unified.jsonl").read_bytes()
    assert cli(inputs, out) == 0
    assert (out / "processed" / "unified.jsonl").read_bytes() == first  # stable ids, deterministic order


def test_bad_files_land_in_the_ledger_and_strict_fails(inputs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    d, e = inputs["cpsycound"], inputs["cpsycoune"]
    (d / "case_20.txt").write_bytes(b"")
    (d / "case_21.txt").write_bytes(b"\x80\xff\xfe" * 5)
    write_case(d, "case_22.txt", [("来访者", "我是学生，很焦虑。"), ("来访者", "在吗？")])
    (e / "Education" / "9.json").write_text('["求助者：你好", ', encoding="utf-8")
    write_e(e, "Education", "8.json", ["求助者：只有我在说。", "求助者：没人回答。"])
    q = json.loads(inputs["psyqa"].read_text(encoding="utf-8"))
    q.append(psyqa_item(3, "只有噪声回答", "学生", ["顶", "同问"]))
    q.append(psyqa_item(1, "重复的id", "学生焦虑", [LONG_ANSWER]))
    inputs["psyqa"].write_text(json.dumps(q, ensure_ascii=False)[:-1] + ', {"broken": ', encoding="utf-8")
    out = tmp_path / "out"
    assert cli(inputs, out) == 0
    assert "dropped" in capsys.readouterr().out
    ledger = {(Path(r["path"]).name, r["reason"]) for r in rows(out / "processed" / "dropped.jsonl")}
    assert ledger == {("case_20.txt", "empty_file"), ("case_21.txt", "undecodable"),
                      ("case_22.txt", "one_speaker"),
                      ("9.json", "bad_json"), ("8.json", "one_speaker"), ("psyqa.json", "no_usable_answer"),
                      ("psyqa.json", "duplicate"), ("psyqa.json", "bad_json")}
    stats = json.loads((out / "processed" / "stats.json").read_text())
    assert stats["inputs"] == {"cpsycound": 6, "cpsycoune": 4, "psyqa": 5}
    for source, n in stats["inputs"].items():  # inputs = kept + dropped, per source
        assert n == stats["by_source"][source] + sum(stats["dropped_by_source"][source].values())
    assert stats["dropped"] == {"bad_json": 2, "duplicate": 1, "empty_file": 1, "no_usable_answer": 1,
                                "one_speaker": 2, "undecodable": 1}
    assert cli(inputs, out, "--strict") == 1


def test_pii_planted_in_every_format_does_not_survive(tmp_path: Path) -> None:
    d, e, q = tmp_path / "D", tmp_path / "E", tmp_path / "q.json"
    lines = student_dialogue(1)
    lines.insert(1, ("来访者", pii_sentence()))
    lines.insert(0, ("", f"（来访者留下了联系方式{PII_VALUES['mobile_plain']}）"))
    write_case(d, "case_1.txt", lines)
    write_case(d, "case_2.txt", lines, encoding="gb18030", newline="\r\n", colon=":")
    write_case(d, "case_3.txt", lines[:2] + [("", pii_sentence())] + lines[2:], bom=True)
    write_e(e, "Education", "1.json", e_items([(s, t) for s, t in lines if s]))
    variant = {"title": "考试焦虑", "content": "我是学生。" + pii_sentence(),
               "answers": [{"text": LONG_ANSWER + pii_sentence(), "likes": 2}]}
    q.write_text(json.dumps([psyqa_item(1, "考试焦虑" + pii_sentence(), pii_sentence(),
                                        [LONG_ANSWER + pii_sentence()]),
                             variant], ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    assert cli({"cpsycound": d, "cpsycoune": e, "psyqa": q}, out) == 0
    stats = json.loads((out / "processed" / "stats.json").read_text())
    assert stats["total"] == 6 and sum(stats["dropped"].values()) == 0
    written = [p for p in out.rglob("*.json*") if p.is_file()]
    assert len(written) >= 6
    for path in written:
        text = path.read_text(encoding="utf-8")
        for kind, value in PII_VALUES.items():
            assert value not in text, f"{kind} {value!r} survived in {path}"
            assert value.replace(" ", "").replace("-", "") not in text.replace(" ", "").replace("-", "")
    unified = (out / "processed" / "unified.jsonl").read_text(encoding="utf-8")
    for placeholder in ("[PHONE]", "[EMAIL]", "[QQ]", "[WECHAT]", "[IDCARD]"):
        assert unified.count(placeholder) >= 6, placeholder
    assert stats["pii_replaced"]["idcard"] >= 6


def test_shards_rotate_and_stale_ones_are_removed(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = out / "labeling" / "input_part_0009.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text("old\n")
    results = out / "labeling" / "results"
    results.mkdir()
    assert cli(inputs, out, "--shard-lines", "3") == 0
    shards = sorted((out / "labeling").glob("input_part_*.jsonl"))
    assert [p.name for p in shards] == ["input_part_0001.jsonl", "input_part_0002.jsonl",
                                        "input_part_0003.jsonl"]
    assert [len(rows(p)) for p in shards] == [3, 3, 1]
    assert results.is_dir() and not (out / "labeling" / ".input_parts.tmp").exists()


def test_default_shard_size_is_300() -> None:
    assert clean.SHARD_LINES == 300


def test_missing_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = clean.main(["--cpsycound", str(tmp_path / "nope"), "--data-dir", str(tmp_path / "o"),
                       "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "no such folder" in err and "Traceback" not in err
    assert clean.main(["--psyqa", str(tmp_path), "--data-dir", str(tmp_path / "o")]) == 2


def test_empty_value_skips_a_source(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert clean.main(["--psyqa", "", "--cpsycoune", "", "--cpsycound", str(inputs["cpsycound"]),
                       "--data-dir", str(out), "--no-progress"]) == 0
    stats = json.loads((out / "processed" / "stats.json").read_text())
    assert stats["by_source"] == {"cpsycound": 3}


def _peak(run_dir: Path, out: Path) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        clean.run({"cpsycound": run_dir}, out, progress=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming: memory holds the sorted file list and the id set (well under 1 KB per file),
    never the records: 4x the files, or 8x longer files, barely move the peak."""
    monkeypatch.setattr(clean, "plot_topics", lambda *a, **k: None)
    sizes = {}
    for name, n, repeat in (("base", 50, 3), ("more", 200, 3), ("longer", 50, 24)):
        d = tmp_path / name
        for i in range(n):
            write_case(d, f"case_{i}.txt", student_dialogue(i) * repeat)
        if not sizes:  # warm-up: first-call allocations (imports, regex caches) are not per-input memory
            _peak(d, tmp_path / "o_warm")
        sizes[name] = (_peak(d, tmp_path / f"o_{name}"), sum(p.stat().st_size for p in d.iterdir()))
    (base, base_bytes), (more, _), (longer, longer_bytes) = sizes["base"], sizes["more"], sizes["longer"]
    per_file = (more - base) / 150
    assert per_file < 1024, f"peak grows {per_file:.0f} bytes per extra file ({base} -> {more})"
    one_file = max(p.stat().st_size for p in (tmp_path / "longer").iterdir())
    # a handful of copies of the file in hand (bytes, text, lines, turns, JSON line), not the input
    assert longer - base < 12 * one_file < longer_bytes - base_bytes, (f"peak {base} -> {longer} "
                                                                       "for 8x longer files")
