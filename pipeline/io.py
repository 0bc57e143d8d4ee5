"""Atomic file writing and JSONL helpers shared by every stage.

Every stage writes through these so an interrupted run never leaves a half-written file under
its final name: data goes to a temporary file in the same folder, is fsynced, then renamed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from psyedge.atomic import atomic_open

__all__ = ["atomic_open", "atomic_write_json", "atomic_write_text", "dumps_line", "read_jsonl", "write_jsonl"]


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def dumps_line(obj: Any) -> str:
    """One JSONL line (UTF-8 kept readable, compact separators)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Atomically write rows as JSONL; return the count."""
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(dumps_line(row))
            n += 1
    return n


class JsonlError(ValueError):
    """A JSONL line that does not parse, with file and line number."""


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream JSONL records; a bad line raises `JsonlError` naming file and line."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
