"""`benchmarks.risk` and `benchmarks.risk_metrics` on small PsySUICIDE-format files written here.

The expected numbers are worked out by hand in the comments. The real-label floors are in
test_risk_floors.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import risk
from benchmarks.metrics import expected_calibration_error, pr_curve, recall_at_precision
from benchmarks.risk_metrics import (
    PSYSUICIDE_TO_RISK,
    RiskDataError,
    class_metrics,
    gold_flag,
    load_psysuicide,
)

ROOT = Path(__file__).resolve().parents[2]

# Eight rows in the PsySUICIDE format (our own sentences). Lexicon predictions noted per row.
ROWS = [
    # suicidal, TP
    {"idx": 10, "text": "我真的不想活了", "labels": ["被动自杀意图"], "data_source": "social_media"},
    # suicidal, TP
    {"idx": 11, "text": "好想去死", "labels": ["主动自杀意图"], "data_source": "client_machine"},
    # suicidal, FN
    {"idx": 12, "text": "我很难受，不知道怎么办", "labels": ["自杀计划"], "data_source": "social_media"},
    # none
    {"idx": 13, "text": "今天跟室友吃火锅", "labels": ["与自杀/自伤/攻击行为无关"],
     "data_source": "client_counselor"},
    # violence, TP
    {"idx": 14, "text": "我想杀了他", "labels": ["用户攻击行为"], "data_source": "social_media"},
    # FP suicidal
    {"idx": 15, "text": "生不如死的一周考试", "labels": ["与自杀/自伤/攻击行为无关"],
     "data_source": "social_media"},
    # ambiguous: left out
    {"idx": 16, "text": "我朋友想自杀", "labels": ["关于自杀的探索"], "data_source": "social_media"},
    # synthetic
    {"idx": 17, "text": "我会自残", "labels": ["自伤行为"], "data_source": "synthetic"},
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


# ---- the mapping and the metrics ---------------------------------------------------------------
def test_mapping_covers_every_psysuicide_class_once() -> None:
    assert len(PSYSUICIDE_TO_RISK) == 11
    assert set(PSYSUICIDE_TO_RISK.values()) == {"suicidal", "self_harm", "violence", "none", "ambiguous"}
    assert PSYSUICIDE_TO_RISK["他人攻击行为"] == "none"  # aggression against the writer


@pytest.mark.parametrize(("labels", "flag"), [
    (["用户攻击行为", "自伤行为"], "self_harm"),        # most severe of two
    (["主动自杀意图", "他人攻击行为"], "suicidal"),
    (["关于自杀的探索"], "ambiguous"),
    (["关于自杀的探索", "被动自杀意图"], "suicidal"),   # a real flag beats ambiguous
    (["他人攻击行为"], "none"),
])
def test_gold_flag_takes_the_most_severe_label(labels: list[str], flag: str) -> None:
    assert gold_flag(labels) == flag


def test_unknown_class_names_the_row_and_the_table(tmp_path: Path) -> None:
    path = _write(tmp_path / "v.json", [{"idx": 1, "text": "x", "labels": ["自杀"], "data_source": "s"}])
    with pytest.raises(RiskDataError, match=r"row 0.*'自杀'.*PSYSUICIDE_TO_RISK"):
        load_psysuicide(path)


def test_class_metrics_by_hand() -> None:
    gold = ["suicidal", "suicidal", "suicidal", "none", "none", "violence", "ambiguous"]
    pred = ["suicidal", "suicidal", "none", "suicidal", "none", "none", "suicidal"]
    m = class_metrics(gold, pred)
    # ambiguous row dropped. suicidal: TP 2, FP 1 (a none row), FN 1 -> P 2/3, R 2/3, F1 2/3.
    assert m["suicidal"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3, "tp": 2,
                             "fp": 1, "fn": 1}
    # violence: support 1, never predicted -> precision None (nothing claimed), recall 0.
    assert (m["violence"]["precision"] is None and m["violence"]["recall"] == 0.0
            and m["violence"]["support"] == 1)
    # self_harm: no support, no predictions -> precision, recall and F1 None, not a silent zero.
    assert (m["self_harm"]["precision"] is None and m["self_harm"]["recall"] is None
            and m["self_harm"]["support"] == 0)
    assert m["self_harm"]["f1"] is None and m["violence"]["f1"] == 0.0  # missed: a real 0
    # none: TP 1 (row 5), FP 2 (rows 3 and 6), FN 1 (row 4) -> P 1/3, R 1/2.
    assert (m["none"]["precision"], m["none"]["recall"]) == (0.3333, 0.5)


def test_recall_at_precision_keeps_tied_scores_together() -> None:
    gold = [True, True, False, True, False, False]
    scores = [0.9, 0.8, 0.8, 0.6, 0.3, 0.1]
    # t=0.9: P 1/1, R 1/3. t=0.8 (two rows, one positive): P 2/3 < 0.8. t=0.6: P 3/4 < 0.8.
    assert recall_at_precision(gold, scores, 0.8) == {"recall": 0.3333, "precision": 1.0, "threshold": 0.9}
    # At 0.7 precision, t=0.6 gives P 0.75, R 1.0.
    assert recall_at_precision(gold, scores, 0.7) == {"recall": 1.0, "precision": 0.75, "threshold": 0.6}
    assert [round(p["precision"], 3) for p in pr_curve(gold, scores)] == [1.0, 0.667, 0.75, 0.6, 0.5]


def test_expected_calibration_error_by_hand() -> None:
    # Bin [0.9, 1.0]: P 0.9 and 1.0 (mean 0.95), both positive: |0.95 - 1| = 0.05, weight 2/4.
    # Bin [0.1, 0.2): P 0.1 twice, one positive: |0.1 - 0.5| = 0.4, weight 2/4. ECE 0.225.
    assert expected_calibration_error([True, True, True, False], [0.9, 1.0, 0.1, 0.1]) == 0.225
    assert expected_calibration_error([], []) is None
    with pytest.raises(ValueError, match="pair up"):
        expected_calibration_error([True], [0.5, 0.5])


# ---- the CLI -----------------------------------------------------------------------------------
def test_cli_writes_report_errors_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "valid.json", ROWS)
    out = tmp_path / "bench"
    assert risk.main(["--data", str(data), "--out", str(out)]) == 0
    report = json.loads((out / "risk.json").read_text(encoding="utf-8"))
    lex = report["lexicon"]
    # Non-synthetic, non-ambiguous rows: 10, 11, 12 suicidal; 13, 15 none; 14 violence.
    # suicidal: TP 2 (10, 11), FN 1 (12), FP 1 (15) -> P 2/3, R 2/3.
    assert lex["suicidal"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3,
                               "tp": 2, "fp": 1, "fn": 1}
    assert lex["violence"]["recall"] == 1.0 and lex["violence"]["support"] == 1
    assert lex["self_harm"]["support"] == 0
    # The one synthetic row is scored apart.
    assert report["synthetic"]["lexicon"]["self_harm"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0,
                                                          "support": 1, "tp": 1, "fp": 0, "fn": 0}
    assert report["meta"]["gold_non_synthetic"] == {"ambiguous": 1, "none": 2, "suicidal": 3, "violence": 1}
    assert set(report["lexicon_idx_halves"]) >= {"even_idx", "odd_idx"}
    assert "rules" in report and "model" not in report

    errors = [json.loads(line)
              for line in (out / "risk_lexicon_errors.jsonl").read_text("utf-8").splitlines()]
    by_idx = {e["idx"]: e for e in errors}
    assert set(by_idx) == {12, 15}
    assert by_idx[12]["kind"] == "false_negative" and by_idx[12]["text"] == ROWS[2]["text"]
    assert by_idx[15]["kind"] == "false_positive" and by_idx[15]["hits"][0]["match"] == "生不如死"

    png = (out / "risk_pr.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "lexicon: suicidal P=0.667 R=0.667 (n=3)" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "needle"), [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"rows": []}', "expected a JSON array"),
    ('[{"idx": 1, "labels": ["自杀计划"]}]', "row 0"),
])
def test_cli_bad_data_is_one_clear_line_and_exit_2(tmp_path: Path, content: str | None, needle: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "valid.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert risk.main(["--data", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and str(path) in err
    assert not (tmp_path / "out" / "risk.json").exists()


def test_cli_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write(tmp_path / "valid.json", ROWS)
    assert risk.main(["--data", str(data), "--out", str(tmp_path), "--model", str(tmp_path / "no.gguf")]) == 2
    assert "is not a file" in capsys.readouterr().err


# ---- with a model (a tiny random GGUF: the numbers are meaningless, the plumbing is real) -------
@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from testkit import gguf_factory

    return gguf_factory.write_model(tmp_path_factory.mktemp("model") / "tiny-f32.gguf", template="chatml")


@pytest.mark.slow
def test_cli_with_a_model_adds_model_entries_and_a_curve(tiny_gguf: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "valid.json", ROWS)
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.risk", "--data", str(data), "--out", str(out),
                           "--model", str(tiny_gguf)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "risk.json").read_text(encoding="utf-8"))
    for name in ("model", "model+lexicon"):
        assert set(report[name]) == {"suicidal", "self_harm", "violence", "none"}
        assert report[name]["suicidal"]["support"] == 3
    # The safety net only raises: model+lexicon finds at least the lexicon's true positives.
    assert report["model+lexicon"]["suicidal"]["tp"] >= report["lexicon"]["suicidal"]["tp"] == 2
    at = report["model_probabilities"]["non_synthetic"]["suicidal_recall_at_precision_0.8"]
    assert 0.0 <= at["model"]["recall"] <= 1.0
    # max(P(suicidal), lexicon) reaches at least the lexicon's recall at P >= 0.8 is not guaranteed
    # (the lexicon's own precision here is 2/3), but the figure must exist and be a probability.
    assert 0.0 <= at["model+lexicon"]["recall"] <= 1.0
    assert (out / "risk_pr.png").stat().st_size > 5000
