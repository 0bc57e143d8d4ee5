"""Rebuild guards: make stops before an upstream change makes it redo something expensive.

Cheap stages (cleaning, the rules teacher, the tiny profile) rebuild whenever make says so. Two
artifacts are expensive: a paid teacher's labels (money, quota, days of batch jobs) and an
adapter trained on a real profile (GPU hours). Where a rebuild would redo one of them, the make
recipe calls a check here first; it explains what changed, what would be redone, what stays on
disk, and that `REBUILD=1` confirms. Nothing here deletes anything.

    python -m pipeline.guard [--rebuild] data --stamp S --paths P... --text T --describe D \
        --data-dir D --models-dir M
    python -m pipeline.guard [--rebuild] label --results-root R --teacher KEY
    python -m pipeline.guard [--rebuild] adapter --run-dir R --profile P --sft F --changed "$?"

Exit codes: 0 go on, 1 stopped (the message says how to confirm), 3 adapter already trained on
this exact SFT set (touched, nothing to redo).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pipeline.io import file_sha256, read_jsonl
from pipeline.labeling.journal import label_journals, read_rows
from pipeline.layout import Layout
from pipeline.stamp import read_stamp, update_stamp
from pipeline.teacher import TeacherDir, adopt_shared_layout, teacher_dirs

EXIT_GO, EXIT_STOP, EXIT_UP_TO_DATE = 0, 1, 3
#: Training profiles cheap enough to retrain without asking (minutes on a CPU).
CHEAP_PROFILES: frozenset[str] = frozenset({"tiny"})
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"
TRAIN_MANIFEST = "adapter/psyedge_train.json"
CONFIRM = "add REBUILD=1 to the same make command"


class Stop(Exception):
    """A rebuild that needs the user's confirmation; the message is what make prints."""


def _labeled_ids(teacher: TeacherDir) -> set[str]:
    """Ids this teacher folder holds a label for, in any journal (current, old input, retired)."""
    return {
        r["id"]
        for path in label_journals(teacher.path)
        for r in read_rows(path, repair=False)
        if "id" in r
    }


def _current_ids(data_dir: Path) -> set[str]:
    path = Layout(data_dir).unified_min
    return {r["id"] for r in read_jsonl(path) if "id" in r} if path.is_file() else set()


def _trained_runs(models_dir: Path, sft: Path) -> list[tuple[Path, str]]:
    """Run folders of an expensive profile whose adapter was trained on the current SFT set."""
    if not sft.is_file() or not models_dir.is_dir():
        return []
    sha = None
    runs = []
    for manifest in sorted(models_dir.glob(f"*/{TRAIN_MANIFEST}")):
        info = json.loads(manifest.read_text("utf-8"))
        if info.get("profile") in CHEAP_PROFILES:
            continue
        sha = sha or file_sha256(sft)
        if info.get("sft_sha256") == sha:
            runs.append((manifest.parents[1], str(info.get("profile"))))
    return runs


def check_data(
    old: str, new: str, data_dir: Path, models_dir: Path, rebuild: bool, pays_next: str = ""
) -> None:
    """The data inputs go from `old` to `new` (descriptions); stop if the current data has paid
    labels or a trained real-profile adapter downstream, or if this very call goes on to label
    the new data with the paid teacher `pays_next` (a data variable left off a command line)."""
    ids = _current_ids(data_dir)
    paid = [
        (t, len(_labeled_ids(t) & ids))
        for t in teacher_dirs(Layout(data_dir).results_root)
        if t.paid
    ]
    paid = [(t, n) for t, n in paid if n]
    runs = _trained_runs(models_dir, Layout(data_dir).sft)
    if not paid and not runs and not pays_next:
        return
    held = [
        f"  {t.path}: {n:,} labels of the current data by {t.provider}/{t.model}" for t, n in paid
    ]
    held += [
        f"  {run}/adapter: trained ({profile} profile) on the current SFT set"
        for run, profile in runs
    ]
    if pays_next:
        held.append(f"  this command then labels the new data with the paid teacher {pays_next} "
                    "(`make data` alone rebuilds the data without labeling)")
    if rebuild:
        print("REBUILD=1: rebuilding the data; kept on disk:\n" + "\n".join(held))
        return
    what = "the data inputs changed" if old != new else \
        "the input files changed (sizes or modification times; the same settings)"
    raise Stop(
        "\n".join(
            [
                f"{what}, and what the current data fed is expensive to redo:",
                f"  was: {old}",
                f"  now: {new}",
                *held,
                "Rebuilding replaces data/processed and the labeling shards; `make label` would "
                "then send every new record to the teacher and `make train` would retrain. The "
                "labels above stay on disk (and "
                "are reused for any conversation they cover).",
                f"To rebuild: {CONFIRM}. To keep the current data: set the inputs back "
                "(`make configure VAR=value`, or drop the VAR=value from the command line).",
            ]
        )
    )


