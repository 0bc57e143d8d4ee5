"""The metrics every benchmark scores with: one F1 convention, one PR curve, the risk classes.

Pure functions (lists in, numbers out), tested on hand-computed cases. Undefined values (a
precision with no predictions, kappa with no variance) are `None`, never a made-up 0; F1 is
2TP / (2TP + FP + FN), so a class that occurs but is never found scores 0 and only a class that
occurs nowhere is None, and macro-F1 averages the classes that occur (scikit-learn's
convention, so the numbers compare with published ones). The risk classes are the contract's
(`psyedge.contract.RISK_SEVERITY`, most severe first).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psyedge.contract import RISK_SEVERITY

#: The risk classes, most severe first: what `risk_flag` may say, from the contract.
RISK_CLASSES: tuple[str, ...] = RISK_SEVERITY
#: Probability thresholds of a report's sweep (0.00, 0.05, ..., 1.00): fine enough to read a
#: curve, few enough to list in the report.
THRESHOLDS: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))


def confusion_matrix(truth: Sequence[Any], pred: Sequence[Any], labels: Sequence[Any]) -> list[list[int]]:
    """Counts with rows = true label, columns = predicted label, both in `labels` order."""
    if len(truth) != len(pred):
        raise ValueError(f"truth has {len(truth)} items, pred has {len(pred)}: they must pair up")
    index = {v: i for i, v in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, pred, strict=True):
        if t not in index or p not in index:
            raise ValueError(f"value {t if t not in index else p!r} is not one of the labels {list(labels)}")
        m[index[t]][index[p]] += 1
    return m


def accuracy(truth: Sequence[Any], pred: Sequence[Any]) -> float | None:
    """Share of exact matches (None for an empty set)."""
    if not truth:
        return None
    return sum(t == p for t, p in zip(truth, pred, strict=True)) / len(truth)


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class; None where the ratio has a zero denominator."""

    label: Any
    precision: float | None
    recall: float | None
    f1: float | None
    support: int
    predicted: int
    tp: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "precision": self.precision, "recall": self.recall, "f1": self.f1,
                "support": self.support, "predicted": self.predicted, "tp": self.tp}


def ratio(num: int | float, den: int | float) -> float | None:
    """`num / den`, or None when `den` is 0 (an undefined share is not a 0)."""
    return num / den if den else None


def per_class(truth: Sequence[Any], pred: Sequence[Any], labels: Sequence[Any]) -> list[ClassScores]:
    """One-vs-rest precision/recall/F1 for each label, from the confusion matrix.

    F1 = 2TP / (2TP + FP + FN): 0 for a class that occurs but is never found (or only claimed
    wrongly), None only for a class that occurs in neither list (nothing to score).
    """
    m = confusion_matrix(truth, pred, labels)
    out = []
    for i, label in enumerate(labels):
        tp = m[i][i]
        support = sum(m[i])
        predicted = sum(row[i] for row in m)
        f1 = ratio(2 * tp, support + predicted)
        out.append(ClassScores(label, ratio(tp, predicted), ratio(tp, support), f1, support, predicted, tp))
    return out


def macro_f1(truth: Sequence[Any], pred: Sequence[Any], labels: Sequence[Any]) -> float | None:
    """Mean F1 over the labels that occur in `truth` or `pred`; an undefined F1 counts as 0."""
    scores = [s for s in per_class(truth, pred, labels) if s.support or s.predicted]
    if not scores:
        return None
    return sum(s.f1 or 0.0 for s in scores) / len(scores)


def quadratic_weighted_kappa(truth: Sequence[int], pred: Sequence[int],
                             levels: Sequence[int]) -> float | None:
    """Cohen's kappa with weights (i-j)^2/(K-1)^2: 1 = perfect, 0 = chance, <0 = worse than chance.

    kappa = 1 - sum(W*O) / sum(W*E), O the observed confusion matrix, E the outer product of the
    two marginal histograms divided by n. None when sum(W*E) is 0 (both raters used one level:
    agreement beyond chance is undefined).
    """
    k = len(levels)
    if not truth or k < 2:
        return None
    o = confusion_matrix(truth, pred, levels)
    n = len(truth)
    row = [sum(r) for r in o]
    col = [sum(o[i][j] for i in range(k)) for j in range(k)]
    num = den = 0.0
    for i in range(k):
        for j in range(k):
            w = (i - j) ** 2 / (k - 1) ** 2
            num += w * o[i][j]
            den += w * row[i] * col[j] / n
    return None if den == 0 else 1.0 - num / den


