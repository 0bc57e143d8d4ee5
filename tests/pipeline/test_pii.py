"""PII scrubbing: every kind replaced by its placeholder, look-alikes left alone, idempotent."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clean import clean_text
from pipeline.pii import id_checksum_ok, scrub


@pytest.mark.parametrize(("text", "expected", "kind"), [
    ("电话13812345678。", "电话[PHONE]。", "mobile"),
    ("打+86 138-1234-5678找我", "打[PHONE]找我", "mobile"),
    ("+8613812345678", "[PHONE]", "mobile"),
    ("0086 139 1234 5678", "[PHONE]", "mobile"),
    ("(+86)139-1234-5678", "[PHONE]", "mobile"),
    ("座机010-62345678转123", "座机[PHONE]", "landline"),
    ("（021）55667788", "[PHONE]", "landline"),
    ("0755 8765 4321".replace(" 8765 ", "-8765"), "[PHONE]", "landline"),
    ("邮箱 li.ming2005@example.edu.cn 联系", "邮箱 [EMAIL] 联系", "email"),
    ("QQ号：2876543210", "QQ号：[QQ]", "qq"),
    ("加我qq 345678", "加我qq [QQ]", "qq"),
    ("扣扣是12345678", "扣扣是[QQ]", "qq"),
    ("我的微信号是 lm_study2024", "我的微信号是 [WECHAT]", "wechat"),
    ("vx: wxid_abcdef", "vx: [WECHAT]", "wechat"),
    ("身份证11010519491231002X", "身份证[IDCARD]", "idcard"),
    ("身份证 110105 19491231 002X", "身份证 [IDCARD]", "idcard"),
])
def test_each_kind_is_replaced(text: str, expected: str, kind: str) -> None:
    counts: Counter[str] = Counter()
    assert scrub(text, counts) == expected
    assert counts[kind] == 1


@pytest.mark.parametrize("text", [
    "身份证110105194912310021",      # 18 digits, wrong checksum: not an ID (documented in pii.py)
    "订单号913812345678",            # 12 digits: a mobile cannot start inside a longer number
    "希望24热线400-161-9995",         # public hotline, kept on purpose
    "北京心理危机干预中心010-82951332",  # public hotline, kept on purpose
    "我们用微信聊天，QQ也常用",         # cue words without an id
    "考了650分，排名第12345名",        # numbers without a cue
])
def test_look_alikes_are_kept(text: str) -> None:
    assert scrub(text) == text


def test_id_checksum() -> None:
    assert id_checksum_ok("11010519491231002X")
    assert id_checksum_ok("11010519491231002x")
    assert not id_checksum_ok("110105194912310021")
    assert not id_checksum_ok("1101051949123100")


def test_email_digits_are_not_read_as_qq() -> None:
    assert scrub("QQ邮箱12345678@qq.com") == "QQ邮箱[EMAIL]"


_PIECES = st.sampled_from([
    "13812345678", "+86 ", "-", " ", "\u3000", "\u200b", "\n\n", "QQ", "QQ号：", "微信", "微信号是", "vx:",
    "@", "example.com", "a.b", "11010519491231002X", "010-", "62345678", "0", "1", "9", "X", "(", "）",
    "[PHONE]", "[QQ]", "学生", "考试", "焦虑", "。", "，", "\r\n", "abc_123", "\ufeff", "\t",
])


@settings(max_examples=300, deadline=None, database=None)  # no .hypothesis/ folder in the tree
@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=24).map("".join))
def test_cleaning_is_idempotent(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once
