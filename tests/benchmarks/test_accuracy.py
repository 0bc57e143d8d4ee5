"""Accuracy metrics on cases worked out by hand (the expected numbers are derived in the comments)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from benchmarks import accuracy as acc
from benchmarks import metrics
from psyedge.contract import Labels
from psyedge.errors import InputError

# Eight conversations, levels 0-3, two per true level.
TRUTH = [0, 0, 1, 1, 2, 2, 3, 3]
PRED = [0, 1, 1, 1, 2, 3, 3, 2]
LEVELS = [0, 1, 2, 3]


def test_confusion_matrix_by_hand() -> None:
    # rows = truth, columns = prediction:
    # truth 0 -> predicted 0 and 1; truth 1 -> 1, 1; truth 2 -> 2, 3; truth 3 -> 3, 2.
    assert metrics.confusion_matrix(TRUTH, PRED, LEVELS) == [
        [1, 1, 0, 0],
        [0, 2, 0, 0],
        [0, 0, 1, 1],
        [0, 0, 1, 1],
    ]


def test_quadratic_weighted_kappa_by_hand() -> None:
    # W_ij = (i-j)^2 / 9. Observed: three off-by-one cells of 1 -> sum(W*O) = 3/9 = 1/3.
    # Row sums 2,2,2,2; column sums 1,3,2,2; n = 8 -> E_ij = 2 * col_j / 8 = col_j / 4.
    # sum_i (i-j)^2 per column j = 14, 6, 6, 14 -> sum(W*E) = (1*14 + 3*6 + 2*6 + 2*14) / 9 / 4 = 72/36 = 2.
    # kappa = 1 - (1/3) / 2 = 5/6.
    assert metrics.quadratic_weighted_kappa(TRUTH, PRED, LEVELS) == pytest.approx(5 / 6)


def test_kappa_extremes() -> None:
    assert metrics.quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3], LEVELS) == pytest.approx(1.0)
    # Reversed: sum(W*O) = (9+1+1+9)/9 = 20/9; E = 1/4 everywhere, sum(W*E) = 40/9/4 = 10/9 -> -1.
    assert metrics.quadratic_weighted_kappa([0, 1, 2, 3], [3, 2, 1, 0], LEVELS) == pytest.approx(-1.0)
    # Both raters used one level only: agreement beyond chance is undefined.
    assert metrics.quadratic_weighted_kappa([2, 2, 2], [2, 2, 2], LEVELS) is None
    assert metrics.quadratic_weighted_kappa([], [], LEVELS) is None


def test_accuracy_per_class_and_macro_f1_by_hand() -> None:
    assert metrics.accuracy(TRUTH, PRED) == pytest.approx(5 / 8)
    scores = {s.label: s for s in metrics.per_class(TRUTH, PRED, LEVELS)}
    # class 0: tp 1, predicted 1, support 2 -> P 1, R 1/2, F1 2/3
    assert (scores[0].precision, scores[0].recall, scores[0].f1) == pytest.approx((1.0, 0.5, 2 / 3))
    # class 1: tp 2, predicted 3, support 2 -> P 2/3, R 1, F1 0.8
    assert (scores[1].precision, scores[1].recall, scores[1].f1) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (scores[2].precision, scores[2].recall, scores[2].f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (scores[3].support, scores[3].predicted) == (2, 2)
    # macro-F1 = (2/3 + 4/5 + 1/2 + 1/2) / 4 = 37/60
    assert metrics.macro_f1(TRUTH, PRED, LEVELS) == pytest.approx(37 / 60)


def test_undefined_ratios_are_none_and_macro_f1_counts_them_as_zero() -> None:
    truth = ["none", "none", "suicidal"]
    pred = ["none", "none", "none"]
    scores = {s.label: s for s in metrics.per_class(truth, pred, ["none", "suicidal", "violence"])}
    assert scores["suicidal"].precision is None  # never predicted
    assert scores["suicidal"].recall == 0.0
    assert scores["violence"].recall is None and scores["violence"].support == 0
    assert scores["suicidal"].f1 == 0.0 and scores["violence"].f1 is None  # missed vs absent
    # none: P 2/3, R 1 -> F1 0.8; suicidal: F1 counts as 0; violence absent from both: left out.
    assert metrics.macro_f1(truth, pred, ["none", "suicidal", "violence"]) == pytest.approx(0.4)


def test_mae_and_within_one_by_hand() -> None:
    truth, pred = [0, 5, 9, 3], [1, 5, 6, 5]
    assert metrics.mean_absolute_error(truth, pred) == pytest.approx((1 + 0 + 3 + 2) / 4)
    assert metrics.within(truth, pred, 1) == pytest.approx(2 / 4)
    assert metrics.mean_absolute_error([], []) is None


def test_threshold_sweep_by_hand() -> None:
    positive = [True, True, False, False, True]
    scores = [0.9, 0.4, 0.6, 0.1, 0.2]
    points = metrics.pr_curve(positive, scores, [0.0, 0.3, 0.5, 0.95])
    got = [(p["threshold"], p["precision"], p["recall"], p["tp"], p["fp"], p["fn"]) for p in points]
    assert got[0] == (0.0, pytest.approx(3 / 5), 1.0, 3, 2, 0)
    assert got[1] == (0.3, pytest.approx(2 / 3), pytest.approx(2 / 3), 2, 1, 1)
    assert got[2] == (0.5, 0.5, pytest.approx(1 / 3), 1, 1, 2)
    assert got[3] == (0.95, None, 0.0, 0, 0, 3)


def test_mismatched_lengths_and_unknown_values_fail_clearly() -> None:
    with pytest.raises(ValueError, match="must pair up"):
        metrics.confusion_matrix([0, 1], [0], LEVELS)
    with pytest.raises(ValueError, match="not one of the labels"):
        metrics.confusion_matrix([0, 7], [0, 1], LEVELS)


def _labels(d: int = 0, a: int = 0, r: str = "none", s: int = 0) -> dict[str, Any]:
    return {"depression_level": d, "anxiety_level": a, "risk_flag": r, "student_distress_score": s}


def test_schema_validity_counts_failed_and_invalid_outputs() -> None:
    outputs = [_labels(1, 2, "none", 3), Labels.from_dict(_labels()), None,
               _labels(d=4), {**_labels(), "anxiety_level": True}]
    assert acc.schema_validity(outputs) == pytest.approx(2 / 5)


# ---- the evaluation set and scoring with a fake screener ---------------------------------------

def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r,
                                             str) else json.dumps(r,
                                                                  ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "text": text}, {"role": "assistant", "text": "能多说一些吗？"}]


def test_load_eval_set_joins_by_id_and_counts_skips(tmp_path: Path) -> None:
    labels = _write_jsonl(tmp_path / "data/labeling/results/dataset.jsonl", [
        {"id": "a", **_labels(1, 1, "none", 2), "teacher": "rules"},
        {"id": "b", **_labels(d=5)},             # invalid level: skipped, counted
        {"id": "c", **_labels(r="suicidal")},    # no conversation with this id
        {"id": "d", **_labels(3, 2, "self_harm", 8)},
    ])
    unified = _write_jsonl(tmp_path / "data/processed/unified_min.jsonl", [
        {"id": "d", "conversation": _conv("我用刀划自己。")},
        {"id": "a", "conversation": _conv("考试压力很大。")},
    ])
    assert acc.default_unified_path(labels) == unified.resolve()
    items, ledger = acc.load_eval_set(labels, unified)
    assert [i.id for i in items] == ["a", "d"]
    assert items[1].truth.risk_flag == "self_harm"
    assert ledger == {"label_rows": 4, "invalid_label": 1, "no_conversation": 1, "duplicate_id": 0,
                      "not_in_split": 0, "evaluated": 2}
    assert len(acc.load_eval_set(labels, unified, limit=1)[0]) == 1
    held_out, ledger = acc.load_eval_set(labels, unified, ids={"d"})
    assert [i.id for i in held_out] == ["d"] and ledger["not_in_split"] == 2


def test_splits_come_from_the_sft_set(tmp_path: Path) -> None:
    labels = tmp_path / "data/labeling/results/dataset.jsonl"
    sft = acc.default_sft_path(labels)
    assert sft == (tmp_path / "data/datasets/sft_student_mental.jsonl").resolve()
    assert acc.load_splits(sft) == {}
    _write_jsonl(sft, [{"id": "a", "split": "train"}, {"id": "d", "split": "validation"}])
    assert acc.load_splits(sft) == {"a": "train", "d": "validation"}


def test_load_eval_set_names_file_and_line_of_bad_json(tmp_path: Path) -> None:
    labels = _write_jsonl(tmp_path / "labels.jsonl", [{"id": "a", **_labels()}, "{not json"])
    unified = _write_jsonl(tmp_path / "unified.jsonl", [{"id": "a", "conversation": _conv("你好")}])
    with pytest.raises(acc.EvalDataError, match=r"labels\.jsonl:2"):
        acc.load_eval_set(labels, unified)
    with pytest.raises(acc.EvalDataError, match="does not exist"):
        acc.load_eval_set(tmp_path / "missing.jsonl", unified)


@dataclass
class FakeAssessment:
    labels: Labels
    model_risk_flag: str
    risk_source: str
    probabilities: dict[str, dict[str, float]]
    timings: dict[str, float] = field(default_factory=lambda: {"prompt_tokens": 100, "total_ms": 5.0})


class FakeScreener:
    """Answers from a table keyed by the user's text: (labels, model flag, P(none), P(suicidal))."""

    def __init__(self, table: dict[str, tuple[dict[str, Any], str, float, float]]) -> None:
        self.table = table

    def assess(self, conversation: list[dict[str, str]]) -> FakeAssessment:
        text = conversation[0]["text"]
        if text not in self.table:
            raise InputError(f"no answer for {text!r}")
        labels, model_flag, p_none, p_sui = self.table[text]
        rest = (1.0 - p_none - p_sui) / 2
        probs = {"risk_flag": {"none": p_none, "suicidal": p_sui, "self_harm": rest, "violence": rest}}
        source = "lexicon" if labels["risk_flag"] != model_flag else "model"
        return FakeAssessment(Labels.from_dict(labels), model_flag, source, probs)