def mean_absolute_error(truth: Sequence[int], pred: Sequence[int]) -> float | None:
    if not truth:
        return None
    return sum(abs(t - p) for t, p in zip(truth, pred, strict=True)) / len(truth)


def within(truth: Sequence[int], pred: Sequence[int], tolerance: int = 1) -> float | None:
    """Share of predictions at most `tolerance` away from the truth."""
    if not truth:
        return None
    return sum(abs(t - p) <= tolerance for t, p in zip(truth, pred, strict=True)) / len(truth)


def pr_curve(is_positive: Sequence[bool], scores: Sequence[float],
             thresholds: Iterable[float] | None = None) -> list[dict[str, Any]]:
    """Precision and recall when "score >= threshold" flags an item, at each threshold.

    `thresholds=None` takes every distinct score, highest first (ties are taken together: a
    threshold cannot split them). Precision is None at a threshold that flags nothing (no PR
    point there); recall is None when there is no positive item at all.
    """
    if len(is_positive) != len(scores):
        raise ValueError(f"{len(is_positive)} truths but {len(scores)} scores: they must pair up")
    if thresholds is None:
        thresholds = sorted(set(scores), reverse=True)
    positives = sum(is_positive)
    points = []
    for t in thresholds:
        flagged = [s >= t for s in scores]
        tp = sum(f and y for f, y in zip(flagged, is_positive, strict=True))
        fp = sum(f and not y for f, y in zip(flagged, is_positive, strict=True))
        points.append({"threshold": t, "precision": ratio(tp, tp + fp), "recall": ratio(tp, positives),
                       "tp": tp, "fp": fp, "fn": positives - tp})
    return points


def recall_at_precision(is_positive: Sequence[bool], scores: Sequence[float],
                        min_precision: float) -> dict[str, Any]:
    """Best recall over the thresholds whose precision is >= `min_precision`, with that threshold."""
    best: dict[str, Any] = {"recall": 0.0, "precision": None, "threshold": None}
    for p in pr_curve(is_positive, scores):
        if (p["precision"] is not None and p["precision"] >= min_precision
                and (p["recall"] or 0) > best["recall"]):
            best = {"recall": round(p["recall"], 4), "precision": round(p["precision"], 4),
                    "threshold": p["threshold"]}
    return best


def expected_calibration_error(is_positive: Sequence[bool], probs: Sequence[float],
                               bins: int = 10) -> float | None:
    """Mean |P - observed rate| over `bins` equal-width probability bins, weighted by bin size
    (None for no items): how far a probability can be read as a rate."""
    if len(is_positive) != len(probs):
        raise ValueError(f"{len(is_positive)} truths but {len(probs)} probabilities: they must pair up")
    if not probs:
        return None
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            conf = sum(probs[i] for i in idx) / len(idx)
            rate = sum(is_positive[i] for i in idx) / len(idx)
            total += len(idx) / len(probs) * abs(conf - rate)
    return round(total, 4)


def risk_class_metrics(truth: Sequence[str], pred: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per risk class: precision, recall, F1 (rounded to 4 places), support and the counts."""
    return {s.label: {"precision": _round(s.precision), "recall": _round(s.recall), "f1": _round(s.f1),
                      "support": s.support, "tp": s.tp, "fp": s.predicted - s.tp, "fn": s.support - s.tp}
            for s in per_class(truth, pred, RISK_CLASSES)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def value_stats(values: Sequence[float]) -> dict[str, float] | None:
    """Mean, min, max and median of some numbers (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return {"mean": sum(values) / len(values), "min": ordered[0], "max": ordered[-1],
            "median": ordered[len(ordered) // 2]}


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
