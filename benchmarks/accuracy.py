"""Accuracy of a screening model against labeled conversations: the metrics and the evaluation run.

Why these metrics: the levels are ordinal (0-3), so exact-match accuracy and macro-F1 say how
often the class is right, and quadratic weighted kappa says how far off the wrong ones are (a 0
read as 3 costs nine times a 0 read as 1). The distress score (0-9) is close to a scale, so MAE
and within-1 accuracy. `risk_flag` is the safety-critical field: per-class precision/recall/F1
with the lexicon safety net on and off, and risk recall over a probability threshold sweep (the
PR curve) from the SDK's own value probabilities, so an app team can pick its operating point.

The metric functions themselves live in `benchmarks.metrics` (one convention for every
benchmark); this module builds the evaluation set, runs the Screener and scores it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.metrics import (
    THRESHOLDS,
    accuracy,
    confusion_matrix,
    macro_f1,
    mean_absolute_error,
    per_class,
    pr_curve,
    quadratic_weighted_kappa,
    ratio,
    value_stats,
    within,
)
from pipeline.io import JsonlError, read_jsonl
from pipeline.layout import Layout
from psyedge.contract import FIELDS, Labels, allowed_values, validate
from psyedge.errors import LabelError, PsyedgeError

log = logging.getLogger(__name__)

#: Ordinal fields scored with accuracy / macro-F1 / quadratic weighted kappa.
LEVEL_FIELDS: tuple[str, ...] = ("depression_level", "anxiety_level")
SCORE_FIELD = "student_distress_score"
RISK_FIELD = "risk_flag"
#: Risk flags that count as "risk" for the any-risk PR curve (everything but "none").
RISK_POSITIVE: tuple[str, ...] = tuple(v for v in allowed_values(RISK_FIELD) if v != "none")


class EvalDataError(ValueError):
    """A labels or conversations file that cannot be joined: names the file, line and fix."""


def schema_validity(outputs: Sequence[Any]) -> float | None:
    """Share of outputs (dicts, `Labels`, or None for a failed call) that match the label schema."""
    if not outputs:
        return None
    ok = 0
    for out in outputs:
        obj = out.to_dict() if isinstance(out, Labels) else out
        try:
            validate(obj)
            ok += 1
        except LabelError:
            pass
    return ok / len(outputs)


# ---- the evaluation set ------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalItem:
    """One labeled conversation: its id, the reference labels and the turns to assess."""

    id: str
    truth: Labels
    conversation: list[dict[str, str]]


def default_unified_path(labels_path: Path) -> Path:
    """`<data>/processed/unified_min.jsonl` for labels under `<data>/labeling/results/`."""
    return Layout.of_labels(labels_path).unified_min


def default_sft_path(labels_path: Path) -> Path:
    """`<data>/datasets/sft_student_mental.jsonl`: the SFT set whose `split` says what training saw."""
    return Layout.of_labels(labels_path).sft


def load_splits(sft_path: Path) -> dict[str, str]:
    """id -> `train`/`validation` from the SFT set (empty when the file does not exist yet)."""
    if not sft_path.is_file():
        return {}
    try:
        return {str(r["id"]): str(r.get("split", "")) for r in read_jsonl(sft_path) if "id" in r}
    except JsonlError as exc:
        raise EvalDataError(str(exc)) from None


def load_eval_set(labels_path: Path, unified_path: Path, limit: int | None = None,
                  ids: set[str] | None = None) -> tuple[list[EvalItem], dict[str, int]]:
    """Join labels with conversations by `id`; return the items and a ledger of what was skipped.

    `ids` keeps only those conversations (a held-out split); others count as `not_in_split`.

    A label row that fails the schema is skipped and counted (`invalid_label`), not fatal: a
    teacher's few bad answers must not hide the accuracy of the rest. A label id with no
    conversation is counted as `no_conversation`. A file that is missing or not JSONL is fatal.
    """
    for path, what in ((labels_path, "labels"), (unified_path, "conversations")):
        if not path.is_file():
            raise EvalDataError(f"{what} file {path} does not exist: run `make label` (labels) or "
                                f"`make data` (conversations), or pass the right path")
    ledger = {"label_rows": 0, "invalid_label": 0, "no_conversation": 0, "duplicate_id": 0, "not_in_split": 0}
    try:
        conversations = {str(r["id"]): r.get("conversation") for r in read_jsonl(unified_path) if "id" in r}
        labels: dict[str, Labels] = {}
        for lineno, row in enumerate(read_jsonl(labels_path), 1):
            ledger["label_rows"] += 1
            rid = row.get("id")
            if rid is None:
                raise EvalDataError(f"{labels_path}:{lineno}: label row has no 'id'; every row needs the id "
                                    "of its conversation")
            try:
                truth = Labels.from_dict({k: row.get(k) for k in FIELDS})
            except LabelError as exc:
                ledger["invalid_label"] += 1
                log.warning("%s:%d: id %s skipped: %s", labels_path, lineno, rid, exc)
                continue
            if str(rid) in labels:
                ledger["duplicate_id"] += 1
            labels[str(rid)] = truth
    except JsonlError as exc:
        raise EvalDataError(str(exc)) from None
    items = []
    for rid, truth in labels.items():
        if ids is not None and rid not in ids:
            ledger["not_in_split"] += 1
            continue
        conv = conversations.get(rid)
        if not conv:
            ledger["no_conversation"] += 1
            continue
        items.append(EvalItem(rid, truth, conv))
        if limit is not None and len(items) >= limit:
            break
    ledger["evaluated"] = len(items)
    return items, ledger


# ---- running a screener and scoring it ---------------------------------------------------------

@dataclass
class Prediction:
    """What the SDK said for one item with the safety net on or off (labels None = the call failed)."""

    id: str
    labels: Labels | None
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    risk_source: str | None = None
    prompt_tokens: int | None = None
    total_ms: float | None = None
    error: str | None = None


def _with_risk(labels: Labels, flag: str) -> Labels:
    return Labels.from_dict({**labels.to_dict(), "risk_flag": flag})


def predict(items: Sequence[EvalItem], screener: Any,
            progress: Callable[[Iterable[EvalItem]], Iterable[EvalItem]] = lambda it: it,
            ) -> tuple[list[Prediction], list[Prediction]]:
    """Assess every item once; return the predictions with the safety net off and on.

    One call gives both: the SDK's `Assessment.model_risk_flag` is the model's own flag (net
    off) and `labels.risk_flag` the flag after the lexicon (net on), so the model runs once per
    conversation. Open the screener with its `lexicon` switch on (the default), else both are "off".
    Only `PsyedgeError` is caught (a conversation the SDK refuses counts against schema
    validity); any other exception is a bug and stops the benchmark.
    """
    off: list[Prediction] = []
    on: list[Prediction] = []
    for item in progress(items):
        try:
            a = screener.assess(item.conversation)
        except PsyedgeError as exc:
            err = f"{type(exc).__name__}: {exc}"
            off.append(Prediction(item.id, None, error=err))
            on.append(Prediction(item.id, None, error=err))
            continue
        labels = a.labels if isinstance(a.labels, Labels) else None
        timings = dict(getattr(a, "timings", {}) or {})
        common: dict[str, Any] = {
            "probabilities": {f: dict(p) for f, p in (getattr(a, "probabilities", {}) or {}).items()},
            "prompt_tokens": timings.get("prompt_tokens"), "total_ms": timings.get("total_ms"),
            "error": None if labels is not None else f"labels of type {type(a.labels).__name__}",
        }
        model_flag = getattr(a, "model_risk_flag", None)
        if labels is not None and model_flag is None:
            raise TypeError(f"{type(a).__name__} has no model_risk_flag: without the model's own flag the "
                            "safety-net-off figures cannot be told apart; update benchmarks.accuracy.predict")
        if labels is not None and model_flag != labels.risk_flag:
            off.append(Prediction(item.id, _with_risk(labels, model_flag), risk_source="model", **common))
        else:
            off.append(Prediction(item.id, labels, risk_source="model", **common))
        on.append(Prediction(item.id, labels, risk_source=getattr(a, "risk_source", None), **common))
    return off, on


def _risk_block(truth: list[str], pred: list[str]) -> dict[str, Any]:
    values = list(allowed_values(RISK_FIELD))
    pos_t = [t != "none" for t in truth]
    pos_p = [p != "none" for p in pred]
    tp = sum(a and b for a, b in zip(pos_t, pos_p, strict=True))
    return {
        "accuracy": accuracy(truth, pred),
        "per_class": [s.to_dict() for s in per_class(truth, pred, values)],
        "any_risk_recall": ratio(tp, sum(pos_t)),
        "any_risk_precision": ratio(tp, sum(pos_p)),
        "labels": values,
        "confusion": confusion_matrix(truth, pred, values),
    }


def score(items: Sequence[EvalItem], preds_off: Sequence[Prediction],
          preds_on: Sequence[Prediction] | None = None) -> dict[str, Any]:
    """All accuracy metrics for one model: ordinal fields, distress score, risk (net off/on), PR sweep.

    Items whose prediction failed count against `schema_validity` and are left out of the other
    metrics (which then cover `scored` items).
    """
    by_id = {i.id: i for i in items}
    valid_off = [p for p in preds_off if p.labels is not None]
    truth = [by_id[p.id].truth for p in valid_off]
    pred = [p.labels for p in valid_off if p.labels is not None]
    result: dict[str, Any] = {
        "n": len(items),
        "scored": len(valid_off),
        "schema_validity": schema_validity([p.labels for p in preds_off]),
        "errors": [{"id": p.id, "error": p.error} for p in preds_off if p.error][:20],
        "fields": {},
    }
    for f in LEVEL_FIELDS:
        t = [getattr(x, f) for x in truth]
        p = [getattr(x, f) for x in pred]
        levels = list(allowed_values(f))
        result["fields"][f] = {
            "accuracy": accuracy(t, p), "macro_f1": macro_f1(t, p, levels),
            "qwk": quadratic_weighted_kappa(t, p, levels),
            "labels": levels, "confusion": confusion_matrix(t, p, levels),
        }
    t = [getattr(x, SCORE_FIELD) for x in truth]
    p = [getattr(x, SCORE_FIELD) for x in pred]
    levels = list(allowed_values(SCORE_FIELD))
    result["fields"][SCORE_FIELD] = {
        "accuracy": accuracy(t, p), "mae": mean_absolute_error(t, p), "within_1": within(t, p, 1),
        "qwk": quadratic_weighted_kappa(t, p, levels), "labels": levels,
        "confusion": confusion_matrix(t, p, levels),
    }
    risk_truth = [x.risk_flag for x in truth]
    risk = {"lexicon_off": _risk_block(risk_truth, [x.risk_flag for x in pred])}
    if preds_on is not None:
        on = {p.id: p for p in preds_on}
        paired = [(by_id[p.id].truth.risk_flag, on[p.id].labels.risk_flag)  # type: ignore[union-attr]
                  for p in valid_off if p.id in on and on[p.id].labels is not None]
        risk["lexicon_on"] = _risk_block([a for a, _ in paired], [b for _, b in paired])
        risk["lexicon_on"]["raised_by_lexicon"] = sum(p.risk_source == "lexicon" for p in preds_on)
        result["schema_validity_lexicon_on"] = schema_validity([p.labels for p in preds_on])
    result["fields"][RISK_FIELD] = risk
    result["pr_curves"] = pr_curves(risk_truth, [p.probabilities.get(RISK_FIELD, {}) for p in valid_off])
    tokens = [p.prompt_tokens for p in valid_off if p.prompt_tokens is not None]
    result["prompt_tokens"] = value_stats(tokens)
    return result


def pr_curves(truth: Sequence[str], risk_probs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Threshold sweeps for "any risk" (score 1 - P(none)) and "suicidal" (score P(suicidal)).

    Skipped (empty) when the SDK gave no risk probabilities.
    """
    if not risk_probs or any(not p for p in risk_probs):
        return {}
    any_scores = [1.0 - float(p.get("none", 0.0)) for p in risk_probs]
    sui_scores = [float(p.get("suicidal", 0.0)) for p in risk_probs]
    return {
        "any_risk": {"score": "1 - P(risk_flag=none)", "positives": sum(t != "none" for t in truth),
                     "points": pr_curve([t != "none" for t in truth], any_scores, THRESHOLDS)},
        "suicidal": {"score": "P(risk_flag=suicidal)", "positives": sum(t == "suicidal" for t in truth),
                     "points": pr_curve([t == "suicidal" for t in truth], sui_scores, THRESHOLDS)},
    }