def check_label(results_root: Path, teacher_key: str, rebuild: bool) -> None:
    """Before labeling: adopt this teacher's labels of the shared layout, then stop before a paid
    teacher relabels everything because the prompt or contract changed."""
    teachers = teacher_dirs(results_root)
    me = next((t for t in teachers if t.path.name == teacher_key), None)
    if me is None:
        return
    adopted = adopt_shared_layout(results_root, me)
    if adopted:
        print(f"{me.path}: adopted {adopted:,} labels of this teacher from {results_root}/*.jsonl")
    if not me.paid or _labeled_ids(me):
        return  # nothing paid, or this identity already has labels (a resume): go on
    older = [
        (t, len(_labeled_ids(t)))
        for t in teachers
        if t.path.name != teacher_key and (t.provider, t.model) == (me.provider, me.model)
    ]
    older = [(t, n) for t, n in older if n]
    if not older or rebuild:
        return
    held = [
        f"  {t.path}: {n:,} labels (prompt {t.prompt_version}, contract {t.contract_version})"
        for t, n in older
    ]
    raise Stop(
        "\n".join(
            [
                f"the teacher prompt or label contract changed (now prompt {me.prompt_version}, "
                f"contract {me.contract_version}); {me.provider}/{me.model} has labels only "
                "under the old one(s):",
                *held,
                f"Labeling now sends every sample to {me.provider} again, into {me.path}; "
                "the old labels stay.",
                f"To relabel: {CONFIRM}.",
            ]
        )
    )


def check_adapter(run_dir: Path, profile: str, sft: Path, changed: list[str], rebuild: bool) -> int:
    """EXIT_GO to train, EXIT_UP_TO_DATE when the adapter already saw this exact SFT set."""
    weights = run_dir / ADAPTER_WEIGHTS
    if not weights.is_file() or profile in CHEAP_PROFILES:
        return EXIT_GO
    manifest = run_dir / TRAIN_MANIFEST
    info = json.loads(manifest.read_text("utf-8")) if manifest.is_file() else {}
    if [str(sft)] == changed and info.get("sft_sha256") == file_sha256(sft):
        # Rewritten with the same content (a teacher switched and back): the training is current.
        os.utime(weights)
        print(
            f"{weights}: trained on this exact SFT set already (sha256 equal): nothing to retrain"
        )
        return EXIT_UP_TO_DATE
    if rebuild:
        print(f"REBUILD=1: retraining {run_dir} (profile {profile}); its adapter is replaced")
        return EXIT_GO
    raise Stop(
        "\n".join(
            [
                f"{run_dir} holds an adapter trained on the {profile} profile, and its inputs "
                "changed since:",
                *[f"  {path}" for path in changed],
                "make would retrain and replace it. To retrain: "
                + CONFIRM
                + ". To keep it and train the "
                "change as another run: RUN=<name> (models/<name>).",
            ]
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.guard", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--rebuild", action="store_true", help="REBUILD=1: the user confirmed the rebuild"
    )
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser(
        "data", help="rewrite the data-input stamp, unless that would stale paid work"
    )
    d.add_argument("--stamp", type=Path, required=True)
    d.add_argument("--paths", nargs="*", default=[])
    d.add_argument("--text", default="", help="fingerprinted with the paths (variables)")
    d.add_argument("--describe", default="", help="how the inputs read to a person (the message)")
    d.add_argument("--data-dir", type=Path, required=True)
    d.add_argument("--models-dir", type=Path, required=True)
    d.add_argument("--pays-next", default="", help="PROVIDER/MODEL when this call labels for pay")
    p = sub.add_parser("label", help="before labeling: the shared layout, a new prompt version")
    p.add_argument("--results-root", type=Path, required=True)
    p.add_argument("--teacher", required=True)
    a = sub.add_parser("adapter", help="before retraining a real-profile adapter")
    a.add_argument("--run-dir", type=Path, required=True)
    a.add_argument("--profile", required=True)
    a.add_argument("--sft", type=Path, required=True)
    a.add_argument("--changed", default="", help="the prerequisites make found newer ($?)")
    args = ap.parse_args(argv)
    try:
        if args.what == "data":
            old = read_stamp(args.stamp)
            if old is not None and update_stamp(
                args.stamp, args.paths, args.text, args.describe, dry_run=True
            ):
                check_data(
                    old[1] or "(not recorded)",
                    args.describe,
                    args.data_dir,
                    args.models_dir,
                    args.rebuild,
                    args.pays_next,
                )
            update_stamp(args.stamp, args.paths, args.text, args.describe)
            return EXIT_GO
        if args.what == "label":
            check_label(args.results_root, args.teacher, args.rebuild)
            return EXIT_GO
        return check_adapter(
            args.run_dir, args.profile, args.sft, args.changed.split(), args.rebuild
        )
    except Stop as exc:
        print(f"make: stopped, nothing was rebuilt: {exc}", file=sys.stderr)
        return EXIT_STOP


if __name__ == "__main__":
    raise SystemExit(main())
