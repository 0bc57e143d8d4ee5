"""The result journal: per-shard append-only files that make labeling resumable after `kill -9`.

Why append + fsync per line instead of one atomic write at the end: a run over thousands of paid
requests must keep every answer it already paid for. Each result is one `write()` of one whole
line followed by `fsync`, so a killed run loses at most the requests in flight. A kill during
the write itself can leave a partial last line: `read_rows` cuts such a torn tail off (and says
so) before anything else reads or appends. When a shard completes, `finalize` rewrites both
files atomically in input order, keeping only rows of the current run key.

Resume key (`RunKey`): model + prompt version + contract (schema) version. Rows with another key
are not "done": a new model or prompt relabels them. Labeled rows that `finalize` takes out of a
shard (another key, or an id the rebuilt input no longer has) move to `<shard>.retired.jsonl`:
a paid label is never deleted, and the labeler's cache reuses it when its prompt comes back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.io import dumps_line, write_jsonl
from pipeline.labeling.records import RunKey, UsageError
from pipeline.layout import SHARD_GLOB, SHARD_NAME, SHARD_RE

log = logging.getLogger(__name__)

LABEL_FIELDS_ROW = ("depression_level", "anxiety_level", "risk_flag", "student_distress_score")
#: Merged files of a results folder besides dataset.jsonl: every refusal of the teacher, and the
#: fallback teacher's journal.
BLOCKED_FILE = "blocked.jsonl"
FALLBACK_FILE = "fallback.jsonl"


@dataclass(frozen=True)
class ShardFiles:
    """Where one input shard's results go (all under `labeling/results/`)."""

    name: str        # input_part_0007
    input: Path
    results: Path    # labeled rows
    failed: Path     # rows that could not be labeled, with the reason
    batch: Path      # gemini-batch job state
    retired: Path    # labeled rows finalize took out of `results` (kept, reused by prompt)

    @classmethod
    def of(cls, input_path: Path, results_dir: Path) -> ShardFiles:
        name = input_path.name[: -len(".jsonl")]
        return cls(name, input_path, results_dir / f"{name}.jsonl", results_dir / f"{name}.failed.jsonl",
                   results_dir / f"{name}.batch.json", results_dir / f"{name}.retired.jsonl")


def label_journals(results_dir: Path) -> list[Path]:
    """Every file of labeled rows in `results_dir`: shard results of any input, and retired rows."""
    return sorted(p for p in results_dir.glob(SHARD_GLOB)
                  if SHARD_RE.match(p.name) or p.name.endswith(".retired.jsonl"))


def find_shards(labeling_dir: Path, shard: str | None) -> list[Path]:
    """The input shards, sorted; `shard` ("7" or "0007") picks one."""
    if not labeling_dir.is_dir():
        raise UsageError(f"{labeling_dir} does not exist: run `make data` first (it writes the labeling "
                         "shards)")
    shards = sorted(p for p in labeling_dir.iterdir() if SHARD_RE.match(p.name))
    if not shards:
        raise UsageError(f"no input_part_NNNN.jsonl in {labeling_dir}: run `make data` first")
    if shard is not None:
        if not shard.isdigit():
            raise UsageError(f"--shard must be a number like 0007, got {shard!r}")
        want = SHARD_NAME.format(int(shard))
        shards = [p for p in shards if p.name == want]
        if not shards:
            raise UsageError(f"--shard {shard}: {labeling_dir / want} does not exist")
    return shards


def read_rows(path: Path, repair: bool = True) -> list[dict[str, Any]]:
    """Every row of a journal; a torn last line (a kill mid-write) is cut off when `repair`."""
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good_end = 0
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        try:
            if nl < 0:
                raise ValueError("no newline at end")
            if line.strip():
                rows.append(json.loads(line))
        except ValueError:
            if end < len(data):  # a bad line in the middle is not a torn tail: someone edited the file
                lineno = data[:pos].count(b"\n") + 1
                raise ValueError(f"{path}: line {lineno} is not valid JSON; "
                                 "fix or delete that line (results are append-only)") from None
            break
        good_end = end
        pos = end
    if good_end < len(data):
        log.warning("%s: cut a torn last line (%d bytes) left by an interrupted run", path,
                    len(data) - good_end)
        if repair:
            with open(path, "r+b") as fh:
                fh.truncate(good_end)
    return rows


class Journal:
    """Append-only JSONL writer: one whole line per `write`, flushed and fsynced."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open across writes

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(dumps_line(row))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def current_rows(path: Path, key: RunKey) -> dict[str, dict[str, Any]]:
    """id -> latest row with `key` (later lines win)."""
    return {r["id"]: r for r in read_rows(path) if key.matches(r) and "id" in r}


def finalize(files: ShardFiles, input_ids: list[str], key: RunKey) -> dict[str, int]:
    """Rewrite the shard's results and failures atomically in input order; return the counts.

    Labeled wins over failed (a later run may have labeled an id that failed before). Labeled
    rows of other keys and of ids no longer in the input move to the retired file; such failures
    are dropped (they hold no label). Checks labeled + failed = input.
    """
    order = {i: n for n, i in enumerate(input_ids)}
    rows = read_rows(files.results)
    keep = [r for r in rows if key.matches(r) and r.get("id") in order]
    retire = [r for r in rows if not (key.matches(r) and r.get("id") in order)]
    labeled = {r["id"]: r for r in keep}
    failed = {i: r for i, r in current_rows(files.failed, key).items() if i not in labeled}
    lab = sorted(labeled.values(), key=lambda r: order[r["id"]])
    fail = sorted((r for i, r in failed.items() if i in order), key=lambda r: order[r["id"]])
    if retire:
        retired = Journal(files.retired)  # appended before the rewrite: a kill between keeps both
        for r in retire:
            retired.write(r)
        retired.close()
        log.info("%s: %d labeled row(s) of other ids or keys kept in %s", files.name,
                 len(retire), files.retired)
    write_jsonl(files.results, lab)
    write_jsonl(files.failed, fail)
    missing = len(order) - len(lab) - len(fail)
    if missing:
        raise RuntimeError(f"{files.input}: {len(order)} input ids but {len(lab)} labeled + {len(fail)} "
                           f"failed; {missing} unaccounted (a bug: re-run to label them, then report it)")
    return {"input": len(order), "labeled": len(lab), "failed": len(fail)}


def iter_shard_rows(shard_paths: list[Path], results_dir: Path, key: RunKey,
                    failed: bool = False) -> Iterator[dict[str, Any]]:
    """The current rows of `key` over shards, in shard order: labeled, or failed ones."""
    for path in shard_paths:
        files = ShardFiles.of(path, results_dir)
        yield from current_rows(files.failed if failed else files.results, key).values()


def open_failures(shard_paths: list[Path], results_dir: Path, key: RunKey) -> list[dict[str, Any]]:
    """Failed rows of `key` whose id no shard has labeled since (a later run may have)."""
    labeled = {r["id"] for r in iter_shard_rows(shard_paths, results_dir, key)}
    return [f for f in iter_shard_rows(shard_paths, results_dir, key, failed=True)
            if f["id"] not in labeled]