def headline(result: Mapping[str, Any]) -> dict[str, float | None]:
    """The handful of numbers the summary table shows, flat, by name."""
    f = result["fields"]
    out: dict[str, float | None] = {"schema_validity": result["schema_validity"]}
    for name in LEVEL_FIELDS:
        for metric in ("accuracy", "macro_f1", "qwk"):
            out[f"{name}.{metric}"] = f[name][metric]
    out[f"{SCORE_FIELD}.mae"] = f[SCORE_FIELD]["mae"]
    out[f"{SCORE_FIELD}.within_1"] = f[SCORE_FIELD]["within_1"]
    for net, block in f[RISK_FIELD].items():
        out[f"risk.{net}.any_risk_recall"] = block["any_risk_recall"]
        suicidal = next(s for s in block["per_class"] if s["label"] == "suicidal")
        out[f"risk.{net}.suicidal_recall"] = suicidal["recall"]
        out[f"risk.{net}.suicidal_precision"] = suicidal["precision"]
    return out


# ---- the plain llama-cpp-python path: how often is its answer schema-valid? --------------------

#: Token cap of one plain-path answer: the canonical JSON is ~40 tokens on a real vocabulary; a
#: grammar that admits whitespace can run past any cap, which is exactly the failure to count.
PLAIN_MAX_TOKENS = 96


