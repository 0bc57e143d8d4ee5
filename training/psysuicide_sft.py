"""PsySUICIDE as SFT data, with a fixed held-out part that no training or tuning ever sees.

    python -m training.psysuicide_sft --data ../shared/data/psysuicide/valid.json --data-dir data

PsySUICIDE's `valid.json` is the only human-labelled risk data here (1,480 texts). It serves two
purposes that must not touch: training data and the safety figure (suicidal recall on unseen
text). So a fixed part is held out, recorded by `idx` in the tracked file
`training/psysuicide_holdout.json`: every row whose `idx` is listed is left out of the SFT set,
of its validation split, and of anything that chooses thresholds. The file was made once by
`choose_holdout` (stratified, hashed order) and is only ever read; the tests recompute it from the
data and the recorded rule, so a changed file or changed data is noticed, never silently re-drawn.

Stratification: rows that share an `idx` (176 idx values repeat, up to 3 rows) are held out
together; each idx group falls in the stratum (non-synthetic?, most severe human flag), and the
first `ceil(n * FRACTION)` groups of each stratum by sha256 of `SEED:idx` are held out, so the
small classes (7 self-harm, 22 violence non-synthetic rows) are represented on both sides.

Labels of the SFT records: `risk_flag` is the human one (README mapping, `PSYSUICIDE_TO_RISK`);
ambiguous rows (talk about suicide) are left out. The other three fields come from the configured
teacher, here the offline rules teacher (`pipeline.labeling.providers.rules.rule_labels`), recorded as such
in the stats file: they are not human labels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.risk_metrics import AMBIGUOUS, RiskRow, load_psysuicide
from pipeline.io import atomic_write_json, file_sha256, write_jsonl
from pipeline.labeling.providers.rules import rule_labels
from psyedge.contract import canonical_json, most_severe
from psyedge.prompt import INSTRUCTION, prepare, transcript
from training.sft import assign_splits

log = logging.getLogger(__name__)

HOLDOUT_FILE = Path(__file__).resolve().parent / "psysuicide_holdout.json"
FRACTION = 0.35   # of the idx groups of each stratum; >= 30% of the rows overall
SEED = "psyedge-psysuicide-holdout-v1"
OUT_NAME = "psysuicide_sft.jsonl"
STATS_NAME = "psysuicide_sft_stats.json"


class HoldoutError(ValueError):
    """The held-out file is missing or does not match the data (message says what to do)."""


def _stratum(group: list[RiskRow]) -> str:
    real = any(not r.synthetic for r in group)
    flags = {r.gold for r in group} - {AMBIGUOUS}
    flag = most_severe(flags) if flags else AMBIGUOUS
    return f"{'real' if real else 'synthetic'}/{flag}"


def _groups(rows: list[RiskRow]) -> dict[int, list[RiskRow]]:
    groups: dict[int, list[RiskRow]] = defaultdict(list)
    for r in rows:
        groups[r.idx].append(r)
    return groups


def choose_holdout(rows: list[RiskRow], fraction: float = FRACTION) -> list[int]:
    """The held-out idx values: per stratum, the first ceil(n * fraction) groups by hash."""
    strata: dict[str, list[int]] = defaultdict(list)
    for idx, group in _groups(rows).items():
        strata[_stratum(group)].append(idx)
    held: list[int] = []
    for ids in strata.values():
        ids.sort(key=lambda i: hashlib.sha256(f"{SEED}:{i}".encode()).hexdigest())
        held.extend(ids[: math.ceil(len(ids) * fraction)])
    return sorted(held)


def holdout_summary(rows: list[RiskRow], held: set[int]) -> dict[str, Any]:
    """Rows and idx groups held out, overall and per stratum (what the file records)."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for idx, group in _groups(rows).items():
        side = "held_out" if idx in held else "available"
        per[_stratum(group)][side] += len(group)
    n_held = sum(1 for r in rows if r.idx in held)
    return {"rows": len(rows), "held_out_rows": n_held,
            "held_out_row_fraction": round(n_held / len(rows), 4),
            "idx_groups": len(_groups(rows)), "held_out_groups": len(held),
            "per_stratum_rows": {k: dict(v) for k, v in sorted(per.items())}}


