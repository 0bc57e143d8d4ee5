"""The ladder compares every hop with the previous one and with the model as trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ladder import REFERENCE_HOP, Hop, run, write_cases

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


def test_the_android_hop_agrees_with_the_sdk_on_its_own_file(tmp_path: Path) -> None:
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"idx": i, "text": t, "labels": [c], "data_source": "social_media"}
                                for i, (t, c) in enumerate(ROWS)], ensure_ascii=False), "utf-8")
    for name in ("torch", "q8", "q4", "driver"):
        (tmp_path / name).write_text(name)
    q8 = _answers(["suicidal", "none", "suicidal", "none"])
    hops = [Hop(REFERENCE_HOP, tmp_path / "torch", q8), Hop("Q8_0 GGUF", tmp_path / "q8", q8),
            Hop("Q4_K_M GGUF", tmp_path / "q4", _answers(["none"] * 4)),
            Hop("Android engine", tmp_path / "driver", q8, previous="Q8_0 GGUF")]
    report = run(data, tmp_path / "out", hops, {})
    android = report["hops"]["Android engine"]
    # Equal to the Q8_0 file it ran, although the Q4_K_M hop came just before it.
    assert android["agreement_with_previous"]["risk_flag"] == 1.0
    assert report["hops"]["Q4_K_M GGUF"]["agreement_with_previous"]["risk_flag"] == 0.5


def test_quant_hops_come_from_type_path_pairs(tmp_path: Path) -> None:
    import argparse

    import pytest

    from benchmarks.ladder import build_hops, parse_quant

    for name in ("q4.gguf", "q8.gguf", "driver"):
        (tmp_path / name).write_text(name)
    args = argparse.Namespace(base_gguf=None, merged=None, f16=None, template="raw", threads=2,
                              quant=[f"Q4_K_M={tmp_path / 'q4.gguf'}", f"Q8_0={tmp_path / 'q8.gguf'}"],
                              driver=tmp_path / "driver", android_quant="Q8_0", adapter=None)
    hops, absent = build_hops(args)
    assert [h.name for h in hops] == ["Q4_K_M GGUF", "Q8_0 GGUF", "Android engine"]
    assert hops[-1].previous == "Q8_0 GGUF" and "base zero-shot" in absent
    # The driver's answers depend on the file it runs: a cache keyed on the driver alone would
    # serve one quant type's answers for another's.
    assert hops[-1].also_reads == (tmp_path / "q8.gguf",)
    args.android_quant = "Q5_K_M"
    assert "no such --quant hop" in build_hops(args)[1]["Android engine"]
    with pytest.raises(SystemExit, match="expected TYPE=PATH"):
        parse_quant("models/x.gguf")


def test_the_adapter_hop_runs_on_the_base_and_is_held_to_pytorch(tmp_path: Path) -> None:
    import argparse

    from benchmarks.ladder import ADAPTER_HOP, build_hops

    for name in ("base.gguf", "merged", "q8.gguf", "adapter.gguf", "driver"):
        (tmp_path / name).write_text(name)
    args = argparse.Namespace(base_gguf=tmp_path / "base.gguf", merged=tmp_path / "merged", f16=None,
                              template="raw", threads=2, quant=[f"Q8_0={tmp_path / 'q8.gguf'}"],
                              driver=tmp_path / "driver", android_quant="lora",
                              adapter=tmp_path / "adapter.gguf")
    hops, absent = build_hops(args)
    by_name = {h.name: h for h in hops}
    assert [h.name for h in hops] == ["base zero-shot", REFERENCE_HOP, "Q8_0 GGUF", ADAPTER_HOP,
                                      "Android engine"]
    # Compared with the model as trained, not with the Q8_0 file before it; cached on both files.
    assert by_name[ADAPTER_HOP].previous == REFERENCE_HOP
    assert by_name[ADAPTER_HOP].also_reads == (tmp_path / "base.gguf",)
    android = by_name["Android engine"]
    assert android.previous == ADAPTER_HOP
    assert android.also_reads == (tmp_path / "base.gguf", tmp_path / "adapter.gguf")
    args.base_gguf = None
    hops, absent = build_hops(args)
    assert "needs --base-gguf" in absent[ADAPTER_HOP]
    assert "no adapter hop" in absent["Android engine"]


def test_a_hop_is_rescored_when_any_input_changes(tmp_path: Path) -> None:
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"idx": i, "text": t, "labels": [c], "data_source": "social_media"}
                                for i, (t, c) in enumerate(ROWS)], ensure_ascii=False), "utf-8")
    (tmp_path / "driver").write_text("driver")
    gguf = tmp_path / "model.gguf"
    gguf.write_text("one")
    calls = []

    def scorer(rows):
        calls.append(len(rows))
        return _answers(["none"] * 4)(rows)

    hop = Hop("Android engine", tmp_path / "driver", scorer, also_reads=(gguf,))
    run(data, tmp_path / "out", [hop], {})
    run(data, tmp_path / "out", [hop], {})
    assert calls == [4]  # the second run reused the cache
    gguf.write_text("two")
    run(data, tmp_path / "out", [hop], {})
    assert calls == [4, 4]


def test_the_android_hop_gets_its_cases_from_the_android_tool(tmp_path: Path) -> None:
    """`write_cases` runs mobile/android/tools/arm_cases.py as the ARM test does: one case per
    row, each turn split into the transcript line's head, text and tail, the plan beside them."""
    from testkit import gguf_factory

    model = gguf_factory.write_model(tmp_path / "tiny.gguf", template="raw")
    rows = [{"id": str(i), "conversation": [{"role": "user", "text": t}]} for i, (t, _) in enumerate(ROWS)]
    spec = {"path": str(model), "template": "raw", "n_ctx": 512, "threads": 1}
    write_cases(spec, rows, tmp_path / "cases.json")
    doc = json.loads((tmp_path / "cases.json").read_text("utf-8"))
    assert [c["id"] for c in doc["cases"]] == ["0", "1", "2", "3"]
    assert [c["lines"][0][1] for c in doc["cases"]] == [t for t, _ in ROWS]
    assert doc["config"]["n_ctx"] == 512 and doc["plan"]["fields"]
    bad = dict(spec, template="no-such-template")
    with pytest.raises(RuntimeError, match="arm_cases.py failed"):
        write_cases(bad, rows, tmp_path / "bad.json")
