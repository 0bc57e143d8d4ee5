"""Human review of teacher labels: `make review` writes the queue, `make apply-review` merges corrections.

    python -m pipeline.review queue --data-dir DIR [--fraction 0.03] [--seed 0]
    python -m pipeline.review apply --data-dir DIR --reviewed FILE

The queue (`DIR/labeling/review/`) holds first every sample the teacher refused (`blocked.jsonl`:
it refuses exactly the suicide and self-harm dialogues, so a human must see them whether or not a
fallback labeled them), then every sample with `risk_flag != none` (a missed or a
false suicide flag is the costliest error), every sample the teacher had to be re-asked about
(its first answer was invalid: a sign of a hard case) and a random `fraction` of the rest (to
estimate the teacher's error rate on ordinary samples; chosen by a hash of id and seed, so the
same dataset gives the same sample). It is written twice: `queue.jsonl` for scripts, and
`label_studio_tasks.json` + `label_studio_config.xml` for a Label Studio project, with the
teacher's labels as predictions (score = 1 / (1 + re-asks), a confidence proxy).

`apply` reads a reviewed JSONL (`{id, depression_level, anxiety_level, risk_flag,
student_distress_score, reviewer?, note?}` per line) or a Label Studio JSON export, validates
every correction against the SDK schema, appends them with provenance to
`results/reviewed.jsonl` and rewrites `dataset.jsonl`. Precedence: a human correction beats the
teacher, a later correction beats an earlier one; the teacher's labels stay in the row
(`teacher_labels`) and `label_source`/`reviewed_by`/`reviewed_from` say where a label came from.
`pipeline.label` applies the same corrections whenever it re-merges, so relabeling never
silently drops a human's work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.io import read_jsonl, write_jsonl
from pipeline.labeling.journal import BLOCKED_FILE
from pipeline.layout import Layout
from psyedge.contract import FIELDS, LABEL_SCHEMA, allowed_values, validate
from psyedge.errors import LabelError
from psyedge.prompt import ROLE_NAMES

REVIEWED_FILE = "reviewed.jsonl"


class ReviewError(ValueError):
    """A reviewed file that cannot be applied: names the file, the line or task, and the fix."""


# ---- corrections (also used by pipeline.label's merge) -------------------------------------------

def load_corrections(results_dir: Path) -> dict[str, dict[str, Any]]:
    """id -> the latest human correction stored in `results/reviewed.jsonl` (empty if none)."""
    path = results_dir / REVIEWED_FILE
    if not path.exists():
        return {}
    return {row["id"]: row for row in read_jsonl(path)}


def apply_corrections(rows: Iterable[dict[str, Any]],
                      corrections: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows with human labels taking precedence; idempotent (re-applying gives the same rows)."""
    for row in rows:
        row = dict(row)
        teacher = row.pop("teacher_labels", None) or {k: row[k] for k in FIELDS}
        for k in ("label_source", "reviewed_by", "reviewed_at", "reviewed_from", "review_note"):
            row.pop(k, None)
        fix = corrections.get(row["id"])
        if fix is None:
            row.update(teacher)
            row["label_source"] = row.get("provenance", "teacher")  # or fallback:<teacher>
        else:
            row.update({k: fix[k] for k in FIELDS})
            row.update({"teacher_labels": teacher, "label_source": "human",
                        "reviewed_by": fix.get("reviewer"),
                        "reviewed_at": fix.get("reviewed_at"), "reviewed_from": fix.get("reviewed_from")})
            if fix.get("note"):
                row["review_note"] = fix["note"]
        yield row


# ---- the queue -------------------------------------------------------------------------------------

def in_random_sample(sample_id: str, fraction: float, seed: int) -> bool:
    """Stable pseudo-random choice: the same id, fraction and seed always give the same answer."""
    h = int(hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()[:12], 16)
    return h % 1_000_000 < fraction * 1_000_000


def review_reasons(row: dict[str, Any], fraction: float, seed: int) -> list[str]:
    reasons = []
    if row.get("risk_flag") != "none":
        reasons.append(f"risk_flag={row.get('risk_flag')}")
    if int(row.get("reasks", 0) or 0) > 0:
        reasons.append(f"reasked={row.get('reasks')}")
    if in_random_sample(row["id"], fraction, seed):
        reasons.append("random")
    return reasons


def _conversations(layout: Layout) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in layout.shards():
        for rec in read_jsonl(path):
            if isinstance(rec, dict) and "id" in rec:
                out.setdefault(rec["id"], rec)
    return out


def dialogue_text(conversation: list[dict[str, Any]]) -> str:
    """The conversation as a reviewer reads it (the same role names the teacher saw)."""
    return "\n".join(f"{ROLE_NAMES.get(t.get('role'), t.get('role'))}：{t.get('text', '')}"
                     for t in conversation)


