"""The benchmark report: pytest-benchmark collection, figure records, plots, CLI errors, a quick run.

The quick end-to-end run builds its own random-weight GGUF (the SDK tests' factory) and a small
labeled set, so no model or data is downloaded; it runs bench_sdk.py for real, so it is marked
slow (about 20 s on 2 idle cores, up to 2 minutes on a busy machine).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from benchmarks import plots, report

ROOT = Path(__file__).resolve().parents[2]
FIGURE_KEYS = {"name", "value", "unit", "model", "prompt_tokens", "threads", "machine"}

# A benchmark file tagged as benchmarks/bench_sdk.py tags its cases: extra_info path, case, grammar.
FAKE_BENCH = '''
import time
import pytest

SLEEP = {"psyedge": 0.002, "json_schema": 0.012, "gbnf": 0.006}

@pytest.mark.parametrize("what", ["psyedge", "plain:json_schema", "plain:gbnf"])
def test_model(benchmark, what):
    path, _, grammar = what.partition(":")
    info = {"path": path, "case": "model e2e", "prompt_tokens": 104, "new_tokens": 30, "n_threads": 2}
    if grammar:
        info.update(grammar=grammar, case="model e2e vs " + grammar)
    benchmark.extra_info.update(info)
    benchmark.pedantic(time.sleep, args=(SLEEP[grammar or path],), rounds=3, iterations=1)

def test_prefill(benchmark):
    benchmark.extra_info.update({"path": "psyedge", "case": "model prefill only", "n_threads": 2})
    benchmark.pedantic(time.sleep, args=(0.004,), rounds=2, iterations=1)

@pytest.mark.slow
def test_slow_case_left_out_in_quick_mode(benchmark):
    benchmark(time.sleep, 0.001)
'''


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real pytest-benchmark JSON, written by `run_pytest_benchmark` on the fake file."""
    tmp = tmp_path_factory.mktemp("bench")
    path = tmp / "bench_fake.py"
    path.write_text(FAKE_BENCH, encoding="utf-8")
    return report.run_pytest_benchmark(path, report.MODES["quick"], tmp / "m.gguf", tmp / "raw" / "fake.json",
                                       {})


def test_run_pytest_benchmark_pairs_psyedge_and_plain(bench_json: dict[str, Any]) -> None:
    rows = {r["label"]: r for r in report.latency_rows(bench_json)}
    assert set(rows) == {"model e2e", "model prefill only"}  # the slow case did not run in quick mode
    e2e = rows["model e2e"]
    assert (e2e["prompt_tokens"], e2e["new_tokens"], e2e["threads"],
            e2e["model_case"]) == (104, 30, 2, "model")
    # sleep() never returns early, so these lower bounds hold even on a loaded machine.
    assert e2e["psyedge_ms"] >= 2.0 and e2e["plain_ms"] >= 12.0 and e2e["plain_gbnf_ms"] >= 6.0
    assert e2e["psyedge_rounds"] == 3 and e2e["plain_rounds"] == 3
    assert e2e["ratio"] == pytest.approx(e2e["plain_ms"] / e2e["psyedge_ms"])
    assert e2e["ratio_gbnf"] == pytest.approx(e2e["plain_gbnf_ms"] / e2e["psyedge_ms"])
    assert rows["model prefill only"]["psyedge_ms"] >= 4.0 and "ratio" not in rows["model prefill only"]


