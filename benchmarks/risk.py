"""`make bench-risk`: risk detection on PsySUICIDE human labels (lexicon, rules teacher, model).

    python -m benchmarks.risk --data ../shared/data/psysuicide/valid.json --out reports/bench \
        [--model models/tiny/model-Q4_K_M.gguf] [--template deepseek-r1]

Writes into `--out`:
- `risk.json`: per predictor, per class precision/recall/F1/support over the non-synthetic rows,
  the same under "synthetic", the idx-parity halves of the lexicon (the lexicon was tuned on the
  even half: the odd half shows whether it generalises), and with a model the suicidal recall at
  precision >= 0.8 from the SDK's P(risk_flag = suicidal);
- `risk_lexicon_errors.jsonl`: the lexicon's false negatives and false positives, with the text,
  the surviving hits and the suppressed matches (what a lexicon editor reads next);
- `risk_pr.png`: precision/recall for suicidal: the lexicon and rules as points, the model's
  probabilities as a curve.

Why a separate benchmark: a missed suicide risk is the worst failure psyedge can have, and these
are real human labels, unlike the teacher labels the rest of the bench scores against.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.metrics import pr_curve, recall_at_precision
from benchmarks.risk_metrics import AMBIGUOUS, RiskDataError, RiskRow, class_metrics, load_psysuicide, score
from psyedge.lexicon import LexiconError, load_lexicon

log = logging.getLogger(__name__)

#: The precision at which the model's suicidal recall is reported (issue: "recall at P >= 0.8").
MIN_PRECISION = 0.8
RISK_JSON = "risk.json"
ERRORS_JSONL = "risk_lexicon_errors.jsonl"
PR_PNG = "risk_pr.png"


# ---- predictors ------------------------------------------------------------------------------
def lexicon_predictor() -> Callable[[str], str]:
    """The SDK lexicon's flag for a text (what the Screener's safety net adds)."""
    return load_lexicon().risk


def rules_predictor() -> tuple[Callable[[str], str] | None, str]:
    """The offline `rules` labeling teacher's risk flag, or (None, why it is absent).

    The teacher labels conversations; a PsySUICIDE text becomes a one-turn user conversation.
    """
    try:
        from pipeline.labeling.providers import rules  # optional: the labeling stage may be absent
    except ImportError as exc:
        return None, f"pipeline.labeling.providers.rules is not importable ({exc})"
    fn = getattr(rules, "rule_labels", None)
    if not callable(fn):
        return None, "pipeline.labeling.providers.rules has no rule_labels(conversation)"

    def via_rules(text: str) -> str:
        return str(fn([{"role": "user", "text": text}])["risk_flag"])

    return via_rules, "pipeline.labeling.providers.rules.rule_labels"


def model_predictions(model: Path, template: str | None, rows: Sequence[RiskRow],
                      adapter: Path | None = None) -> dict[str, list[Any]]:
    """Screen every text once with the safety net on; the Assessment also keeps the model's own
    flag, so "model" and "model+lexicon" come from the same forward passes."""
    from tqdm import tqdm

    from psyedge.screener import Screener

    off: list[str] = []
    on: list[str] = []
    p_suicidal: list[float] = []
    with Screener(model, template=template, lexicon=True, adapter=adapter) as screener:
        for r in tqdm(rows, desc="screening", unit="text"):
            a = screener.assess([{"role": "user", "text": r.text}])
            off.append(a.model_risk_flag)
            on.append(a.labels.risk_flag)
            p_suicidal.append(float(a.probabilities["risk_flag"]["suicidal"]))
    return {"model": off, "model+lexicon": on, "p_suicidal": p_suicidal}


# ---- the run ---------------------------------------------------------------------------------
def _subsets(rows: Sequence[RiskRow]) -> dict[str, list[RiskRow]]:
    non_synthetic = [r for r in rows if not r.synthetic]
    return {
        "non_synthetic": non_synthetic,
        "synthetic": [r for r in rows if r.synthetic],
        "even_idx": [r for r in non_synthetic if r.idx % 2 == 0],
        "odd_idx": [r for r in non_synthetic if r.idx % 2 == 1],
    }


def _counts(rows: Sequence[RiskRow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.gold] = out.get(r.gold, 0) + 1
    return dict(sorted(out.items()))


def lexicon_errors(rows: Sequence[RiskRow], preds: Sequence[str], subset: str) -> list[dict[str, Any]]:
    """False negatives and false positives of the lexicon, with what matched and what was suppressed."""
    lex = load_lexicon()
    out = []
    for r, p in zip(rows, preds, strict=True):
        if r.gold == AMBIGUOUS or p == r.gold:
            continue
        kind = "false_negative" if r.gold != "none" and p == "none" else (
            "false_positive" if r.gold == "none" else "wrong_class")
        cands = lex.explain(r.text)
        out.append({
            "kind": kind, "subset": subset, "row": r.row, "idx": r.idx, "gold": r.gold, "pred": p,
            "labels": list(r.labels), "text": r.text,
            "hits": [{"entry": c.hit.entry, "class": c.hit.risk_flag,
                      "match": r.text[c.hit.span[0]:c.hit.span[1]]}
                     for c in cands if c.suppressed_by is None],
            "suppressed": [{"entry": c.hit.entry, "match": r.text[c.hit.span[0]:c.hit.span[1]],
                            "rule": c.suppressed_by} for c in cands if c.suppressed_by is not None],
        })
    return out


def run(data: Path, out: Path, model: Path | None = None, template: str | None = None,
        adapter: Path | None = None) -> dict[str, Any]:
    """Score every predictor, write risk.json, the lexicon error JSONL and the PR plot; return the report."""
    from pipeline.io import atomic_write_json, write_jsonl

    t0 = time.perf_counter()
    rows = load_psysuicide(data)
    subsets = _subsets(rows)
    lex = load_lexicon()
    report: dict[str, Any] = {}
    by_subset: dict[str, dict[str, Any]] = {"non_synthetic": {}, "synthetic": {}}
    preds: dict[str, dict[str, list[str]]] = {"non_synthetic": {}, "synthetic": {}}

    predictors: dict[str, Callable[[str], str]] = {"lexicon": lexicon_predictor()}
    rules_fn, rules_note = rules_predictor()
    if rules_fn is not None:
        predictors["rules"] = rules_fn
    else:
        log.warning("rules entry absent: %s", rules_note)
        by_subset["non_synthetic"]["rules"] = by_subset["synthetic"]["rules"] = {"absent": True,
                                                                                 "note": rules_note}

    for name, fn in predictors.items():
        t = time.perf_counter()
        for subset in ("non_synthetic", "synthetic"):
            metrics, p = score(subsets[subset], fn)
            by_subset[subset][name] = metrics
            preds[subset][name] = p
        log.info("%s scored %d rows in %.2f s", name, len(rows), time.perf_counter() - t)

    model_block: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    if model is not None:
        everything = subsets["non_synthetic"] + subsets["synthetic"]
        res_all = model_predictions(model, template, everything, adapter)
        n_ns = len(subsets["non_synthetic"])
        for subset in ("non_synthetic", "synthetic"):
            sl = slice(0, n_ns) if subset == "non_synthetic" else slice(n_ns, None)
            res = {k: v[sl] for k, v in res_all.items()}
            gold_rows = [r for r in subsets[subset] if r.gold != AMBIGUOUS]
            keep = [i for i, r in enumerate(subsets[subset]) if r.gold != AMBIGUOUS]
            gold_pos = [r.gold == "suicidal" for r in gold_rows]
            p_s = [res["p_suicidal"][i] for i in keep]
            lex_s = [1.0 if preds[subset]["lexicon"][i] == "suicidal" else 0.0 for i in keep]
            combined = [max(a, b) for a, b in zip(p_s, lex_s, strict=True)]
            for name in ("model", "model+lexicon"):
                by_subset[subset][name] = class_metrics([r.gold for r in subsets[subset]], res[name])
            model_block[subset] = {
                f"suicidal_recall_at_precision_{MIN_PRECISION}": {
                    "model": recall_at_precision(gold_pos, p_s, MIN_PRECISION),
                    "model+lexicon": recall_at_precision(gold_pos, combined, MIN_PRECISION),
                },
            }
            if subset == "non_synthetic":
                curves = {"model P(suicidal)": pr_curve(gold_pos, p_s),
                          "max(model P(suicidal), lexicon)": pr_curve(gold_pos, combined)}

    report.update(by_subset["non_synthetic"])
    report["synthetic"] = by_subset["synthetic"]
    halves = {}
    for half in ("even_idx", "odd_idx"):
        halves[half], _ = score(subsets[half], lex.risk)
    report["lexicon_idx_halves"] = {
        "note": "the lexicon was first developed on the even-idx half of the non-synthetic rows only; "
                "its held-out figures on the odd half at that point are in sdk/python/LEXICON.md. "
                "Later edits saw both halves, so these current figures are in-sample",
        **halves,
    }
    if model_block:
        report["model_probabilities"] = model_block
    report["meta"] = {
        "data": str(data),
        "rows": len(rows),
        "gold_non_synthetic": _counts(subsets["non_synthetic"]),
        "gold_synthetic": _counts(subsets["synthetic"]),
        "ambiguous": "PsySUICIDE 关于自杀的探索 (talk about suicide): left out of precision and recall",
        "lexicon": {"source": lex.source, "version": lex.version, "entries": len(lex.entries),
                    "rules": len(lex.rules)},
        "rules": rules_note,
        "model": str(model) if model else None,
        "adapter": str(adapter) if adapter else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }

    out.mkdir(parents=True, exist_ok=True)
    errors = (lexicon_errors(subsets["non_synthetic"], preds["non_synthetic"]["lexicon"], "non_synthetic")
              + lexicon_errors(subsets["synthetic"], preds["synthetic"]["lexicon"], "synthetic"))
    write_jsonl(out / ERRORS_JSONL, errors)
    plot_pr(report, curves, out / PR_PNG, model)
    atomic_write_json(out / RISK_JSON, report)
    return report


def plot_pr(report: dict[str, Any], curves: dict[str, list[dict[str, Any]]], path: Path,
            model: Path | None) -> Path:
    """Suicidal precision vs recall: fixed predictors as points, model probabilities as curves."""
    from benchmarks.plots import pr_plot

    points = {}
    for name in ("lexicon", "rules", "model", "model+lexicon"):
        for where, block in (("", report), (" (synthetic rows)", report.get("synthetic", {}))):
            m = block.get(name, {}).get("suicidal")
            if m and m["precision"] is not None and m["recall"] is not None:
                label = f"{name}{where}: P={m['precision']:.2f} R={m['recall']:.2f}"
                points[label] = (m["recall"], m["precision"])
    support = report.get("lexicon", {}).get("suicidal", {}).get("support")
    title = (f"Suicidal risk on PsySUICIDE valid, non-synthetic rows ({support} positives)\n"
             f"{model.name if model else 'lexicon and rules only (no model given)'}")
    return pr_plot(curves, points, title, path, xlabel="recall (share of suicidal texts flagged suicidal)",
                   ylabel="precision (share of suicidal flags that are suicidal)",
                   min_precision=MIN_PRECISION)


def _summary(report: dict[str, Any]) -> str:
    lines = []
    for name in ("lexicon", "rules", "model", "model+lexicon"):
        if name not in report:
            continue
        if report[name].get("absent"):
            lines.append(f"{name:>14}: absent ({report[name]['note']})")
            continue
        parts = []
        for cls in ("suicidal", "self_harm", "violence"):
            m = report[name][cls]
            p = "-" if m["precision"] is None else f"{m['precision']:.3f}"
            r = "-" if m["recall"] is None else f"{m['recall']:.3f}"
            parts.append(f"{cls} P={p} R={r} (n={m['support']})")
        lines.append(f"{name:>14}: " + "; ".join(parts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.risk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="PsySUICIDE-format JSON (valid.json)")
    parser.add_argument("--out", required=True, type=Path, help="folder for risk.json, the JSONL and the PNG")
    parser.add_argument("--model", type=Path, help="GGUF to score with psyedge.Screener (optional)")
    parser.add_argument("--template", help="chat template (default: the GGUF's psyedge.template key)")
    parser.add_argument("--adapter", type=Path, help="LoRA adapter GGUF applied on --model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.model is not None and not args.model.is_file():
        print(f"error: --model {args.model} is not a file; pass a GGUF (e.g. models/tiny/model-Q4_K_M.gguf)",
              file=sys.stderr)
        return 2
    try:
        report = run(args.data, args.out, args.model, args.template, args.adapter)
    except (RiskDataError, LexiconError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the SDK's ModelError/InputError and llama.cpp failures: one clear line
        from psyedge.errors import PsyedgeError

        if isinstance(exc, PsyedgeError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    print(_summary(report))
    print(f"wrote {args.out / RISK_JSON}, {args.out / ERRORS_JSONL}, {args.out / PR_PNG} "
          f"in {report['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
