"""PsySUICIDE reading and risk-detection metrics: the class mapping table and per-class P/R/F1.

Kept apart from the CLI (`benchmarks.risk`) so that tests and other benchmarks can score any
predictor on the same rows with the same mapping, and so that the mapping exists exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psyedge.contract import RISK_SEVERITY, most_severe

#: PsySUICIDE class name -> psyedge `risk_flag` (from ../shared/data/README.md; "ambiguous" rows,
#: talk about suicide that is not the writer's own, are left out of precision and recall).
#: 他人攻击行为 is aggression *against* the writer, so it is not the writer's violence.
PSYSUICIDE_TO_RISK: dict[str, str] = {
    "主动自杀意图": "suicidal",    # active suicidal ideation
    "被动自杀意图": "suicidal",    # passive suicidal ideation
    "自杀计划": "suicidal",        # suicide plan
    "自杀准备行为": "suicidal",    # preparatory behaviour
    "自杀未遂": "suicidal",        # suicide attempt
    "自伤行为": "self_harm",       # self-harm behaviour
    "自伤意图": "self_harm",       # self-harm intent
    "用户攻击行为": "violence",    # the writer's aggression
    "他人攻击行为": "none",        # aggression against the writer
    "与自杀/自伤/攻击行为无关": "none",
    "关于自杀的探索": "ambiguous",  # talk about suicide (others, in general)
}
AMBIGUOUS = "ambiguous"
#: The classes scored, in report order.
CLASSES: tuple[str, ...] = ("suicidal", "self_harm", "violence", "none")


class RiskDataError(ValueError):
    """The PsySUICIDE file is missing or malformed; the message names file, row and fix."""


@dataclass(frozen=True)
class RiskRow:
    """One PsySUICIDE text with its gold flag. `row` is the position in the file (idx repeats)."""

    row: int
    idx: int
    text: str
    gold: str
    synthetic: bool
    labels: tuple[str, ...]


def gold_flag(labels: Sequence[str], where: str = "") -> str:
    """The most severe mapped flag; "ambiguous" only when no label maps to a real flag."""
    flags = set()
    for name in labels:
        if name not in PSYSUICIDE_TO_RISK:
            raise RiskDataError(f"{where}: unknown PsySUICIDE class {name!r}; expected one of "
                                f"{sorted(PSYSUICIDE_TO_RISK)} (add it to PSYSUICIDE_TO_RISK)")
        flags.add(PSYSUICIDE_TO_RISK[name])
    real = flags - {AMBIGUOUS, "none"}
    if real:
        return most_severe(real)
    return AMBIGUOUS if AMBIGUOUS in flags else "none"


def load_psysuicide(path: str | Path) -> list[RiskRow]:
    """Read a PsySUICIDE-format JSON array of `{idx, text, labels, data_source}`."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise RiskDataError(f"{path}: no such file; set RISK_DATA to a PsySUICIDE valid.json") from None
    except json.JSONDecodeError as exc:
        raise RiskDataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(raw, list):
        raise RiskDataError(f"{path}: expected a JSON array of rows, got {type(raw).__name__}")
    rows = []
    for i, r in enumerate(raw):
        where = f"{path}: row {i}"
        if (not isinstance(r, dict) or not isinstance(r.get("text"), str)
                or not isinstance(r.get("labels"), list)):
            raise RiskDataError(f"{where}: expected {{idx, text, labels: [...], data_source}}, got "
                                f"{str(r)[:120]}")
        rows.append(RiskRow(i, int(r.get("idx", i)), r["text"], gold_flag(r["labels"], where),
                            r.get("data_source") == "synthetic", tuple(r["labels"])))
    return rows


def class_metrics(gold: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One-vs-rest precision/recall/F1/support per class, ambiguous gold rows left out.

    A class with no predictions has precision None (not 0: nothing was claimed); support 0 gives
    recall None. Counts are included so a reader can see how small the small classes are.
    """
    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if g != AMBIGUOUS]
    out: dict[str, dict[str, Any]] = {}
    for cls in CLASSES:
        tp = sum(1 for g, p in pairs if g == cls and p == cls)
        fp = sum(1 for g, p in pairs if g != cls and p == cls)
        fn = sum(1 for g, p in pairs if g == cls and p != cls)
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall else 0.0)
        out[cls] = {"precision": _r(precision), "recall": _r(recall), "f1": _r(f1), "support": tp + fn,
                    "tp": tp, "fp": fp, "fn": fn}
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def score(rows: Iterable[RiskRow], predict: Callable[[str], str]) -> tuple[dict[str, Any], list[str]]:
    """Predict every row and return (metrics, predictions in row order)."""
    rows = list(rows)
    preds = [predict(r.text) for r in rows]
    bad = {p for p in preds if p not in RISK_SEVERITY}
    if bad:
        raise ValueError(f"predictor returned {sorted(bad)}, not risk flags {list(RISK_SEVERITY)}")
    return class_metrics([r.gold for r in rows], preds), preds


def recall_at_precision(gold_pos: Sequence[bool], scores: Sequence[float],
                        min_precision: float) -> dict[str, Any]:
    """Best recall over thresholds whose precision is >= `min_precision`, with that threshold.

    Ties in score are taken together (a threshold cannot split them), so the figure is honest.
    """
    best: dict[str, Any] = {"recall": 0.0, "precision": None, "threshold": None}
    for thr, precision, recall in pr_curve(gold_pos, scores):
        if precision >= min_precision and recall > best["recall"]:
            best = {"recall": round(recall, 4), "precision": round(precision, 4), "threshold": thr}
    return best


def pr_curve(gold_pos: Sequence[bool], scores: Sequence[float]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) points from the highest score down."""
    pairs = sorted(zip(scores, gold_pos, strict=True), key=lambda p: -p[0])
    total = sum(gold_pos) or 1
    points = []
    tp = fp = 0
    i = 0
    while i < len(pairs):
        thr = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == thr:
            tp += pairs[i][1]
            fp += not pairs[i][1]
            i += 1
        points.append((thr, tp / (tp + fp), tp / total))
    return points