def write_holdout(data: Path, out: Path = HOLDOUT_FILE) -> dict[str, Any]:
    """Draw and record the held-out part; refuses to replace an existing file."""
    if out.exists():
        raise HoldoutError(f"{out} exists: the held-out part is fixed once drawn; delete it only "
                           "if the data changed, and say so in the commit")
    rows = load_psysuicide(data)
    held = choose_holdout(rows)
    record = {"source": "psysuicide/valid.json", "source_sha256": file_sha256(data),
              "rule": f"per stratum (non-synthetic?, most severe flag) of idx groups, the first "
                      f"ceil(n * {FRACTION}) by sha256('{SEED}:idx')",
              **holdout_summary(rows, set(held)), "idx": held}
    atomic_write_json(out, record)
    return record


def read_holdout(data: Path, path: Path = HOLDOUT_FILE) -> set[int]:
    """The recorded held-out idx values, checked against the data file's hash."""
    if not path.is_file():
        raise HoldoutError(f"{path} is missing: it is tracked in git; restore it (git checkout)")
    record = json.loads(path.read_text("utf-8"))
    if record["source_sha256"] != file_sha256(data):
        raise HoldoutError(f"{data} is not the file {path} was drawn from (sha256 differs): the "
                           "held-out part would leak; use the original valid.json")
    return set(record["idx"])


def write_holdout_rows(data: Path, out: Path) -> dict[str, Any]:
    """The held-out rows of `data`, verbatim, as a PsySUICIDE-format JSON array at `out`: the file
    `make bench-risk RISK_DATA=` scores, so the safety figure is measured on unseen rows only."""
    held = read_holdout(data)
    raw = json.loads(data.read_text("utf-8"))
    rows = [r for i, r in enumerate(raw) if int(r.get("idx", i)) in held]
    atomic_write_json(out, rows)
    return {"source": str(data), "held_out_rows": len(rows), "out": str(out)}


def build_records(rows: list[RiskRow], held: set[int]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """SFT records of the rows not held out, and the counted reasons rows were left out."""
    records, left_out = [], Counter()
    for r in rows:
        if r.idx in held:
            left_out["held_out"] += 1
            continue
        if r.gold == AMBIGUOUS:
            left_out["ambiguous"] += 1
            continue
        conversation = [{"role": "user", "text": r.text}]
        turns, _ = prepare(conversation)
        labels = rule_labels(conversation) | {"risk_flag": r.gold}
        records.append({"id": f"psysuicide-{r.row}", "idx": r.idx, "synthetic": r.synthetic,
                        "instruction": INSTRUCTION, "input": transcript(turns),
                        "output": canonical_json(labels)})
    return records, left_out


def build(data: Path, data_dir: Path) -> dict[str, Any]:
    """Write datasets/psysuicide_sft.jsonl and its stats; return the stats."""
    rows = load_psysuicide(data)
    held = read_holdout(data)
    records, left_out = build_records(rows, held)
    assign_splits(records)
    out = data_dir / "datasets"
    write_jsonl(out / OUT_NAME, records)
    stats = {"source": str(data), "source_sha256": file_sha256(data), "records": len(records),
             "left_out": dict(left_out),
             "splits": dict(Counter(r["split"] for r in records)),
             "risk_flags": dict(Counter(json.loads(r["output"])["risk_flag"] for r in records)),
             "label_sources": {"risk_flag": "human (PsySUICIDE classes, README mapping)",
                               "depression_level, anxiety_level, student_distress_score":
                                   "rules teacher (pipeline.labeling.providers.rules), not human"},
             "holdout_file": HOLDOUT_FILE.name}
    atomic_write_json(out / STATS_NAME, stats)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.psysuicide_sft",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="PsySUICIDE valid.json")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--draw-holdout", action="store_true",
                        help="draw and record the held-out part (once; refuses to overwrite)")
    parser.add_argument("--holdout-rows", type=Path, metavar="OUT",
                        help="write the held-out rows (PsySUICIDE format) to OUT, for bench-risk")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.draw_holdout:
            result = write_holdout(args.data)
        elif args.holdout_rows:
            result = write_holdout_rows(args.data, args.holdout_rows)
        else:
            result = build(args.data, args.data_dir)
    except HoldoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in result.items() if k != "idx"}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
