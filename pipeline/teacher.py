"""Teacher identity: which folder holds a teacher's labels, so teachers never overwrite each other.

A teacher is provider + model + prompt version + contract version (the journal's `RunKey`): labels
made under one identity are reusable exactly when all four match. Each identity gets its own
folder under `<data>/labeling/results/`, named by `folder_name`, e.g.

    gemini__gemini-2.5-flash__prompt-0123456789abcdef__contract-1.0

so running another teacher (or the offline rules) writes elsewhere and switching back finds every
label where it was. The Makefile asks this module for the folder of the configured teacher:

    python -m pipeline.teacher --provider gemini [--model M] --config pipeline/label_config.yaml \
        --mk data/.make/teacher-gemini-default.mk

writes `TEACHER_KEY := <folder name>` for make to include.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.io import atomic_write_text, write_jsonl
from pipeline.labeling.config import ConfigError, load_config, run_key
from pipeline.labeling.journal import label_journals, read_rows
from pipeline.labeling.records import RunKey

#: Providers whose labels cost nothing to remake (offline, deterministic): rebuilt freely.
FREE_PROVIDERS: frozenset[str] = frozenset({"rules"})
SEP = "__"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FOLDER = re.compile(
    r"^(?P<provider>[^_]+)__(?P<model>.+)__prompt-(?P<prompt>[0-9a-f]+)__contract-(?P<contract>.+)$"
)


def _safe(part: str) -> str:
    """A key part as a file-name piece: a model named `org/name` becomes `org_name`."""
    return _UNSAFE.sub("_", part).strip("_") or "_"


def folder_name(key: RunKey) -> str:
    """The results folder of a teacher identity (the same key always gives the same name)."""
    return SEP.join(
        (
            _safe(key.provider),
            _safe(key.model),
            f"prompt-{key.prompt_version}",
            f"contract-{_safe(key.contract_version)}",
        )
    )


def resolve(config: Path, provider: str, model: str | None, mode: str | None = None) -> RunKey:
    """The identity `make label PROVIDER=... MODEL=... LABEL_MODE=...` labels under (defaults:
    the config's)."""
    cfg = load_config(config, provider, model, {"label_mode": mode} if mode else None)
    return run_key(cfg)


@dataclass(frozen=True)
class TeacherDir:
    """A teacher folder found on disk, its identity read back from the name (model file-safe)."""

    path: Path
    provider: str
    model: str
    prompt_version: str
    contract_version: str

    @property
    def paid(self) -> bool:
        """Whether remaking these labels costs money or service quota (everything but rules)."""
        return self.provider not in FREE_PROVIDERS

    def owns(self, row: dict[str, str]) -> bool:
        """Whether a journal row was labeled under this identity (rows stamp all four parts)."""
        return (row.get("provider") == self.provider and _safe(str(row.get("model"))) == self.model
                and row.get("prompt_version") == self.prompt_version
                and _safe(str(row.get("contract_version"))) == self.contract_version)


def teacher_dirs(results_root: Path) -> list[TeacherDir]:
    """Every teacher folder under `results_root` (folders not named like one are not teachers)."""
    found = []
    for path in sorted(results_root.iterdir()) if results_root.is_dir() else []:
        m = _FOLDER.match(path.name)
        if path.is_dir() and m:
            found.append(TeacherDir(path, m["provider"], m["model"], m["prompt"], m["contract"]))
    return found


def adopt_shared_layout(results_root: Path, teacher: TeacherDir) -> int:
    """Copy this teacher's labels from the shared layout into its folder, once; return how many.

    Before teachers had folders, every journal lay directly in `results/`. Each row stamps its
    provider, model, prompt and contract version, so this identity's rows are found there and
    written into the teacher's folder as `<shard>.shared.retired.jsonl`, where the labeler's
    cache reuses them by prompt: nothing already paid for is sent again. The old files stay.
    """
    adopted = 0
    for path in label_journals(results_root):
        stem = path.name[: -len(".jsonl")].removesuffix(".retired")
        target = teacher.path / f"{stem}.shared.retired.jsonl"
        if target.exists():
            continue
        rows = [r for r in read_rows(path, repair=False) if teacher.owns(r)]
        if rows:
            write_jsonl(target, rows)
            adopted += len(rows)
    return adopted


def write_mk(out: Path, key: RunKey) -> None:
    """Write the make include for `key` (always: make reruns this only when an input is newer)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out,
        "# written by python -m pipeline.teacher: the teacher's results folder\n"
        f"TEACHER_KEY := {folder_name(key)}\n",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.teacher", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--provider", required=True)
    ap.add_argument("--model", default="")
    ap.add_argument("--mode", default="", help="label mode (labels | evidence; default: config)")
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument(
        "--mk", type=Path, help="write a make include here (else print the folder name)"
    )
    args = ap.parse_args(argv)
    try:
        key = resolve(args.config, args.provider, args.model or None, args.mode or None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.mk:
        write_mk(args.mk, key)
    else:
        print(folder_name(key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