def test_score_with_safety_net_off_and_on(tmp_path: Path) -> None:
    # Four conversations: two suicidal, two without risk. The model misses "x2" (P(suicidal)
    # 0.3) and the lexicon raises it; "x4" fails in the SDK.
    truth = {"x1": _labels(2, 1, "suicidal", 7), "x2": _labels(3, 3, "suicidal", 9),
             "x3": _labels(0, 0, "none", 1), "x4": _labels(1, 1, "none", 2)}
    table = {
        "t1": (_labels(2, 1, "suicidal", 6), "suicidal", 0.1, 0.8),
        "t2": (_labels(2, 3, "suicidal", 9), "none", 0.6, 0.3),
        "t3": (_labels(0, 1, "none", 1), "none", 0.9, 0.05),
    }
    labels = _write_jsonl(tmp_path / "labels.jsonl", [{"id": k, **v} for k, v in truth.items()])
    unified = _write_jsonl(tmp_path / "unified.jsonl",
                           [{"id": f"x{i}", "conversation": _conv(f"t{i}")} for i in range(1, 5)])
    items, _ = acc.load_eval_set(labels, unified)
    off, on = acc.predict(items, FakeScreener(table))
    assert [p.labels.risk_flag if p.labels else None for p in off] == ["suicidal", "none", "none", None]
    assert [p.labels.risk_flag if p.labels else None for p in on] == ["suicidal", "suicidal", "none", None]
    assert off[3].error is not None and "InputError" in off[3].error

    result = acc.score(items, off, on)
    assert result["n"] == 4 and result["scored"] == 3
    assert result["schema_validity"] == pytest.approx(3 / 4)
    dep = result["fields"]["depression_level"]
    assert dep["accuracy"] == pytest.approx(2 / 3)  # x1 2=2, x2 3->2, x3 0=0
    anx = result["fields"]["anxiety_level"]
    assert anx["confusion"][0] == [0, 1, 0, 0]  # x3: truth 0 read as 1
    dist = result["fields"]["student_distress_score"]
    assert dist["mae"] == pytest.approx((1 + 0 + 0) / 3)
    assert dist["within_1"] == pytest.approx(1.0)
    risk_off = result["fields"]["risk_flag"]["lexicon_off"]
    risk_on = result["fields"]["risk_flag"]["lexicon_on"]
    sui = {n: next(c for c in b["per_class"] if c["label"] == "suicidal") for n, b in
           (("off", risk_off), ("on", risk_on))}
    assert sui["off"]["recall"] == pytest.approx(0.5) and sui["on"]["recall"] == pytest.approx(1.0)
    assert risk_on["raised_by_lexicon"] == 1
    # any-risk score = 1 - P(none): x1 0.9, x2 0.4, x3 0.1. At t=0.5 only x1 is flagged.
    points = {p["threshold"]: p for p in result["pr_curves"]["any_risk"]["points"]}
    assert (points[0.5]["recall"], points[0.5]["precision"]) == (0.5, 1.0)
    assert (points[0.35]["recall"], points[0.35]["precision"]) == (1.0, 1.0)
    assert points[0.05]["precision"] == pytest.approx(2 / 3)
    head = acc.headline(result)
    assert head["risk.lexicon_on.suicidal_recall"] == pytest.approx(1.0)
    assert head["depression_level.qwk"] == pytest.approx(result["fields"]["depression_level"]["qwk"])


