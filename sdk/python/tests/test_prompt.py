"""The prompt contract: conversation checks, normalisation, trim policy, templates, golden prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from psyedge.errors import InputError
from psyedge.prompt import (
    INSTRUCTION,
    MAX_CHARS,
    MAX_TURNS,
    TEMPLATES,
    Turn,
    check_conversation,
    get_template,
    instruction_and_transcript,
    normalise_text,
    prompt_hash,
    render,
    render_training_text,
    transcript,
    trim,
)

GOLDEN = Path(__file__).parent / "golden"
CONV = [
    {"role": "user", "text": "老师，我下周期末考试，\u3000最近总是睡不着。\u200b"},
    {"role": "assistant", "text": "听起来你压力很大，能说说是什么让你最担心吗？"},
    {"role": "user", "text": "我怕挂科，\r\n\r\n\r\n爸妈会失望。"},
]


def test_render_matches_the_golden_prompt_for_every_template() -> None:
    for name in TEMPLATES:
        golden = (GOLDEN / f"prompt_{name}.txt").read_text("utf-8")
        assert render(CONV, name) == golden, name


def test_render_is_instruction_plus_transcript_inside_the_template() -> None:
    tpl = get_template("deepseek-r1")
    text = render(CONV, tpl)
    assert text.startswith(tpl.prefix + INSTRUCTION)
    assert text.endswith("来访者：我怕挂科，\n爸妈会失望。\n" + tpl.suffix)
    assert "<think>\n\n</think>\n\n" in text
    assert instruction_and_transcript(CONV) == text[len(tpl.prefix):-len(tpl.suffix)]


def test_training_text_split_equals_the_inference_prompt() -> None:
    turns, _ = trim(check_conversation(CONV))
    prompt, completion = render_training_text(INSTRUCTION, transcript(turns), '{"x":1}', "deepseek-r1")
    assert prompt == render(CONV, "deepseek-r1")
    assert completion == '{"x":1}<｜end▁of▁sentence｜>'


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_jinja_template_renders_the_same_prompt(name: str) -> None:
    jinja2 = pytest.importorskip("jinja2")
    tpl = TEMPLATES[name]
    content = instruction_and_transcript(CONV)
    out = jinja2.Template(tpl.jinja).render(messages=[{"role": "user", "content": content}],
                                            add_generation_prompt=True, bos_token="")
    assert out == render(CONV, name)


@pytest.mark.parametrize(
    ("conv", "exc", "needle"),
    [
        ("你好", TypeError, "list"),
        ([{"role": "system", "text": "x"}], InputError, "role"),
        ([{"role": "user", "text": 3}], TypeError, "string"),
        ([{"role": "user", "text": "   "}], InputError, "empty"),
        ([{"role": "assistant", "text": "你好"}], InputError, "no user turn"),
        ([{"role": "user", "text": "\u200b\u200b"}], InputError, "no user turn"),
        (["hi"], TypeError, "dict"),
    ],
)
def test_bad_conversations_get_clear_errors(conv: object, exc: type, needle: str) -> None:
    with pytest.raises(exc, match=needle):
        check_conversation(conv)


def test_trim_keeps_the_tail_within_both_limits() -> None:
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"第{i}轮" + "字" * 100) for i in range(30)]
    kept, cut = trim(turns)
    assert cut and len(kept) == MAX_TURNS and kept[-1] == turns[-1]
    long = [Turn("user", "甲" * 900), Turn("assistant", "乙" * 900), Turn("user", "丙" * 900)]
    kept, cut = trim(long)
    assert cut and [t.text[0] for t in kept] == ["乙", "丙"]
    assert sum(len(t.text) for t in kept) <= MAX_CHARS


def test_trim_cuts_an_oversized_last_turn_to_its_end() -> None:
    kept, cut = trim([Turn("user", "开头" + "中" * 50_000 + "结尾")])
    assert cut and len(kept[0].text) == MAX_CHARS and kept[0].text.endswith("结尾")
    short = [Turn("user", "你好")]
    assert trim(short) == (short, False)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert "\u200b" not in once and "\r" not in once


def test_prompt_hash_is_stable_and_short() -> None:
    assert prompt_hash() == prompt_hash() and len(prompt_hash()) == 16
