"""The risk lexicon: API, the kinds of expression it must catch, context rules, and the data file.

Every sentence here is written for the test (none is from a dataset). The real-label floors are in
tests/benchmarks/test_risk_floors.py.
"""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psyedge.contract import RISK_SEVERITY, most_severe
from psyedge.lexicon import (
    Hit,
    LexiconError,
    explain,
    lexicon_risk,
    load_lexicon,
    parse_lexicon,
    scan,
)

LEXICON_MD = Path(__file__).resolve().parents[1] / "LEXICON.md"


def _raw() -> dict:
    return json.loads(resources.files("psyedge").joinpath("data/risk_lexicon.json").read_text("utf-8"))


# ---- API -------------------------------------------------------------------------------------
def test_scan_returns_hits_whose_spans_point_at_the_expression() -> None:
    text = "最近压力很大，我真的不想活了。"
    hits = scan(text)
    assert hits and all(isinstance(h, Hit) for h in hits)
    (hit,) = hits
    assert hit.risk_flag == "suicidal"
    assert text[hit.span[0]:hit.span[1]] == "不想活"
    assert hit.entry in {e.id for e in load_lexicon().entries}


def test_lexicon_risk_takes_the_most_severe_flag() -> None:
    assert lexicon_risk("我想打人，也想自杀") == "suicidal"
    assert lexicon_risk("我会用刀片划自己的手臂，有时想杀了他") == "self_harm"
    assert lexicon_risk("我想杀了他") == "violence"
    assert lexicon_risk("今天考试考得不错，和室友去吃火锅") == "none"
    assert lexicon_risk("") == "none"


def test_load_lexicon_is_cached_and_a_path_loads_another_file(tmp_path: Path) -> None:
    assert load_lexicon() is load_lexicon()
    doc = {"entries": [{"id": "x", "class": "violence", "group": "test", "phrase": "测试词"}]}
    path = tmp_path / "lex.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    lex = load_lexicon(path)
    assert lex.risk("这是测试词") == "violence"
    assert lexicon_risk("这是测试词") == "none"  # the packaged lexicon is untouched


# ---- what it must catch (the kinds of expression PsySUICIDE showed matter) -------------------
@pytest.mark.parametrize("text", [
    "活着好累",                    # passive ideation
    "真希望明天早上不想醒来",
    "有时候觉得活着没有意义",
    "我不想再活下去了",
    "感觉撑了这么久，活不下去了",
    "我好想死啊",                  # death wish
    "死了就解脱了吧",
    "还不如死了算了",
    "我想一了百了",                # euphemism
    "我甚至想离开这个世界",
    "有时候真想想不开",
    "想从这个世界消失",
    "站在楼顶想跳下去",            # method words
    "我想跳楼",
    "上次割腕被发现了",
    "我攒了一些安眠药",
    "吃多少片会死",
    "有没有不痛苦的死法",
    "怎样才能快速死亡",
    "我已经写好了遗书",            # preparation
    "我想自杀",                    # explicit
    "有过轻生的念头",
    "我真想了结自己",
    "先杀了你再自杀",              # severity: suicidal beats violence
    "要是没有家人我就自杀了",      # first-person conditional: kept (LEXICON.md: hypotheticals)
    "与好朋友分开而想死",          # a noun after 与 is an object, not the subject
    "我以前有过自殺的想法",        # traditional characters are folded
])
def test_suicidal_expressions_are_caught(text: str) -> None:
    assert lexicon_risk(text) == "suicidal", [(c.hit.entry, c.suppressed_by) for c in explain(text)]


@pytest.mark.parametrize("text", [
    "我会自残",
    "难受的时候会用刀片划自己的手臂",
    "每天都在扇自己耳光",
    "有时候控制不住伤害自己",
])
def test_self_harm_expressions_are_caught(text: str) -> None:
    assert lexicon_risk(text) == "self_harm"


@pytest.mark.parametrize("text", [
    "我真想杀了他",
    "你们全部去死",               # the longer violence match wins over the "去死" inside it
    "我想报复他们",
    "我忍不住动手打了她",
    "想把那个人一刀砍死",
])
def test_violence_expressions_are_caught(text: str) -> None:
    assert lexicon_risk(text) == "violence"


# ---- context rules: negation, others, topics -------------------------------------------------
@pytest.mark.parametrize(("text", "rule"), [
    ("我从来没有想过自杀", "negation"),
    ("我不想死，我想好好活着", "negation"),
    ("我不会伤害自己", "negation"),
    ("我朋友想自杀，我该怎么开导他", "other_person"),
    ("哥哥在家服药自杀未遂", "other_person"),
    ("我妈妈自杀的事情一直压着我", "other_person"),
    ("跟爸爸吵架，爸爸让我去死", "others_wish_me_dead"),
    ("六岁时妈妈说要把我砍死", "others_wish_me_dead"),
    ("自杀的人心里真的想死吗", "generic_topic"),
    ("她自杀身亡的新闻让我难过", "generic_topic"),
    ("我应该给狗狗安乐死吗", "pet"),
    ("他喝醉了说想揍死我", "aimed_at_writer"),
    ("我在看一部杀人犯的电影", "violence_topic"),
])
def test_context_rules_suppress_with_their_name(text: str, rule: str) -> None:
    assert lexicon_risk(text) == "none", [(c.hit.entry, c.suppressed_by) for c in explain(text)]
    assert rule in {c.suppressed_by for c in explain(text)}