def label_studio_config() -> str:
    """A Label Studio labeling config whose choice names match the task predictions."""
    blocks = []
    for name in FIELDS:
        choices = "".join(f'<Choice value="{v}"/>' for v in allowed_values(name))
        desc = LABEL_SCHEMA["properties"][name].get("description", "")
        blocks.append(f'  <Header value="{name} ({desc})"/>\n'
                      f'  <Choices name="{name}" toName="dialogue" choice="single" '
                      f'required="true">{choices}</Choices>')
    # The teacher's quotes (evidence mode) arrive as highlighted spans of the dialogue.
    evidence = ('  <Labels name="evidence" toName="dialogue">'
                '<Label value="evidence" background="#ffe08a"/></Labels>\n')
    return ('<View>\n' + evidence + '  <Text name="dialogue" value="$dialogue"/>\n'
            '  <Text name="why" value="$reasons"/>\n'
            + "\n".join(blocks) + '\n  <TextArea name="note" toName="dialogue" rows="2"/>\n</View>\n')


def label_studio_task(item: dict[str, Any]) -> dict[str, Any]:
    """One import task; a sample nobody labeled (refused, no fallback) has no prediction."""
    task: dict[str, Any] = {"data": {"sample_id": item["id"], "dialogue": item["dialogue"],
                                     "reasons": ", ".join(item["reasons"])}, "predictions": []}
    if item["labels"] is None:
        return task
    result = [{"from_name": k, "to_name": "dialogue", "type": "choices",
               "value": {"choices": [str(item["labels"][k])]}}
              for k in FIELDS]
    for quote in item.get("evidence") or []:
        start = item["dialogue"].find(quote)
        if start >= 0:  # a checked quote is in the normalised turn the teacher read: found
            # here unless normalising changed that stretch of the raw text (then not shown)
            result.append({"from_name": "evidence", "to_name": "dialogue", "type": "labels",
                           "value": {"start": start, "end": start + len(quote), "text": quote,
                                     "labels": ["evidence"]}})
    task["predictions"] = [{"model_version": f"{item['model']}@{item['prompt_version']}",
                            "score": round(1.0 / (1 + int(item.get("reasks", 0) or 0)), 3), "result": result}]
    return task


def _blocked_reasons(results: Path) -> dict[str, list[str]]:
    """id -> ["blocked:<why>"] for every refusal of the teacher (`blocked.jsonl`, may be absent)."""
    path = results / BLOCKED_FILE
    rows = read_jsonl(path) if path.exists() else []
    return {r["id"]: [f"blocked:{r.get('block_reason') or r.get('finish_reason') or 'empty'}"]
            for r in rows}


def write_queue(data_dir: Path, fraction: float = 0.03, seed: int = 0,
                results: Path | None = None) -> dict[str, int]:
    layout = Layout(data_dir)
    results = results or layout.results()
    dataset = results / "dataset.jsonl"
    if not dataset.exists():
        raise ReviewError(f"{dataset} does not exist: run `make label` first")
    convs = _conversations(layout)
    blocked = _blocked_reasons(results)
    rows = {r["id"]: r for r in read_jsonl(dataset)}
    queue = []
    for sid in [*blocked, *(i for i in rows if i not in blocked)]:
        row = rows.get(sid) or {"id": sid, "provider": None, "model": None, "prompt_version": None}
        reasons = blocked.get(sid, []) + (review_reasons(row, fraction, seed) if sid in rows else [])
        if not reasons:
            continue
        conv = convs.get(row["id"], {}).get("conversation", [])
        labels = {k: row[k] for k in FIELDS} if sid in rows else None
        queue.append({"id": row["id"], "reasons": reasons, "labels": labels,
                      "label_source": row.get("label_source", "teacher"), "provider": row.get("provider"),
                      "model": row.get("model"), "prompt_version": row.get("prompt_version"),
                      "reasks": row.get("reasks", 0), "source": row.get("source"), "topic": row.get("topic"),
                      "evidence": row.get("evidence"), "conversation": conv,
                      "dialogue": dialogue_text(conv)})
    out = layout.review
    write_jsonl(out / "queue.jsonl", queue)
    with_tasks = [label_studio_task(q) for q in queue]
    from pipeline.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "label_studio_tasks.json", with_tasks)
    atomic_write_text(out / "label_studio_config.xml", label_studio_config())
    counts = {"queued": len(queue), "blocked": len(blocked),
              "risk": sum(any(r.startswith("risk") for r in q["reasons"]) for q in queue),
              "reasked": sum(any(r.startswith("reasked") for r in q["reasons"]) for q in queue),
              "random": sum("random" in q["reasons"] for q in queue)}
    print(f"review queue: {counts} -> {out}/queue.jsonl, {out}/label_studio_tasks.json "
          f"(import with {out}/label_studio_config.xml)")
    return counts


# ---- applying reviewed files -------------------------------------------------------------------

