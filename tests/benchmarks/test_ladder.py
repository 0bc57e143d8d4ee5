"""The ladder compares every hop with the previous one and with the model as trained."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.ladder import REFERENCE_HOP, Hop, run

ROWS = [("我不想活了", "主动自杀意图"), ("今天考试好累", "与自杀/自伤/攻击行为无关"),
        ("想结束生命", "被动自杀意图"), ("室友很吵", "与自杀/自伤/攻击行为无关")]


def _answers(flags: list[str]):
    def score(rows):
        return [{"labels": {"depression_level": 0, "anxiety_level": 0, "risk_flag": f,
                            "student_distress_score": 0},
                 "probabilities": {"risk_flag": {"suicidal": 0.9 if f == "suicidal" else 0.1}}}
                for f, _ in zip(flags, rows, strict=True)]
    return score


def test_a_converted_hop_is_compared_with_the_pytorch_model(tmp_path: Path) -> None:
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"idx": i, "text": t, "labels": [c], "data_source": "social_media"}
                                for i, (t, c) in enumerate(ROWS)], ensure_ascii=False), "utf-8")
    for name in ("torch", "q4"):
        (tmp_path / name).write_text(name)
    hops = [Hop(REFERENCE_HOP, tmp_path / "torch", _answers(["suicidal", "none", "suicidal", "none"])),
            Hop("Q4_K_M GGUF", tmp_path / "q4", _answers(["suicidal", "none", "none", "none"]))]
    report = run(data, tmp_path / "out", hops, {})
    q4 = report["hops"]["Q4_K_M GGUF"]
    assert q4["agreement_with_pytorch"]["risk_flag"] == 0.75
    assert q4["agreement_with_pytorch"]["depression_level"] == 1.0
    assert "agreement_with_pytorch" not in report["hops"][REFERENCE_HOP]
    text = (tmp_path / "out" / "ladder.md").read_text("utf-8")
    assert f"Q4_K_M GGUF vs {REFERENCE_HOP}: depression 1.000, anxiety 1.000, risk 0.750" in text
    assert "suicidal recall (model) -0.500" in text
