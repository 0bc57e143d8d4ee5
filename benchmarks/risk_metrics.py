"""PsySUICIDE reading and risk-detection metrics: the class mapping table and per-class P/R/F1.

Kept apart from the CLI (`benchmarks.risk`) so that tests and other benchmarks can score any
predictor on the same rows with the same mapping, and so that the mapping exists exactly once;
the metrics themselves are `benchmarks.metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.metrics import risk_class_metrics
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
    """Per-class precision/recall/F1/support (`benchmarks.metrics`), ambiguous gold rows left out."""
    pairs = [(g, p) for g, p in zip(gold, pred, strict=True) if g != AMBIGUOUS]
    return risk_class_metrics([g for g, _ in pairs], [p for _, p in pairs])


def score(rows: Iterable[RiskRow], predict: Callable[[str], str]) -> tuple[dict[str, Any], list[str]]:
    """Predict every row and return (metrics, predictions in row order)."""
    rows = list(rows)
    preds = [predict(r.text) for r in rows]
    bad = {p for p in preds if p not in RISK_SEVERITY}
    if bad:
        raise ValueError(f"predictor returned {sorted(bad)}, not risk flags {list(RISK_SEVERITY)}")
    return class_metrics([r.gold for r in rows], preds), preds