def test_sdk_json_figures_carry_the_cases_model_and_threads() -> None:
    sdk = {"cases": {"model": {"model": "/x/models/tiny/model-Q4_K_M.gguf", "threads": 2,
                               "prefix_tokens": 200,
                               "new_tokens": 100, "psyedge_assess_ms": 30.0, "prefill_only_ms": 20.0,
                               "psyedge_decode_calls": 4, "speedup_vs_json_schema": 3.5,
                               "plain_json_schema_schema_valid_rate": 0.9,
                               "session_by_turn": {"61": {"turn_tokens": 61, "reassess_ms": 14.0,
                                                          "turn_prefill_ms": 10.0,
                                                          "reassess_over_turn_prefill": 1.4,
                                                          "floor_over_turn_prefill": 1.3, "decode_calls": 1},
                                                   "23": {"turn_tokens": 29, "turn_prefill_ms": 5.0}}}}}
    figs = {f["name"]: f for f in report.sdk_figures(report.Context("other", 4, "m"), sdk)}
    tps = figs["latency.model.prefill_tokens_per_s"]
    assert tps["value"] == pytest.approx(100 / 20.0 * 1000) and tps["unit"] == "tokens/s"
    assert (tps["model"], tps["threads"], tps["prompt_tokens"]) == ("tiny/model-Q4_K_M.gguf", 2, 300)
    assert figs["latency.model.answer_decode_est"]["value"] == pytest.approx(10.0)
    session = figs["latency.model.session.turn_61tok.reassess_over_turn_prefill"]
    assert (session["value"], session["unit"], session["turn_tokens"]) == (1.4, "ratio", 61)
    assert figs["latency.model.session.turn_61tok.floor_over_turn_prefill"]["value"] == 1.3
    assert not any("turn_29tok" in n for n in figs)  # a size without its re-assessment is not reported
    assert figs["latency.model.e2e.ratio_plain_json_schema_over_psyedge"]["value"] == 3.5
    assert figs["latency.model.e2e.plain_json_schema.schema_validity"]["unit"] == "fraction"
    assert "latency.model.e2e.ratio_plain_gbnf_over_psyedge" not in figs  # not measured, not invented


