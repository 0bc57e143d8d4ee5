"""What every parser yields: a `Record` (a parsed dialogue) or a `Drop` (an input not kept, and why).

Parsers only read their format: they strip speaker prefixes and map speakers to roles. Cleaning
(whitespace, PII, junk replies, merging) happens once, in `pipeline.clean`, for every source, so a
rule is never implemented twice. Drop reasons are one table (`DROP_REASONS`): the drop ledger,
`stats.json` and the tests all use these names.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The sources, in the order the cleaner reads them (this order is the order of unified.jsonl).
SOURCES: tuple[str, ...] = ("cpsycound", "cpsycoune", "psyqa")

#: Why an input (a file, or a PsyQA question) was not kept. Stage-1 reasons only; the student
#: filter's reasons live in `pipeline.student.REASONS`.
DROP_REASONS: dict[str, str] = {
    "empty_file": "the file has no content (0 bytes or only whitespace)",
    "undecodable": "the bytes are neither UTF-8 (with or without BOM), UTF-16 with BOM nor GB18030",
    "bad_json": "the file is not valid JSON (the detail names line and column)",
    "bad_schema": "valid JSON, but not the shape this source has (the detail says what was expected)",
    "no_turns": "no speaker-prefixed utterance was found",
    "one_speaker": "after cleaning, only one side (user or assistant) has any text",
    "no_question": "a PsyQA record whose question and description are both empty",
    "no_usable_answer": "every answer of a PsyQA question is empty, junk or noise",
    "duplicate": "a record whose id was already written (ids must be unique)",
}

#: Replies with no counseling content: acknowledgements and forum noise. Compared after removing
#: punctuation and spaces, lower-cased. "嗯。", "好的" are the issue's examples.
FILLER_REPLIES: frozenset[str] = frozenset({
    "嗯", "嗯嗯", "嗯嗯嗯", "恩", "恩恩", "好", "好的", "好的好的", "好吧", "哦", "噢", "喔", "啊", "呃",
    "额",
    "是", "是的", "对", "对的", "对对", "明白", "明白了", "了解", "收到", "ok", "okay", "嗯好的", "嗯是的",
    "同问", "顶", "沙发", "路过", "mark", "1", "谢谢", "谢谢你", "加油",
})
_NOT_WORD = re.compile(r"[\W_]+")


def is_filler(text: str) -> bool:
    """True when `text` says nothing beyond an acknowledgement ("嗯。", "好的！", "OK")."""
    return _NOT_WORD.sub("", text).lower() in FILLER_REPLIES


@dataclass
class Record:
    """One parsed dialogue before cleaning. `turns` are (role, text) with role user|assistant."""

    id: str
    source: str
    topic: str | None
    turns: list[tuple[str, str]]
    path: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Drop:
    """An input that is not kept: `path` names the file (and `index` the record inside it)."""

    source: str
    path: str
    reason: str
    detail: str = ""
    id: str | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        assert self.reason in DROP_REASONS, (f"unknown drop reason {self.reason!r}; "
                                             f"expected one of {list(DROP_REASONS)}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "path": self.path, "reason": self.reason}
        if self.id is not None:
            out["id"] = self.id
        if self.index is not None:
            out["index"] = self.index
        if self.detail:
            out["detail"] = self.detail
        return out


class UndecodableError(ValueError):
    """Bytes that no supported encoding reads; the message names the first bad byte offset."""


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode a text file: UTF-8 (a BOM is dropped), UTF-16 with a BOM, else GB18030.

    Returns (text, encoding). Some CPsyCoun mirrors re-save files as GB18030 (Windows Chinese
    locale); UTF-8 is tried first because GB18030 accepts many UTF-8 byte strings as garbage.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise UndecodableError(f"UTF-16 BOM but bad bytes at offset {exc.start}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as utf8_exc:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            raise UndecodableError(
                f"not UTF-8 (bad byte 0x{data[utf8_exc.start]:02x} at offset {utf8_exc.start}) and not "
                "GB18030"
            ) from None


_NATURAL = re.compile(r"(\d+)")


def read_source_file(path: Path, source: str, record_id: str) -> tuple[str, str] | Drop:
    """Read and decode one input file: `(text, encoding)`, or the `Drop` that says why not.

    Shared by the per-file parsers so an unreadable, empty or undecodable file is reported the
    same way whatever its format.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Drop(source, str(path), "undecodable", f"cannot read: {exc.strerror}", id=record_id)
    if not data.strip():
        return Drop(source, str(path), "empty_file", f"{len(data)} bytes", id=record_id)
    try:
        return decode_bytes(data)
    except UndecodableError as exc:
        return Drop(source, str(path), "undecodable", str(exc), id=record_id)


def natural_key(path: Path) -> tuple[Any, ...]:
    """Sort key that puts case_2 before case_10, so the output order is the one a person expects."""
    return tuple(int(part) if part.isdigit() else part for part in _NATURAL.split(path.name))


def slug(text: str) -> str:
    """An id-safe form of a folder name: `Family Relationship` -> `Family_Relationship`."""
    return re.sub(r"[^0-9A-Za-z\u4e00-\u9fff]+", "_", text).strip("_") or "_"