def _coerce(field: str, value: Any) -> Any:
    """Label Studio choices are strings: turn "2" back into 2 for integer fields (no other coercion)."""
    if LABEL_SCHEMA["properties"][field]["type"] == "integer" and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _from_label_studio(tasks: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(tasks, list):
        raise ReviewError(f"{path}: a Label Studio export is a JSON list of tasks, got "
                          f"{type(tasks).__name__}")
    out = []
    for n, task in enumerate(tasks):
        sid = (task.get("data") or {}).get("sample_id")
        anns = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        if not anns:
            continue  # not reviewed yet
        if not sid:
            raise ReviewError(f"{path}: task {n} has no data.sample_id; export the project created from "
                              "label_studio_tasks.json")
        ann = anns[-1]
        fix: dict[str, Any] = {"id": sid}
        for item in ann.get("result", []):
            name, value = item.get("from_name"), item.get("value", {})
            if name in FIELDS and value.get("choices"):
                fix[name] = _coerce(name, value["choices"][0])
            elif name == "note" and value.get("text"):
                fix["note"] = " ".join(value["text"])
        by = ann.get("completed_by")
        fix["reviewer"] = str(by.get("email", by.get("id")) if isinstance(by, dict) else by)
        fix["_where"] = f"task {n} (sample {sid})"
        out.append(fix)
    return out


def read_reviewed(path: Path) -> list[dict[str, Any]]:
    """Corrections from a reviewed JSONL or a Label Studio export, each with `_where` for errors."""
    if not path.exists():
        raise ReviewError(f"{path} does not exist: pass REVIEWED=<reviewed JSONL or Label Studio export>")
    text = path.read_text("utf-8")
    if text.lstrip().startswith("["):
        try:
            return _from_label_studio(json.loads(text), path)
        except json.JSONDecodeError as exc:
            raise ReviewError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReviewError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ReviewError(f"{path}:{lineno}: expected an object with id and the four labels")
        labels = row.get("labels") if isinstance(row.get("labels"), dict) else row
        fix = {"id": row.get("id"), **{k: labels[k] for k in FIELDS if k in labels},
               "reviewer": row.get("reviewer"), "note": row.get("note"), "_where": f"line {lineno}"}
        out.append(fix)
    return out


def apply_reviewed(data_dir: Path, reviewed: Path, results: Path | None = None) -> dict[str, int]:
    results = results or Layout(data_dir).results()
    dataset = results / "dataset.jsonl"
    if not dataset.exists():
        raise ReviewError(f"{dataset} does not exist: run `make label` first")
    rows = list(read_jsonl(dataset))
    known = {r["id"]: r for r in rows}
    fixes = read_reviewed(reviewed)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store = []
    for fix in fixes:
        where = f"{reviewed} {fix.pop('_where')}"
        sid = fix.get("id")
        if sid not in known:
            raise ReviewError(f"{where}: id {sid!r} is not in {dataset}; was the queue made from another "
                              "run?")
        teacher = known[sid].get("teacher_labels") or {k: known[sid][k] for k in FIELDS}
        # a field the reviewer left alone keeps the teacher's
        labels = {k: fix.get(k, teacher[k]) for k in FIELDS}
        try:
            validate(labels)
        except LabelError as exc:
            raise ReviewError(f"{where}: {exc}; fix the value and apply again") from None
        store.append({"id": sid, **labels, "reviewer": fix.get("reviewer"), "note": fix.get("note"),
                      "reviewed_at": now, "reviewed_from": str(reviewed)})
    old = list(read_jsonl(results / REVIEWED_FILE)) if (results / REVIEWED_FILE).exists() else []
    write_jsonl(results / REVIEWED_FILE, [*old, *store])
    corrections = load_corrections(results)
    merged = list(apply_corrections(rows, corrections))
    write_jsonl(dataset, merged)
    changed = sum(1 for s in store if any(s[k] != (known[s["id"]].get("teacher_labels") or known[s["id"]])[k]
                                          for k in FIELDS))
    counts = {"applied": len(store), "changed_labels": changed,
              "human_rows": sum(r["label_source"] == "human" for r in merged)}
    print(f"applied {counts['applied']} corrections ({changed} change a teacher label); "
          f"{counts['human_rows']} rows now human-labeled -> {dataset}")
    return counts


RESULTS_HELP = "the teacher's results folder (default DATA_DIR/labeling/results)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.review", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("queue", help="write the review queue (JSONL + Label Studio import)")
    q.add_argument("--data-dir", required=True, type=Path)
    q.add_argument("--results-dir", type=Path, help=RESULTS_HELP)
    q.add_argument("--fraction", type=float, default=0.03,
                   help="random share of the rest to review (default 3%%)")
    q.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("apply", help="merge reviewed labels into dataset.jsonl")
    a.add_argument("--data-dir", required=True, type=Path)
    a.add_argument("--results-dir", type=Path, help=RESULTS_HELP)
    a.add_argument("--reviewed", required=True, type=Path, help="reviewed JSONL or Label Studio JSON export")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "queue":
            if not 0 <= args.fraction <= 1:
                raise ReviewError(f"--fraction must be in [0, 1], got {args.fraction}")
            write_queue(args.data_dir, args.fraction, args.seed, args.results_dir)
        else:
            apply_reviewed(args.data_dir, args.reviewed, args.results_dir)
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