def plain_outputs(items: Sequence[EvalItem], model: Path, template: str, threads: int | None = None,
                  n_ctx: int = 4096, max_tokens: int = PLAIN_MAX_TOKENS,
                  progress: Callable[[Iterable[EvalItem]], Iterable[EvalItem]] = lambda it: it,
                  ) -> tuple[list[dict[str, Any]], float]:
    """Answer each item the way an app would without psyedge: `create_completion` on the same
    prompt text, constrained by `LlamaGrammar.from_json_schema(label schema)`, greedy.

    Returns per item `{"id", "text", "labels"}` with `labels` the parsed dict when it is
    schema-valid JSON, else None (truncated at the token cap, or not JSON); and the seconds the
    `Llama(...)` load took (the plain side of the model-load comparison).
    """
    from llama_cpp import Llama, LlamaGrammar

    from psyedge.contract import LABEL_SCHEMA
    from psyedge.prompt import get_template, render

    tpl = get_template(template)
    # Flash attention on as in the Screener (llama-cpp-python defaults it off), so the two paths
    # run the same kernels; repeat_penalty 1.0: penalising repeated JSON keys would change answers.
    t0 = time.perf_counter()
    llm = Llama(str(model), n_ctx=n_ctx, n_threads=threads or None, n_threads_batch=threads or None,
                flash_attn=True, verbose=False)
    load_s = time.perf_counter() - t0
    grammar = LlamaGrammar.from_json_schema(json.dumps(LABEL_SCHEMA), verbose=False)
    out = []
    try:
        for item in progress(items):
            prompt = render(item.conversation, tpl)
            res = llm.create_completion(prompt, grammar=grammar, max_tokens=max_tokens, temperature=0.0,
                                        top_k=1, repeat_penalty=1.0, stop=[tpl.eos] if tpl.eos else [])
            text = res["choices"][0]["text"]
            try:
                labels: dict[str, Any] | None = validate(json.loads(text))
            except (json.JSONDecodeError, LabelError):
                labels = None
            out.append({"id": item.id, "text": text, "labels": labels})
    finally:
        llm.close()
    return out, load_s


def plain_block(outputs: Sequence[Mapping[str, Any]], preds_off: Sequence[Prediction]) -> dict[str, Any]:
    """Schema validity of the plain path, and how often its valid answers equal psyedge's (net off)."""
    ours = {p.id: p.labels.to_dict() for p in preds_off if p.labels is not None}
    valid = [o for o in outputs if o["labels"] is not None]
    both = [o for o in valid if o["id"] in ours]
    agree = sum(dict(o["labels"]) == ours[o["id"]] for o in both)
    return {
        "n": len(outputs),
        "schema_validity": schema_validity([o["labels"] for o in outputs]),
        "agreement_with_psyedge": ratio(agree, len(both)),
        "invalid_examples": [{"id": o["id"], "text": o["text"][:200]}
                             for o in outputs if o["labels"] is None][:5],
    }
