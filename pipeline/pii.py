"""PII scrubbing: every kind is one row of `PATTERNS`, replaced by its typed placeholder.

Counseling text is private; the placeholders keep the sentence readable for the labeler ("加我微信
[WECHAT]") while the value itself never reaches a shard, a teacher API or a model.

Rules, in the order they run (earlier rows win, so an e-mail's digits are never read as a QQ number):
- `[EMAIL]`: name@domain.tld.
- `[IDCARD]`: 18-character resident ID (17 digits + digit/X, optional space/hyphen after the 6-digit
  region and 8-digit birth date) whose ISO 7064 MOD 11-2 checksum is right. An 18-digit string with
  a wrong checksum is left alone on purpose: it is not an ID number (order numbers, tracking codes)
  and replacing it would hide real content. A mobile number cannot match inside it (digit bounds).
- `[PHONE]`: Chinese mobile numbers 1[3-9]x + 8 digits, with an optional +86 / 0086 / (+86) prefix
  and single spaces or hyphens anywhere between digits; landlines 0xx(x)-xxxxxxx(x) with optional
  parentheses and extension. Public crisis hotlines (`PUBLIC_NUMBERS`) are kept: a counselor
  pointing a student to 希望24热线 is content, not PII.
- `[QQ]`: 5-12 digits after a QQ cue (QQ, QQ号, 扣扣, 企鹅号) and an optional 是/为/：.
- `[WECHAT]`: a WeChat id (a letter, then 5-19 letters, digits, _ or -) after a WeChat cue (微信,
  微信号, vx, wx, v信, weixin, wechat). A WeChat "id" that is a phone number is already [PHONE].

`scrub` is idempotent: it repeats the table until nothing changes (a replacement can expose a
neighbour, e.g. an ID number glued to a phone number), and no placeholder contains a digit, '@' or a
letter right after a cue word. The pipeline's hypothesis test checks it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

_D = r"(?<![0-9])"  # not preceded by a digit
_ND = r"(?![0-9])"  # not followed by a digit


@dataclass(frozen=True)
class PiiPattern:
    """One PII kind: `group` is the part replaced (0 = the whole match), `valid` vets a candidate."""

    kind: str
    placeholder: str
    regex: re.Pattern[str]
    group: int = 0
    valid: Callable[[str], bool] | None = None


def id_checksum_ok(candidate: str) -> bool:
    """ISO 7064 MOD 11-2 check of an 18-character Chinese resident ID (separators ignored)."""
    digits = re.sub(r"[ -]", "", candidate).upper()
    if not re.fullmatch(r"\d{17}[\dX]", digits):
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(digits[:17], weights, strict=True))
    return "10X98765432"[total % 11] == digits[17]


#: Public hotlines that counselors cite; kept verbatim (compared with separators removed).
PUBLIC_NUMBERS: frozenset[str] = frozenset({
    "4001619995",    # 希望24热线 (national suicide-prevention hotline)
    "01082951332",   # 北京心理危机研究与干预中心
    "02164383562",   # 上海市心理热线
    "4008855512",    # 北京心理援助热线 (alternate)
})

PATTERNS: tuple[PiiPattern, ...] = (
    PiiPattern("email", "[EMAIL]",
               re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    PiiPattern("idcard", "[IDCARD]", re.compile(_D + r"\d{6}[ -]?\d{8}[ -]?\d{3}[\dXx]" + _ND),
               valid=id_checksum_ok),
    PiiPattern("mobile", "[PHONE]", re.compile(
        r"(?:(?:\+|00)86[ -]?|[(（]\+?86[)）][ -]?|" + _D + r")1[3-9](?:[ -]?\d){9}" + _ND)),
    PiiPattern("landline", "[PHONE]", re.compile(
        _D + r"(?:[(（]0\d{2,3}[)）][ -]?|0\d{2,3}[ -]?)[2-9]\d{6,7}(?:[ -]?(?:转|ext\.?|-)\s?\d{1,5})?"
        + _ND)),
    PiiPattern("qq", "[QQ]", re.compile(
        r"(?:QQ|qq|Qq|扣扣|企鹅)(?:号码|号)?\s*(?:是|为|:|：)?\s*(" + _D + r"[1-9]\d{4,11}" + _ND + r")"),
               group=1),
    PiiPattern("wechat", "[WECHAT]", re.compile(
        r"(?:微信|weixin|WeChat|wechat|Wechat|VX|vx|Vx|WX|wx|v信|V信|薇信|威信)(?:号码|号|id|ID)?\s*(?:是|为|:|：)?\s*"
        r"([A-Za-z][-_A-Za-z0-9]{5,19})(?![-_A-Za-z0-9])"), group=1),
)


def _replace(pattern: PiiPattern, text: str, counts: Counter[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = m.group(pattern.group)
        if pattern.valid is not None and not pattern.valid(value):
            return m.group(0)
        if pattern.placeholder == "[PHONE]" and re.sub(r"\D", "", value) in PUBLIC_NUMBERS:
            return m.group(0)
        counts[pattern.kind] += 1
        if pattern.group == 0:
            return pattern.placeholder
        start, end = m.start(pattern.group) - m.start(0), m.end(pattern.group) - m.start(0)
        whole = m.group(0)
        return whole[:start] + pattern.placeholder + whole[end:]

    return pattern.regex.sub(sub, text)


#: Every pattern needs a digit, an '@' or a WeChat cue word; text without one is left as it is.
_MAYBE_PII = re.compile(r"[0-9@]|微信|weixin|wechat|vx|wx|v信|薇信|威信", re.IGNORECASE)

#: Passes until nothing changes. A replacement can expose a neighbour: in "<ID>13812345678" the ID's
#: digit bound fails until the phone becomes [PHONE]. Each pass only shrinks digit runs, so two or
#: three passes reach the fixed point; the cap is a guard, not a tuning knob.
_MAX_PASSES = 5


def scrub(text: str, counts: Counter[str] | None = None) -> str:
    """Replace every PII match in `text` by its placeholder (repeated to a fixed point, so the
    result is idempotent); add per-kind counts to `counts`."""
    counts = Counter() if counts is None else counts
    if not _MAYBE_PII.search(text):  # most turns: no digit, no '@', no WeChat cue; skip the table
        return text
    for _ in range(_MAX_PASSES):
        before = text
        for pattern in PATTERNS:
            text = _replace(pattern, text, counts)
        if text == before:
            break
    return text
