"""The end of a run: merged files, the bill, and what the labels look like per lexicon class.

`merge` writes, in the teacher's results folder:
- `dataset.jsonl`: every labeled sample in input order (human corrections applied); a sample
  the teacher refused and a fallback teacher labeled carries `provenance: fallback:<teacher>`;
- `failed.jsonl`: samples without a label, with the reason (`blocked` ones included until a
  fallback or a reviewer labels them: a refused sample is never silently absent);
- `blocked.jsonl`: every sample the teacher refused, with block reason, finish reason and
  safety ratings (the review queue puts them first);
- `cost.json`, and the labeling report in `stats.json` (`report`).

Why a report per lexicon class: a teacher that refuses exactly the suicide and self-harm
dialogues leaves a set with no risk example while every other count looks healthy. The SDK
lexicon, which runs without any service, says which samples look risky, so the report shows for
each class how many the teacher labeled, refused or failed, and how it labeled them.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.cost import CostReport
from pipeline.io import atomic_write_json, write_jsonl
from pipeline.labeling.config import LabelConfig
from pipeline.labeling.journal import (
    BLOCKED_FILE,
    FALLBACK_FILE,
    LABEL_FIELDS_ROW,
    ShardFiles,
    current_rows,
    iter_shard_rows,
    open_failures,
)
from pipeline.labeling.records import RunKey, samples_by_id
from pipeline.review import apply_corrections, load_corrections
from psyedge.contract import RISK_SEVERITY
from psyedge.lexicon import conversation_risk

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
#: The counts of one lexicon class, in the order the summary prints them.
COUNTS = ("inputs", "labeled", "blocked", "failed", "fallback")


def read_stats(results_dir: Path) -> dict[str, Any]:
    """`stats.json` of a results folder ({} when there is none or it is unreadable: rebuilt)."""
    path = results_dir / STATS_FILE
    try:
        return json.loads(path.read_text("utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def update_stats(results_dir: Path, **parts: Any) -> None:
    """Set top-level keys of `stats.json`, keeping the others (shard counts of earlier runs)."""
    atomic_write_json(results_dir / STATS_FILE, {**read_stats(results_dir), **parts})


def label_report(classes: dict[str, str], teacher_rows: list[dict[str, Any]],
                 failures: list[dict[str, Any]], fallback_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and the teacher's own label distribution per lexicon class of the inputs.

    `classes` maps every input id to the class the lexicon gives it; `failures` are the open
    ones (`blocked` among them, fallback-labeled or not), `fallback_rows` the fallback's labels.
    """
    out: dict[str, dict[str, Any]] = {}
    for flag in RISK_SEVERITY:
        if flag in classes.values():
            out[flag] = {**dict.fromkeys(COUNTS, 0),
                         "teacher_labels": {f: {} for f in LABEL_FIELDS_ROW}}
    for cls in classes.values():
        out[cls]["inputs"] += 1
    for row in teacher_rows:
        entry = out[classes.get(row["id"], "none")]
        entry["labeled"] += 1
        for f in LABEL_FIELDS_ROW:
            dist = entry["teacher_labels"][f]
            dist[str(row[f])] = dist.get(str(row[f]), 0) + 1
    for row in failures:
        kind = "blocked" if row.get("reason") == "blocked" else "failed"
        out[classes.get(row["id"], "none")][kind] += 1
    for row in fallback_rows:
        out[classes.get(row["id"], "none")]["fallback"] += 1
    for entry in out.values():
        for dist in entry["teacher_labels"].values():
            dist_sorted = dict(sorted(dist.items()))
            dist.clear()
            dist.update(dist_sorted)
    return out


def missing_risk_classes(input_classes: Counter[str], labeled_flags: set[str]) -> list[str]:
    """Risk classes the lexicon finds in the inputs that no label carries (most severe first).

    Shared with the SFT stage: a set without a single example of a class the inputs contain
    trains a model that cannot produce that flag.
    """
    return [f for f in RISK_SEVERITY if f != "none" and input_classes[f] and f not in labeled_flags]


