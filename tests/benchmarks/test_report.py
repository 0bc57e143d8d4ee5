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

from benchmarks import figures, markdown, plots, report, sdk_latency

ROOT = Path(__file__).resolve().parents[2]
FIGURE_KEYS = {"name", "value", "unit", "model", "prompt_tokens", "threads", "machine"}

# A stage benchmark file as bench_data.py writes its cases: a median and numbers in extra_info.
FAKE_BENCH = '''
import time
import pytest

def test_make_data(benchmark):
    benchmark.extra_info.update({"records": 1282, "peak_rss_mib": 80.5})
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
    return report.run_pytest_benchmark(path, report.MODES["quick"], tmp / "raw" / "fake.json")


def test_run_pytest_benchmark_reads_stage_rows(bench_json: dict[str, Any]) -> None:
    rows = {r["label"]: r for r in report.stage_rows(bench_json)}
    assert set(rows) == {"test_make_data"}  # the slow case did not run in quick mode
    row = rows["test_make_data"]
    assert row["median_s"] >= 0.004 and row["rounds"] == 2  # sleep() never returns early
    assert row["extra"] == {"records": 1282, "peak_rss_mib": 80.5}


#: A record as benchmarks.sdk_latency fills it (numbers made up, ratios consistent).
SDK_CASES: dict[str, Any] = {"model": {
    "model": "/x/models/tiny/model-Q4_K_M.gguf", "threads": 2, "prefix_tokens": 200, "new_tokens": 100,
    "psyedge_assess_ms": 30.0, "prefill_only_ms": 20.0, "psyedge_decode_calls": 1, "total_over_prefill": 1.5,
    "peers_rounds": 5, "peers_psyedge_ms": 31.0, "psyedge_worst_ms": 62.0, "session_reassess_ms": 14.0,
    "peer_json_schema": {"label": "x", "ms": 310.0, "ratio": 10.0, "min_round_ratio": 9.0, "validity": 0.8,
                         "setup_ms": 1.0, "example_output": "{}"},
    "peer_outlines": {"label": "y", "ms": 620.0, "ratio": 20.0, "min_round_ratio": 18.0, "validity": 1.0,
                      "setup_ms": 900.0, "example_output": "{}"},
    "session_by_turn": {"61": {"turn_tokens": 61, "reassess_ms": 14.0, "turn_ms": 10.0,
                               "reassess_over_turn_prefill": 1.4, "floor_over_turn_prefill": 1.3,
                               "decode_calls": 1},
                        "23": {"turn_tokens": 29, "turn_ms": 5.0}}}}
sdk_latency.summarise(SDK_CASES["model"])  # the derived ratios, as `measure` adds them


def test_sdk_figures_carry_the_cases_model_and_threads() -> None:
    figs = {f["name"]: f for f in figures.sdk_figures(figures.Context("other", 4, "m"), SDK_CASES)}
    tps = figs["latency.model.prefill_tokens_per_s"]
    assert tps["value"] == pytest.approx(100 / 20.0 * 1000) and tps["unit"] == "tokens/s"
    assert (tps["model"], tps["threads"], tps["prompt_tokens"]) == ("tiny/model-Q4_K_M.gguf", 2, 300)
    assert figs["latency.model.answer_decode_est"]["value"] == pytest.approx(10.0)
    session = figs["latency.model.session.turn_61tok.reassess_over_turn_prefill"]
    assert (session["value"], session["unit"], session["turn_tokens"]) == (1.4, "ratio", 61)
    assert figs["latency.model.session.turn_61tok.floor_over_turn_prefill"]["value"] == 1.3
    assert not any("turn_29tok" in n for n in figs)  # a size without its re-assessment is not reported
    peer = figs["latency.model.e2e.peer.json_schema.ratio_over_psyedge"]
    assert (peer["value"], peer["unit"], peer["min_round_ratio"], peer["rounds"]) == (10.0, "ratio", 9.0, 5)
    assert figs["latency.model.e2e.peer.outlines.schema_validity"]["unit"] == "fraction"
    ceiling = figs["latency.model.e2e.peer.outlines.ratio_ceiling"]  # the peer over the prefill floor
    assert (ceiling["value"], ceiling["unit"]) == (pytest.approx(620.0 / 20.0), "ratio")
    assert figs["latency.model.e2e.peer.outlines"]["unit"] == "ms (median)"
    assert "latency.model.e2e.peer.gbnf" not in figs  # not measured, not invented
    # The figures the version-1 report had under other names (figures.py's docstring lists them).
    worst = figs["latency.model.e2e.every_guess_wrong.peer.json_schema.ratio_over_psyedge"]
    assert (worst["value"], worst["unit"]) == (pytest.approx(5.0), "ratio")
    assert figs["latency.model.session.reassess"]["unit"] == "ms (median)"
    assert figs["latency.model.session.turn_61tok.reassess"]["value"] == 14.0
    assert figs["latency.model.session.turn_61tok.turn"]["unit"] == "ms (median)"


def test_a_figure_name_outside_the_table_is_an_error() -> None:
    assert figures.unit_of("bench_data.make data.peak_rss_mib") == "MiB"
    assert figures.unit_of("latency.deepseek-1.5b-twin.e2e.peer.gbnf") == "ms (median)"
    with pytest.raises(KeyError, match="not in benchmarks.figures.UNITS"):
        figures.unit_of("latency.model.something_new")


def test_run_pytest_benchmark_reports_a_failing_file(tmp_path: Path) -> None:
    path = tmp_path / "bench_broken.py"
    path.write_text("def test_x(benchmark):\n    benchmark(lambda: 1 / 0)\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="bench_broken.py: pytest exited 1"):
        report.run_pytest_benchmark(path, report.MODES["quick"], tmp_path / "x.json")


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
            "latency": {"cases": SDK_CASES},
            "benchmarks": {"bench_data.py": {"kind": "stage", "rows": [
                               {"label": "make data", "median_s": 42.0, "min_s": 41.0, "rounds": 1,
                                "extra": {"records": 1282, "peak_rss_mib": 80.5}}]}},
        },
    }


def test_every_figure_says_unit_model_prompt_threads_machine(bench_json: dict[str, Any]) -> None:
    summary = _summary(bench_json)
    ctx = figures.Context("tiny-Q4_K_M.gguf", 2, "AMD EPYC (2 cores)")
    figs = figures.figures(summary, ctx)
    by_name = {f["name"]: f for f in figs}
    for f in figs:
        assert set(f) >= FIGURE_KEYS, f
        assert f["unit"] and f["machine"] == "AMD EPYC (2 cores)"
    assert by_name["latency.model.e2e.peer.json_schema.ratio_over_psyedge"]["prompt_tokens"] == 300
    assert by_name["latency.model.e2e.psyedge"]["unit"] == "ms (median)"
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
    files = markdown.write_plots(summary, tmp_path)
    assert set(files) == {"latency", "memory", "pr_curve", "confusion_depression_level",
                          "confusion_anxiety_level",
                          "confusion_student_distress_score", "confusion_risk_flag"}
    for name in files.values():
        with Image.open(tmp_path / name) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
        assert "tiny-Q4_K_M.gguf" in texts[name], name
    assert "ms" in texts["latency.png"] and "psyedge vs its peers" in texts["latency.png"]
    assert "MiB" in texts["memory.png"]
    assert "recall" in texts["pr_curve.png"] and "precision" in texts["pr_curve.png"]
    assert ("reference label" in texts["confusion_risk_flag.png"]
            and "safety net off" in texts["confusion_risk_flag.png"])
    assert "conversations (count)" in texts["confusion_depression_level.png"]


def test_markdown_has_every_table(bench_json: dict[str, Any]) -> None:
    summary = _summary(bench_json)
    md = markdown.render_markdown(summary, {"latency": "latency.png"})
    # Only the peers measured get a column: json_schema and outlines here.
    assert ("| model | tiny/model-Q4_K_M.gguf | 300 | 2 | 31.000 | 0.80 / 310.0 / 10.00x (<= 15.50x) "
            "| 1.00 / 620.0 / 20.00x (<= 31.00x) |") in md
    assert "| depression_level | 0.500 | 0.400 | 0.300 |" in md
    assert "| student_distress_score | 1.250 | 0.750 |" in md
    assert "| lexicon off | suicidal | 0.000 | 0.000 | 0.000 | 1 | 1 |" in md
    assert "| lexicon off | self_harm | n/a | n/a | n/a | 0 | 0 |" in md  # undefined, not a made-up 0
    assert "`bench_data.py`:" in md and "| make data | 42.000 | 1 |" in md and "1282" in md
    assert "![latency](latency.png)" in md
    assert "Model load (warm page cache): psyedge `Screener()` 200.0 ms" in md
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
    from testkit import gguf_factory

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
                           str(tiny_gguf), "--labels", str(labels), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Quick mode is ~15 s on an idle 2-core machine; a shared one (load 6-8) stretches it to ~2 min.
    # The bound catches a full-mode case leaking into quick mode (make data alone is 3 x 5 s).
    # The peers (four decoders generating every token) add about a minute on a busy machine.
    assert wall < 600, f"quick mode took {wall:.0f} s; make demo needs it well under a minute"
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
    # The SDK latency ran in-process on this model at the three prompt sizes, peers included.
    cases = summary["parts"]["latency"]["cases"]
    assert set(cases) == {"model-100tok", "model-500tok", "model-1500tok"}
    for size in (100, 500, 1500):
        rec = cases[f"model-{size}tok"]
        assert rec["new_tokens"] >= size and rec["psyedge_assess_ms"] > 0
        for peer in ("json_schema", "gbnf", "chat_json", "outlines") if size == 100 else ():
            assert rec[f"peer_{peer}"]["ms"] > 0 and 0.0 <= rec[f"peer_{peer}"]["validity"] <= 1.0
            assert f"latency.model-{size}tok.e2e.peer.{peer}.ratio_over_psyedge" in names
        assert f"latency.model-{size}tok.prefill_tokens_per_s" in names
    assert "## Latency: psyedge and its peers" in md
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
