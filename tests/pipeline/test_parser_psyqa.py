"""PsyQA parser and the streaming JSON reader: both schemas, answer choice, noise, broken files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pipeline_builders import LONG_ANSWER, psyqa_item

from pipeline.parsers import psyqa
from pipeline.parsers.base import Drop, Record
from pipeline.parsers.jsonstream import JsonStreamError, iter_json_items


def test_public_schema() -> None:
    rec = psyqa.parse_item(psyqa_item(4394, "考试焦虑怎么办？", "我是高三学生。", [LONG_ANSWER]), 0, "f.json")
    assert isinstance(rec, Record)
    assert rec.id == "psyqa-4394" and rec.topic == "学业"
    assert rec.turns == [("user", "考试焦虑怎么办？\n我是高三学生。"), ("assistant", LONG_ANSWER)]
    assert rec.meta["keywords"] == ["学业", "焦虑情绪"]


def test_variant_schema_best_by_likes_then_length() -> None:
    short_liked = "这是一个被很多人点赞的回答，内容比较简短但是有用的建议。"
    obj = {"title": "室友排挤我", "content": "大学宿舍里被孤立。",
           "answers": [{"text": LONG_ANSWER, "likes": 3}, {"text": short_liked, "likes": 12},
                       {"text": "顶", "likes": 99}, {"text": short_liked + "再补充一句。", "likes": 12}]}
    rec = psyqa.parse_item(obj, 5, "f.json")
    assert isinstance(rec, Record)
    assert rec.turns[1] == ("assistant", short_liked + "再补充一句。")  # 12 likes; longer of the two
    assert rec.id.startswith("psyqa-h") and rec.id == psyqa.parse_item(obj, 9, "g.json").id  # stable
    assert rec.meta["noise_answers"] == {"filler": 1} and rec.meta["answer_likes"] == 12


def test_description_repeating_the_question_is_not_doubled() -> None:
    rec = psyqa.parse_item(psyqa_item(1, "怎么办", "怎么办？我很焦虑，考试快到了。", [LONG_ANSWER]), 0, "f")
    assert isinstance(rec, Record) and rec.turns[0] == ("user", "怎么办？我很焦虑，考试快到了。")


@pytest.mark.parametrize(("answers", "reason"), [
    ([], "no answers"),
    (["", "同问", "好的"], "empty=1, filler=2"),
    (["加我微信 abc_helper888 领取免费课程 http://x.cn"], "advertisement=1"),
    (["太短了不行"], "too_short=1"),
])
def test_no_usable_answer(answers: list[str], reason: str) -> None:
    drop = psyqa.parse_item(psyqa_item(7, "问题", "描述", answers), 3, "f.json")
    assert isinstance(drop, Drop) and drop.reason == "no_usable_answer" and drop.index == 3
    assert drop.id == "psyqa-7" and reason in drop.detail


def test_schema_errors() -> None:
    assert psyqa.parse_item([1, 2], 0, "f").reason == "bad_schema"  # type: ignore[union-attr]
    # type: ignore[union-attr]
    assert psyqa.parse_item({"question": "", "answers": []}, 0, "f").reason == "no_question"
    # type: ignore[union-attr]
    assert psyqa.parse_item({"question": "q", "answers": "x"}, 0, "f").reason == "bad_schema"


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_stream_reader_array_and_jsonl(chunk: int) -> None:
    items = [{"a": i, "t": "中文" * i, "n": [1.5, None, True]} for i in range(30)] + [123456789, "x"]
    assert list(iter_json_items(io.StringIO(json.dumps(items, ensure_ascii=False, indent=1)), chunk)) == items
    jsonl = "\n".join(json.dumps(x, ensure_ascii=False) for x in items) + "\n"
    assert list(iter_json_items(io.StringIO(jsonl), chunk)) == items
    assert list(iter_json_items(io.StringIO("\ufeff [ ] "), chunk)) == []


@pytest.mark.parametrize(("text", "line", "before"), [
    ('[{"a": 1},\n {"a": 2},\n {"a": ]', 3, 2),
    ('[{"a": 1} {"a": 2}]', 1, 1),
    ('[{"a": 1},\n', 2, 1),
])
def test_stream_reader_reports_where_it_broke(text: str, line: int, before: int) -> None:
    got: list[object] = []
    with pytest.raises(JsonStreamError) as err:
        for item in iter_json_items(io.StringIO(text), 4):
            got.append(item)
    assert err.value.line == line and err.value.items_before == before and len(got) == before


def _write(path: Path, items: list[object]) -> Path:
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return path


def test_broken_file_keeps_what_came_before(tmp_path: Path) -> None:
    good = [psyqa_item(i, f"问题{i}", "我是学生，很焦虑。", [LONG_ANSWER]) for i in range(3)]
    path = tmp_path / "q.json"
    path.write_text(json.dumps(good, ensure_ascii=False)[:-1] + ', {"question": "坏', encoding="utf-8")
    out = list(psyqa.iter_records(path))
    assert [type(x).__name__ for x in out] == ["Record", "Record", "Record", "Drop"]
    drop = out[-1]
    assert isinstance(drop,
                      Drop) and drop.reason == "bad_json" and drop.index == 3 and "line 1" in drop.detail


def test_empty_undecodable_and_gb18030_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.json"
    empty.write_bytes(b"")
    assert [d.reason for d in psyqa.iter_records(empty)] == ["empty_file"]  # type: ignore[union-attr]
    array = _write(tmp_path / "a.json", [])
    assert [d.reason for d in psyqa.iter_records(array)] == ["empty_file"]  # type: ignore[union-attr]
    bad = tmp_path / "b.json"
    bad.write_bytes(b"[" + b"\x80\xff" * 10 + b"]")
    assert [d.reason for d in psyqa.iter_records(bad)] == ["undecodable"]  # type: ignore[union-attr]
    gb = tmp_path / "g.json"
    gb.write_bytes(json.dumps([psyqa_item(5, "考试焦虑", "学生", [LONG_ANSWER])],
                              ensure_ascii=False).encode("gb18030"))
    (rec,) = psyqa.iter_records(gb)
    assert isinstance(rec, Record) and rec.turns[1][1] == LONG_ANSWER