def format_report(report: dict[str, Any]) -> str:
    """The printed summary: one line of counts per class, then the teacher's labels per class."""
    lines = ["labeling report by lexicon class (the SDK lexicon on the students' turns):",
             "  " + f"{'class':<10}" + "".join(f"{c:>9}" for c in COUNTS)]
    for cls, entry in report.items():
        lines.append("  " + f"{cls:<10}" + "".join(f"{entry[c]:>9}" for c in COUNTS))
    for cls, entry in report.items():
        dists = "; ".join(f"{f} " + " ".join(f"{v}:{n}" for v, n in d.items())
                          for f, d in entry["teacher_labels"].items() if d)
        lines.append(f"  teacher's labels, {cls}: {dists or 'none'}")
    return "\n".join(lines)


def merge(shard_paths: list[Path], results_dir: Path, key: RunKey, cfg: LabelConfig,
          fallback: RunKey | None = None) -> dict[str, Any]:
    """Write the merged files and the report from the shards' journals; return the counts.

    `fallback` is the key of the fallback teacher of this invocation: its labels fill in the
    blocked samples; without it they stay in failed.jsonl (labels of an earlier fallback run
    are not used unless asked for again).
    """
    samples = samples_by_id(shard_paths)
    order = {sid: n for n, sid in enumerate(samples)}
    rows = list(iter_shard_rows(shard_paths, results_dir, key))
    fails = open_failures(shard_paths, results_dir, key)
    blocked = [f for f in fails if f.get("reason") == "blocked"]
    fb_done = current_rows(results_dir / FALLBACK_FILE, fallback) if fallback else {}
    fb_rows = [fb_done[b["id"]] for b in blocked if b["id"] in fb_done]
    fb_ids = {r["id"] for r in fb_rows}
    labeled = sorted([*rows, *fb_rows], key=lambda r: order.get(r["id"], len(order)))
    corrected = list(apply_corrections(labeled, load_corrections(results_dir)))
    n_rows = write_jsonl(results_dir / "dataset.jsonl", corrected)
    open_fails = [f for f in fails if f["id"] not in fb_ids]
    write_jsonl(results_dir / "failed.jsonl", open_fails)
    write_jsonl(results_dir / BLOCKED_FILE, blocked)
    present = sum(1 for p in shard_paths if ShardFiles.of(p, results_dir).results.exists())
    cost_report = CostReport.from_rows([*rows, *fails, *fb_rows], cfg)
    cost = cost_report.to_dict()
    cost["shards_merged"] = present
    atomic_write_json(results_dir / "cost.json", cost)
    print(cost_report.summary())
    log.info("%s", cost_report.summary())
    if present < len(shard_paths):
        log.warning("dataset.jsonl covers %d of %d shards (label the rest, e.g. the SLURM array)",
                    present, len(shard_paths))

    classes = {sid: conversation_risk(s.record.get("conversation")) for sid, s in samples.items()}
    report = label_report(classes, rows, fails, fb_rows)
    missing = missing_risk_classes(Counter(classes.values()), {r["risk_flag"] for r in corrected})
    update_stats(results_dir, report=report, missing_risk_classes=missing)
    print(format_report(report))
    for cls in missing:
        n_blocked = report[cls]["blocked"]
        print(f"warning: the lexicon finds {cls} in {report[cls]['inputs']} input(s) but no sample "
              f"is labeled {cls} ({n_blocked} refused by the teacher, see {BLOCKED_FILE}): label "
              "them with FALLBACK=rules, or review them (make review) and apply the corrections")
    by_reason = Counter(f.get("reason", "?") for f in open_fails if f.get("reason") != "blocked")
    return {"labeled": n_rows, "failed": sum(by_reason.values()),
            "blocked": len(blocked) - len(fb_ids), "fallback": len(fb_ids),
            "shards_merged": present, "shards": len(shard_paths),
            "failed_by_reason": dict(by_reason.most_common()), "missing_risk_classes": missing}


def failure_summary(summary: dict[str, Any], max_share: float) -> tuple[str, bool]:
    """One line of failures by reason, and whether their share is above `max_share`.

    Refused samples are counted apart and not in the share: running again cannot label them
    (the refusal is final), a fallback or a reviewer can, and `make sft` stops on a risk class
    left without labels.
    """
    total = summary["labeled"] + summary["failed"] + summary["blocked"]
    share = summary["failed"] / total if total else 0.0
    reasons = ", ".join(f"{r} {n}" for r, n in summary["failed_by_reason"].items()) or "none"
    line = (f"failed {summary['failed']} of {total} ({share:.1%}; "
            f"max_failed_share {max_share:.0%}), by reason: {reasons}")
    return line, share > max_share