def test_run_pytest_benchmark_reports_a_failing_file(tmp_path: Path) -> None:
    path = tmp_path / "bench_broken.py"
    path.write_text("def test_x(benchmark):\n    benchmark(lambda: 1 / 0)\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="bench_broken.py: pytest exited 1"):
        report.run_pytest_benchmark(path, report.MODES["quick"], tmp_path / "m.gguf", tmp_path / "x.json", {})


def _summary(bench_json: dict[str, Any]) -> dict[str, Any]:
    """A summary as `collect` builds it, with hand-made accuracy and memory parts."""
    from benchmarks import accuracy as acc
    from benchmarks import machine

    truth = ["none", "suicidal", "none", "violence"]
    pred = ["none", "none", "suicidal", "violence"]
    risk = {"lexicon_off": {"per_class": [s.to_dict() for s in acc.per_class(truth, pred,
                                                                             list(acc.allowed_values("risk_flag")))],
                            "any_risk_recall": 0.5, "any_risk_precision": 0.5,
                            "labels": list(acc.allowed_values("risk_flag")),
                            "confusion": acc.confusion_matrix(truth, pred,
                                                              list(acc.allowed_values("risk_flag")))}}
    levels = [0, 1, 2, 3]
    fields: dict[str, Any] = {f: {"accuracy": 0.5, "macro_f1": 0.4, "qwk": 0.3, "labels": levels,
                                  "confusion": acc.confusion_matrix([0, 1, 2, 3], [0, 1, 3, 3], levels)}
                              for f in acc.LEVEL_FIELDS}
    fields["student_distress_score"] = {"accuracy": 0.25, "mae": 1.25, "within_1": 0.75, "qwk": 0.6,
                                        "labels": list(range(10)),
                                        "confusion": acc.confusion_matrix([1, 5, 9, 0], [2, 5, 6, 0],
                                                                          list(range(10)))}
    fields["risk_flag"] = risk
    pr = acc.pr_curves(truth, [{"none": 0.9}, {"none": 0.3, "suicidal": 0.6}, {"none": 0.5, "suicidal": 0.4},
                               {"none": 0.2, "suicidal": 0.1}])
    return {
        "mode": "quick", "started": "2026-01-01T00:00:00Z",
        "model": {"name": "tiny-Q4_K_M.gguf", "path": "models/tiny/model-Q4_K_M.gguf",
                  "file_bytes": 3 * 2**20},
        "machine": machine.describe(threads=2),
        "parts": {
            "accuracy": {"n": 4, "scored": 4, "schema_validity": 1.0, "fields": fields, "pr_curves": pr,
                         "prompt_tokens": {"mean": 250.0}, "assess_ms": {"mean": 12.0}, "load_s": 0.2,
                         "plain_path": {"n": 8, "schema_validity": 0.75, "agreement_with_psyedge": 0.5,
                                        "load_s": 0.1, "max_tokens": 96, "invalid_examples": []},
                         "ledger": {"label_rows": 4, "invalid_label": 0, "no_conversation": 0}},
            "memory": {"file_bytes": 3 * 2**20, "peak_rss_bytes": 90 * 2**20, "peak_over_file": 30.0,
                       "assessed": 20, "threads": 2, "prompt_tokens": [200, 300],
                       "stages": {"import": {"rss_bytes": 45 * 2**20}, "load": {"rss_bytes": 80 * 2**20}}},
            "benchmarks": {"bench_sdk.py": {"kind": "latency", "rows": report.latency_rows(bench_json)},
                           "bench_data.py": {"kind": "stage", "rows": [
                               {"label": "make data", "median_s": 42.0, "min_s": 41.0, "rounds": 1,
                                "extra": {"records": 1282, "peak_rss_mib": 80.5}}]}},
        },
    }


def test_every_figure_says_unit_model_prompt_threads_machine(bench_json: dict[str, Any]) -> None:
    summary = _summary(bench_json)
    ctx = report.Context("tiny-Q4_K_M.gguf", 2, "AMD EPYC (2 cores)")
    figs = report.figures(summary, ctx)
    by_name = {f["name"]: f for f in figs}
    for f in figs:
        assert set(f) >= FIGURE_KEYS, f
        assert f["unit"] and f["machine"] == "AMD EPYC (2 cores)"
    assert by_name["latency.model e2e.ratio_plain_over_psyedge"]["prompt_tokens"] == 104
    assert by_name["latency.model e2e.ratio_plain_gbnf_over_psyedge"]["unit"] == "ratio"
    assert by_name["accuracy.depression_level.qwk"]["value"] == 0.3
    assert by_name["accuracy.depression_level.qwk"]["prompt_tokens"] == 250.0
    assert by_name["memory.peak_rss"]["value"] == 90 * 2**20 and by_name["memory.peak_rss"]["unit"] == "bytes"
    assert by_name["memory.peak_rss"]["prompt_tokens"] == 250.0  # mean of the 20 assessed prompts
    assert by_name["memory.peak_over_import_baseline"]["value"] == 45 * 2**20
    load = by_name["latency.model load.ratio_plain_over_psyedge"]
    assert (load["value"] == pytest.approx(0.5) and load["model"] == "tiny-Q4_K_M.gguf"
            and load["threads"] == 2)
    assert by_name["accuracy.plain.schema_validity"]["value"] == 0.75
    data = by_name["bench_data.make data"]
    assert (data["value"], data["unit"], data["model"],
            data["prompt_tokens"]) == (42.0, "s (median)", None, None)
    assert data["details"] == {"records": 1282, "peak_rss_mib": 80.5}
    rss = by_name["bench_data.make data.peak_rss_mib"]
    assert (rss["value"], rss["unit"], rss["threads"]) == (80.5, "MiB", None)


def test_plots_open_and_say_what_they_show(bench_json: dict[str, Any], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    texts: dict[str, str] = {}
    real_save = plots.save_figure

    def spy(fig: Any, path: Path) -> Path:
        words = [fig._suptitle.get_text() if fig._suptitle else ""]
        for ax in fig.axes:
            words += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts[path.name] = "\n".join(words)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save_figure", spy)
    summary = _summary(bench_json)
    files = report.write_plots(summary, tmp_path)
    assert set(files) == {"latency", "memory", "pr_curve", "confusion_depression_level",
                          "confusion_anxiety_level",
                          "confusion_student_distress_score", "confusion_risk_flag"}
    for name in files.values():
        with Image.open(tmp_path / name) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
        assert "tiny-Q4_K_M.gguf" in texts[name], name
    assert "ms" in texts["latency.png"] and "psyedge vs plain" in texts["latency.png"]
    assert "MiB" in texts["memory.png"]
    assert "recall" in texts["pr_curve.png"] and "precision" in texts["pr_curve.png"]
    assert ("reference label" in texts["confusion_risk_flag.png"]
            and "safety net off" in texts["confusion_risk_flag.png"])
    assert "conversations (count)" in texts["confusion_depression_level.png"]


def test_markdown_has_every_table(bench_json: dict[str, Any]) -> None:
    summary = _summary(bench_json)
    md = report.render_markdown(summary, {"latency": "latency.png"})
    assert "| model e2e | n/a | 104 | 30 | 2 |" in md
    assert "| depression_level | 0.500 | 0.400 | 0.300 |" in md
    assert "| student_distress_score | 1.250 | 0.750 |" in md
    assert "| lexicon off | suicidal | 0.000 | 0.000 | 0.000 | 1 | 1 |" in md
    assert "| lexicon off | self_harm | n/a | n/a | n/a | 0 | 0 |" in md  # undefined, not a made-up 0
    assert "`bench_data.py`:" in md and "| make data | 42.000 | 1 |" in md and "1282" in md
    assert "![latency](latency.png)" in md
    assert "| model load (warm page cache) | tiny-Q4_K_M.gguf |" in md
    assert "schema validity 0.750, same labels as psyedge (net off) on 0.500" in md


def test_split_prefers_the_held_out_validation_set(tmp_path: Path) -> None:
    labels = _tiny_data(tmp_path / "data", n=6)
    opts = report.Options(report.MODES["quick"], tmp_path / "m.gguf", labels, tmp_path / "u.jsonl", tmp_path,
                          None, 0, None, report.PARTS)
    assert report.resolve_split(opts)[:2] == ("all", None)  # no SFT set yet: everything, said so
    assert "may have seen them" in report.resolve_split(opts)[2]
    sft = tmp_path / "data" / "datasets" / "sft_student_mental.jsonl"
    sft.parent.mkdir(parents=True)
    sft.write_text("".join(json.dumps({"id": f"t{i}",
                                       "split": "validation" if i in (1, 4) else "train"}) + "\n"
                           for i in range(6)), encoding="utf-8")
    name, ids, note = report.resolve_split(opts)
    assert (name, ids) == ("validation", {"t1", "t4"}) and "held out" in note
    opts.split = "train"
    assert report.resolve_split(opts)[1] == {"t0", "t2", "t3", "t5"}
    sft.write_text(json.dumps({"id": "t0", "split": "train"}) + "\n", encoding="utf-8")
    opts.split = "validation"
    with pytest.raises(report.acc.EvalDataError, match="has no 'validation' records"):
        report.resolve_split(opts)


@pytest.mark.parametrize("argv_tail, message", [
    (["--model", "nope.gguf"], "--model nope.gguf does not exist"),
    (["--labels", "nope.jsonl"], "--labels nope.jsonl does not exist"),
    ([], "is not a readable GGUF"),  # the 4-byte stub written below has a magic but no header
])
def test_cli_user_errors_exit_2_without_traceback(tmp_path: Path, argv_tail: list[str], message: str) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("", encoding="utf-8")
    args = {"--model": str(model), "--labels": str(labels)}
    args.update(dict(zip(argv_tail[::2], argv_tail[1::2], strict=True)))
    cmd = [sys.executable, "-m", "benchmarks.report", "--mode", "quick", "--out", str(tmp_path / "out")]
    for k, v in args.items():
        cmd += [k, v]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# ---- the quick run end to end on a tiny GGUF ----------------------------------------------------

def _tiny_data(data: Path, n: int = 24) -> Path:
    """A labeled set in the pipeline's formats: unified_min.jsonl + labeling/results/dataset.jsonl."""
    rng = random.Random(3)
    user = ["老师，我最近压力很大，晚上睡不着觉。", "考试成绩不好，爸妈会失望。", "我想死了，不想活了。",
            "我昨天割腕了。", "我想杀了他。", "周末和朋友去跑步，感觉开心一点。"]
    flags = {2: "suicidal", 3: "self_harm", 4: "violence"}
    conv_rows, label_rows = [], []
    for i in range(n):
        j = rng.randrange(len(user))
        turns = [{"role": "user", "text": user[j]},
                 {"role": "assistant", "text": "听起来你很难受，能说说吗？"}]
        conv_rows.append({"id": f"t{i}", "conversation": turns})
        label_rows.append({"id": f"t{i}", "depression_level": rng.randint(0, 3),
                           "anxiety_level": rng.randint(0, 3),
                           "risk_flag": flags.get(j, "none"), "student_distress_score": rng.randint(0, 9)})
    for path, rows in ((data / "processed" / "unified_min.jsonl", conv_rows),
                       (data / "labeling" / "results" / "dataset.jsonl", label_rows)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return data / "labeling" / "results" / "dataset.jsonl"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "sdk" / "python" / "tests"))
    try:
        import gguf_factory
    finally:
        sys.path.pop(0)
    tmp = tmp_path_factory.mktemp("model")
    f32 = gguf_factory.write_model(tmp / "tiny-f32.gguf", template="chatml")
    return gguf_factory.quantize(f32, tmp / "tiny-Q4_K_M.gguf")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # llama.cpp's log callback
def test_quick_mode_end_to_end(tiny_gguf: Path, tmp_path: Path) -> None:
    labels = _tiny_data(tmp_path / "data")
    out = tmp_path / "bench"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.report", "--mode", "quick", "--model",
                           str(tiny_gguf),
                           "--labels", str(labels), "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Quick mode is ~15 s on an idle 2-core machine; a shared one (load 6-8) stretches it to ~2 min.
    # The bound catches a full-mode case leaking into quick mode (make data alone is 3 x 5 s).
    assert wall < 180, f"quick mode took {wall:.0f} s; make demo needs it well under a minute"
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["mode"] == "quick"
            and summary["model"]["name"] == f"{tiny_gguf.parent.name}/tiny-Q4_K_M.gguf")
    assert summary["model"]["gguf"]["psyedge"]["psyedge.template"] == "chatml"
    assert summary["errors"] == []
    names = {f["name"] for f in summary["figures"]}
    assert {"accuracy.schema_validity", "accuracy.depression_level.qwk",
            "accuracy.student_distress_score.mae",
            "accuracy.risk.lexicon_off.suicidal_recall", "accuracy.risk.lexicon_on.suicidal_recall",
            "memory.peak_rss", "memory.gguf_file"} <= names
    for f in summary["figures"]:
        assert set(f) >= FIGURE_KEYS, f
        assert f["machine"] and f["unit"]
    acc = summary["parts"]["accuracy"]
    assert acc["scored"] == 20 and acc["schema_validity"] == 1.0  # quick mode: 20 conversations
    assert acc["prompt_tokens"]["mean"] > 50
    plain = acc["plain_path"]  # the grammar path answered the first 8 prompts; its JSON is parsed
    assert plain["n"] == 8 and 0.0 <= plain["schema_validity"] <= 1.0
    # The lexicon sees "我想死了", "割腕", "杀了他": with the net on, no risk conversation is missed.
    risk_on = acc["fields"]["risk_flag"]["lexicon_on"]
    assert risk_on["any_risk_recall"] == 1.0
    assert next(c for c in risk_on["per_class"] if c["label"] == "suicidal")["recall"] == 1.0
    mem = summary["parts"]["memory"]
    assert mem["assessed"] == 20 and mem["file_bytes"] == tiny_gguf.stat().st_size
    assert (mem["peak_rss_bytes"] >= mem["stages"]["load"]["rss_bytes"]
            > mem["stages"]["import"]["rss_bytes"] > 0)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Accuracy" in md and "## Memory" in md
    for name in summary["plots"].values():
        with Image.open(out / name) as img:
            img.verify()
    assert "psyedge bench (quick)" in proc.stdout
    # bench_sdk.py ran on this model (quick: test_model only) and its sdk.json was read back.
    sdk = summary["parts"]["benchmarks"]["bench_sdk.py"]
    assert set(sdk["sdk"]["cases"]) == {"model-100tok", "model-500tok", "model-1500tok"}
    for size in (100, 500, 1500):
        e2e = next(r for r in sdk["rows"] if r["label"] == f"model-{size}tok e2e")
        assert e2e["psyedge_ms"] > 0 and e2e["plain_ms"] > 0
        assert e2e["ratio"] == pytest.approx(e2e["plain_ms"] / e2e["psyedge_ms"])
        assert e2e["new_tokens"] >= size
        assert f"latency.model-{size}tok.prefill_tokens_per_s" in names
    assert summary["parts"]["benchmarks"]["bench_data.py"]["skipped"].startswith("runs in full mode only")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # llama.cpp's log callback
def test_a_failed_part_exits_1_and_keeps_the_make_target_absent(tiny_gguf: Path, tmp_path: Path) -> None:
    labels = _tiny_data(tmp_path / "data", n=3)
    unified = tmp_path / "data" / "processed" / "unified_min.jsonl"
    unified.write_text(json.dumps({"id": "other", "conversation": [{"role": "user", "text": "你好"}]}) + "\n",
                       encoding="utf-8")  # no label id has a conversation
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.report", "--mode", "quick", "--model",
                           str(tiny_gguf), "--labels", str(labels), "--out", str(out), "--only", "accuracy"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "accuracy: no labeled conversation to evaluate" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "summary.json").exists()  # make must not think the bench is done
    failed = json.loads((out / "summary.failed.json").read_text(encoding="utf-8"))
    assert failed["errors"] and "no_conversation': 3" in failed["parts"]["accuracy"]["error"]
    assert "## Failures" in (out / "report.md").read_text(encoding="utf-8")
