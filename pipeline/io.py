"""Atomic file writing and JSONL helpers shared by every stage.

Every stage writes through these so an interrupted run never leaves a half-written file under
its final name: data goes to a temporary file in the same folder, is fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from psyedge.atomic import atomic_open

__all__ = ["atomic_dir", "atomic_open", "atomic_write_json", "atomic_write_text", "dumps_line", "file_sha256",
           "read_jsonl", "write_jsonl"]


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model weights do not fit a single read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Assemble a folder beside `out` and swap it into place only on success.

    Model folders (the tiny base, a merged model) are many files written by other libraries, so
    they are built in a temporary sibling; an interrupted run leaves the old folder (or none)
    under the final name, never a half-written one.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a model folder is shared read-only
    try:
        yield tmp
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