@pytest.mark.parametrize("text", ["有没有自杀的方法", "我是不是想死", "我会不会自杀", "要不要去死"])
def test_an_a_not_a_question_is_not_a_negation(text: str) -> None:
    # 有没有 / 是不是 / 会不会 contain 没有 / 不 but ask; asking about one's own death is risk.
    assert lexicon_risk(text) == "suicidal"


@pytest.mark.parametrize("text", [
    "我只是划手机到很晚",
    "他动手打了我",
    "这次考试我又想死你们了",   # "想死你们" = miss you (colloquial)
    "他死活不同意分手",
    "我们玩剧本杀到半夜",
    "每晚都要吃安眠药才能入睡",   # medication use, not a method
    "服药后并没有好转",
    "我要彻底了断这段感情",
    "我怕自己坚持不下去这个计划",
    "考试考砸了怎么办我怕死了",   # 怎么办 is not "how to"
    "一想到死亡，感觉很害怕",      # fear of death is not a wish to die (think_death's lookahead)
])
def test_everyday_phrases_are_not_flagged(text: str) -> None:
    assert lexicon_risk(text) == "none", [(c.hit.entry, c.suppressed_by) for c in explain(text)]


def test_a_clause_break_limits_negation() -> None:
    # The negation belongs to the first clause only.
    assert lexicon_risk("我不想上学。想死") == "suicidal"


# ---- the data file ---------------------------------------------------------------------------
def test_every_entry_is_general_classed_grouped_and_documented() -> None:
    raw = _raw()
    doc = LEXICON_MD.read_text("utf-8")
    assert raw["max_phrase_chars"] == 12
    groups = set()
    for e in raw["entries"]:
        assert e["class"] in RISK_SEVERITY and e["class"] != "none", e
        assert ("phrase" in e) != ("pattern" in e), e
        if "phrase" in e:
            assert len(e["phrase"]) <= 12, e
        else:
            re.compile(e["pattern"])
            assert not re.fullmatch(e["pattern"], ""), f"{e['id']} matches the empty string"
        groups.add(e["group"])
    for group in groups:
        assert f"### {group}" in doc, f"group {group!r} has no section in LEXICON.md"
    for rule in raw["rules"]:
        assert f"`{rule['name']}`" in doc, f"rule {rule['name']!r} is not documented in LEXICON.md"
    assert {e["class"] for e in raw["entries"]} == {"suicidal", "self_harm", "violence"}


@pytest.mark.parametrize(("entry", "needle"), [
    ({"id": "a", "class": "suicidal", "group": "g", "phrase": "这是一句超过十二个字符的很长的句子"},
     "max 12"),
    ({"id": "a", "class": "suicide", "group": "g", "phrase": "想死"}, "not a risk class"),
    ({"id": "a", "class": "suicidal", "group": "g", "pattern": "想(死"}, "not a valid regex"),
    ({"id": "a", "class": "suicidal", "group": "g"}, "exactly one of"),
    ({"id": "a", "class": "suicidal", "phrase": "想死"}, "group is missing"),
    ({"id": "a", "class": "suicidal", "group": "g", "phrase": "想死", "weight": 2}, "unknown keys"),
])
def test_malformed_entries_fail_naming_the_entry_and_the_fix(entry: dict, needle: str) -> None:
    with pytest.raises(LexiconError, match=re.escape(needle)) as info:
        parse_lexicon({"entries": [entry]}, "test.json")
    assert "test.json" in str(info.value) and ";" in str(info.value)


def test_duplicate_ids_and_bad_rules_are_refused() -> None:
    e = {"id": "a", "class": "suicidal", "group": "g", "phrase": "想死"}
    with pytest.raises(LexiconError, match="duplicated"):
        parse_lexicon({"entries": [e, dict(e)]})
    with pytest.raises(LexiconError, match="kind"):
        parse_lexicon({"entries": [e], "rules": [{"name": "r", "kind": "around", "pattern": "x"}]})
    with pytest.raises(LexiconError, match="1:1"):
        parse_lexicon({"entries": [e], "fold": {"殺": "杀掉"}})


def test_a_broken_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "entries": [\n  oops\n]}', "utf-8")
    with pytest.raises(LexiconError, match=r"bad\.json:3"):
        load_lexicon(path)


# ---- properties and speed --------------------------------------------------------------------
_ALPHABET = "我你他想要不没死活自杀残伤跳楼累了吗的，。"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40), st.text(alphabet=_ALPHABET, max_size=40))
def test_more_text_after_a_full_stop_never_lowers_the_risk(first: str, more: str) -> None:
    before = lexicon_risk(first)
    after = lexicon_risk(first + "。" + more)
    assert RISK_SEVERITY.index(after) <= RISK_SEVERITY.index(before), (first, more, before, after)
    hits = scan(first + "。" + more)
    assert all(0 <= h.span[0] < h.span[1] <= len(first) + 1 + len(more) for h in hits)
    assert after == most_severe({h.risk_flag for h in hits})


def test_scanning_is_fast_enough_for_every_turn() -> None:
    text = ("我最近压力很大，晚上睡不着，和室友关系也不好。" * 40)[:2000]  # a full trimmed transcript
    load_lexicon()
    t0 = time.perf_counter()
    for _ in range(50):
        lexicon_risk(text)
    per_call_ms = (time.perf_counter() - t0) * 1000 / 50
    assert per_call_ms < 40, f"{per_call_ms:.1f} ms per 2,000-character scan"
