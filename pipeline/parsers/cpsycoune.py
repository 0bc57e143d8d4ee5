"""CPsyCounE: `<topic folder>/<n>.json`, each a JSON array of `求助者：...` / `支持者：...` strings.

The folder name is the topic (`Family Relationship`, `Emotion&Stress`); the id is
`cpsycoune-<topic slug>-<file stem>` (`cpsycoune-Family_Relationship-1`). A string without a known
prefix continues the previous turn (joined by a newline); before any prefixed string it goes to
`meta.preamble`. Anything that is not an array of strings is `bad_schema`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.parsers.base import Drop, Record, natural_key, read_source_file, slug
from psyedge.prompt import normalise_text

SOURCE = "cpsycoune"

#: Speaker prefix -> role. 求助者/支持者 are CPsyCounE's words; the CPsyCounD words are accepted too.
ROLE_PREFIXES: dict[str, str] = {"求助者": "user", "来访者": "user", "支持者": "assistant",
                                 "心理咨询师": "assistant", "咨询师": "assistant"}
_PREFIX = re.compile(r"^(" + "|".join(sorted(ROLE_PREFIXES, key=len, reverse=True)) + r")[ \t]*[：:][ \t]*")


def parse_items(items: object, record_id: str, topic: str, path: str) -> Record | Drop:
    """Turn the decoded JSON value of one file into a `Record` (turns not yet cleaned) or a `Drop`."""
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        got = type(items).__name__ if not isinstance(items, list) else "a list with non-string items"
        return Drop(SOURCE, path, "bad_schema", f"expected a JSON array of strings, got {got}", id=record_id)
    turns: list[list[str]] = []
    preamble: list[str] = []
    for raw in items:
        text = normalise_text(raw)
        m = _PREFIX.match(text)
        if m:
            turns.append([ROLE_PREFIXES[m.group(1)], text[m.end():]])
        elif not text:
            continue
        elif turns:
            turns[-1][1] = f"{turns[-1][1]}\n{text}"
        else:
            preamble.append(text)
    if not turns:
        return Drop(SOURCE, path, "no_turns", "no string starts with 求助者：/支持者：", id=record_id)
    meta: dict[str, object] = {"file": f"{topic}/{Path(path).name}"}
    if preamble:
        meta["preamble"] = "\n".join(preamble)
    return Record(record_id, SOURCE, topic, [(r, t) for r, t in turns], path, meta)


def parse_file(path: Path, topic: str) -> Record | Drop:
    """Read one dialogue file; problems come back as a `Drop`, never as an exception."""
    record_id = f"{SOURCE}-{slug(topic)}-{path.stem}"
    read = read_source_file(path, SOURCE, record_id)
    if isinstance(read, Drop):
        return read
    try:
        items = json.loads(read[0])
    except json.JSONDecodeError as exc:
        return Drop(SOURCE, str(path), "bad_json", f"line {exc.lineno} column {exc.colno}: {exc.msg}",
                    id=record_id)
    return parse_items(items, record_id, topic, str(path))


def list_files(root: Path) -> list[tuple[Path, str]]:
    """(file, topic) for every `<topic>/*.json` under `root`, topics and files in natural order."""
    out: list[tuple[Path, str]] = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=natural_key):
        out.extend((f, folder.name) for f in sorted(folder.glob("*.json"), key=natural_key) if f.is_file())
    return out


def iter_records(root: Path, files: list[tuple[Path, str]] | None = None) -> Iterator[Record | Drop]:
    """Stream every dialogue file under `root` as a `Record` or a `Drop`."""
    for path, topic in list_files(root) if files is None else files:
        yield parse_file(path, topic)