def test_plain_block_counts_validity_and_agreement() -> None:
    ours = [acc.Prediction("a", Labels.from_dict(_labels(1, 1, "none", 2))),
            acc.Prediction("b", Labels.from_dict(_labels(2, 2, "suicidal", 8))),
            acc.Prediction("c", None, error="InputError: empty")]
    outputs = [{"id": "a", "text": "...", "labels": _labels(1, 1, "none", 2)},      # valid, agrees
               {"id": "b", "text": "...", "labels": _labels(2, 2, "none", 8)},      # valid, differs
               {"id": "c", "text": "...", "labels": _labels()},                     # valid, no psyedge answer
               {"id": "d", "text": '{ "depression_level" :   ', "labels": None}]     # truncated
    block = acc.plain_block(outputs, ours)
    assert block["n"] == 4
    assert block["schema_validity"] == pytest.approx(3 / 4)
    assert block["agreement_with_psyedge"] == pytest.approx(1 / 2)
    assert block["invalid_examples"] == [{"id": "d", "text": '{ "depression_level" :   '}]


def test_predict_refuses_an_assessment_without_the_models_own_flag(tmp_path: Path) -> None:
    @dataclass
    class Old:
        labels: Labels
        probabilities: dict[str, dict[str, float]] = field(default_factory=dict)

    class OldScreener:
        def assess(self, conversation: list[dict[str, str]]) -> Old:
            return Old(Labels.from_dict(_labels(r="suicidal")))

    item = acc.EvalItem("a", Labels.from_dict(_labels()), _conv("我想死"))
    with pytest.raises(TypeError, match="model_risk_flag"):
        acc.predict([item], OldScreener())
