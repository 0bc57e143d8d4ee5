"""One parser per source; each streams `Record`s (parsed dialogues) and `Drop`s (inputs not kept).

`count_inputs` and `iter_source` give the cleaner one interface over the three formats, so adding
a source is one module plus one row here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.parsers import cpsycound, cpsycoune, psyqa
from pipeline.parsers.base import DROP_REASONS, SOURCES, Drop, Record

__all__ = ["DROP_REASONS", "SOURCES", "Drop", "Record", "count_inputs", "iter_source"]


def count_inputs(source: str, path: Path) -> int | None:
    """How many files a source folder holds (for the progress bar); None when unknown (PsyQA)."""
    if source == "cpsycound":
        return len(cpsycound.list_files(path))
    if source == "cpsycoune":
        return len(cpsycoune.list_files(path))
    return None


def iter_source(source: str, path: Path) -> Iterator[Record | Drop]:
    """Stream one source's records and drops in a deterministic order."""
    if source == "cpsycound":
        yield from cpsycound.iter_records(path)
    elif source == "cpsycoune":
        yield from cpsycoune.iter_records(path)
    elif source == "psyqa":
        yield from psyqa.iter_records(path)
    else:
        raise ValueError(f"unknown source {source!r}; expected one of {list(SOURCES)}")
