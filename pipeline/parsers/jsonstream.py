"""Stream the items of a large JSON array (or a JSONL / concatenated-objects file) one at a time.

The full PsyQA release is one JSON array of tens of thousands of questions; `json.load` would
hold all of it. This reader keeps a buffer of about `CHUNK` characters and decodes one item at a
time with `json.JSONDecoder.raw_decode`, so memory stays flat however large the file is.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

CHUNK = 1 << 20
#: An error this far before the end of the buffer is a real syntax error, not an item cut by the
#: buffer edge (no single PsyQA string is anywhere near this long).
_MARGIN = 1 << 16
_WS = " \t\r\n"


class JsonStreamError(ValueError):
    """A syntax error inside the stream; `line`/`column` are 1-based positions in the file."""

    def __init__(self, msg: str, line: int, column: int, items_before: int) -> None:
        super().__init__(f"line {line} column {column}: {msg} (after {items_before} items)")
        self.line, self.column, self.items_before = line, column, items_before


def sniff_encoding(path: Path) -> str:
    """`utf-8-sig`, `utf-16` (BOM) or `gb18030`, judged on the first 64 KiB."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "gb18030"


def iter_json_items(fh: TextIO, chunk: int = CHUNK) -> Iterator[Any]:
    """Yield each item of a top-level JSON array, or each value of a JSONL/concatenated file.

    Raises `JsonStreamError` at the first syntax error (items before it have been yielded) and
    `UnicodeDecodeError` from the underlying file if its bytes stop decoding.
    """
    decoder = json.JSONDecoder()
    buf, pos, eof, lines_before, count = "", 0, False, 1, 0
    array: bool | None = None

    def fill() -> None:
        nonlocal buf, pos, eof, lines_before
        lines_before += buf.count("\n", 0, pos)
        more = fh.read(chunk)
        eof = not more
        buf, pos = buf[pos:] + more, 0

    def where(at: int) -> tuple[int, int]:
        line = lines_before + buf.count("\n", 0, at)
        start = buf.rfind("\n", 0, at) + 1
        return line, at - start + 1

    fill()
    while True:
        while True:  # skip whitespace (and commas between array items)
            while pos < len(buf) and (buf[pos] in _WS or (array and buf[pos] == "," and count)):
                pos += 1
            if pos < len(buf) or eof:
                break
            fill()
        if pos >= len(buf):
            if array:
                line, col = where(pos)
                raise JsonStreamError("the array is not closed with ']'", line, col, count)
            return
        if array is None:
            if buf[pos] == "\ufeff":
                pos += 1
                continue
            array = buf[pos] == "["
            if array:
                pos += 1
                continue
        if array and buf[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError as exc:
            if not eof and exc.pos > len(buf) - _MARGIN:
                fill()
                continue
            line, col = where(exc.pos)
            raise JsonStreamError(exc.msg, line, col, count) from None
        if end == len(buf) and not eof:  # a number may continue in the next chunk
            fill()
            continue
        pos = end
        count += 1
        yield item
        if array:
            while True:
                while pos < len(buf) and buf[pos] in _WS:
                    pos += 1
                if pos < len(buf) or eof:
                    break
                fill()
            if pos < len(buf) and buf[pos] not in ",]":
                line, col = where(pos)
                raise JsonStreamError(f"expected ',' or ']' after item {count}, got {buf[pos]!r}", line, col,
                                      count)
