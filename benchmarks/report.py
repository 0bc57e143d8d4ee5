"""`make bench`: run every benchmark on one GGUF and write summary.json, report.md and PNG plots.

    python -m benchmarks.report --mode quick|full --model M.gguf \\
        --labels data/labeling/results/dataset.jsonl --out reports/bench

What it does, in order (each part is recorded even when another fails):
1. machine: CPU, cores, RAM, llama.cpp build, threads (`benchmarks.machine`);
2. accuracy: the labeled JSONL joined by id with `unified_min.jsonl` (the SFT validation split
   when there is one), assessed once by `psyedge.Screener`, scored with the lexicon safety net
   off and on; the plain llama-cpp-python path answers the same prompts for its schema-validity
   rate; model load time of both (`benchmarks.accuracy`);
3. memory: peak RSS of a fresh process loading the model and assessing 20 conversations
   (`benchmarks.memory`);
4. latency, in this process (`benchmarks.sdk_latency`): psyedge against its peers
   (`benchmarks.peers`, interleaved round by round), prefill-only and session re-assessment, on
   the model under test at three prompt sizes; full mode adds the tiny reference model, the real
   Gemma-3-270M Q4_K_M and the 1.5B shape twin (`benchmarks.models`);
5. data-stage cost (full mode): pytest-benchmark on `bench_data.py`, `bench_label.py` and
   `bench_train.py`, each writing `--benchmark-json` under `<out>/raw/`.

The figures and their units are `benchmarks.figures`; report.md and the table on stdout are
`benchmarks.markdown`.

Every figure in `summary.json` carries its unit, model, prompt length (tokens; null where no
prompt is involved, e.g. `make data` wall time), thread count and machine, so numbers from two
runs can be compared or refused. `summary.json` (the make target) is written only when no part
failed; otherwise `summary.failed.json` holds what was measured and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import accuracy as acc
from benchmarks import machine as mach
from benchmarks import metrics, models, sdk_latency
from benchmarks.figures import Context, figures, model_label
from benchmarks.markdown import print_table, render_markdown, write_plots
from benchmarks.memory import MemoryBenchError, measure, open_screener
from pipeline.io import atomic_write_json, atomic_write_text
from psyedge.errors import ModelError, PsyedgeError
from psyedge.gguf_info import read_info

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_VERSION = 2  # 2: SDK figures measured in-process, peers side by side (benchmarks.figures)
#: Stage benchmark files this report runs when present (other modules own them), in report
#: order, and the modes that run each: `make data` on the real data is ~10 s a round (3 rounds),
#: the labeling run is a 20 s rate-limited run and the training-step cases start five processes
#: (one with emulated bf16, seconds a step), so these are full only.
BENCH_FILES: dict[str, tuple[str, ...]] = {
    "bench_data.py": ("full",),
    "bench_label.py": ("full",),
    "bench_train.py": ("full",),
}
#: Extra pytest options per mode: quick leaves out the cases their authors marked slow.
MODE_MARKERS: dict[str, tuple[str, ...]] = {"quick": ("-m", "not slow"), "full": ()}


@dataclass(frozen=True)
class Mode:
    """What quick and full mean. Quick must finish in seconds on the demo's tiny model."""

    name: str
    eval_limit: int | None  # labeled conversations to assess (None = all)
    memory_conversations: int
    plain_limit: int | None  # conversations the plain grammar path answers (it generates ~40-96 tokens each)
    sdk_rounds: int  # timed rounds of each SDK latency measure (after one warm-up)
    references: bool  # also the tiny reference model, Gemma-3-270M and the 1.5B shape twin
    pytest_args: tuple[str, ...]
    pytest_timeout_s: float


#: pytest-benchmark options reach the stage files' `benchmark(...)` cases. The timeouts are
#: safety nets for the stage files (minutes on the real data).
MODES: dict[str, Mode] = {
    # Few rounds, no calibration loop: a smoke measurement that still exercises every path.
    "quick": Mode("quick", 20, 20, 8, 3, False, ("--benchmark-min-rounds=1", "--benchmark-max-time=0.000001",
                                              "--benchmark-warmup=off", "--benchmark-disable-gc"), 900),
    # pytest-benchmark's own calibration (at least 5 rounds, about 1 s per case).
    "full": Mode("full", None, 20, None, 7, True, ("--benchmark-min-rounds=5", "--benchmark-warmup=on"),
                 3600),
}


class ReportError(Exception):
    """A user error (bad path, bad argument): printed as one line, exit code 2."""


# ---- latency: pytest-benchmark -----------------------------------------------------------------

def run_pytest_benchmark(path: Path, mode: Mode, out_json: Path, quiet: bool = True) -> dict[str, Any]:
    """Run one stage benchmark file with pytest-benchmark and return its JSON (RuntimeError on
    failure); the mode's pytest options set the rounds."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    if out_json.exists():
        out_json.unlink()
    cmd = [sys.executable, "-m", "pytest", str(path), "-q", "-rs", "-p", "no:cacheprovider",
           "--benchmark-only",
           f"--benchmark-json={out_json}", "--benchmark-columns=median,min,max,rounds", *mode.pytest_args,
           *MODE_MARKERS.get(mode.name, ())]
    log.info("running %s", " ".join(cmd))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=mode.pytest_timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{path.name}: ran past {mode.pytest_timeout_s:.0f} s in {mode.name} mode and was "
                           f"stopped: run it alone with `{' '.join(cmd[2:4])} --benchmark-only` to see which "
                           "case is slow") from None
    if not quiet:
        sys.stderr.write(proc.stdout[-4000:])
    if proc.returncode not in (0, 5):  # 5 = no tests collected
        tail = (proc.stdout + proc.stderr).strip()[-2000:]
        raise RuntimeError(f"{path.name}: pytest exited {proc.returncode} after "
                           f"{time.perf_counter() - t0:.0f} s:\n{tail}")
    data = json.loads(out_json.read_text(encoding="utf-8")) if out_json.is_file() else {"benchmarks": []}
    # Why cases did not run (e.g. the real data is absent): pytest's "-rs" lines.
    data["skipped"] = [line.split("] ", 1)[-1]
                       for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    return data


def stage_rows(bench_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Data-stage benchmarks (no psyedge/plain pairing): median seconds plus their extra_info."""
    rows = []
    for b in bench_json.get("benchmarks", []):
        rows.append({"label": str(b.get("name")), "median_s": b["stats"]["median"],
                     "min_s": b["stats"]["min"],
                     "rounds": b["stats"]["rounds"], "extra": dict(b.get("extra_info") or {})})
    return rows


# ---- the run -----------------------------------------------------------------------------------

@dataclass
class Options:
    mode: Mode
    model: Path
    labels: Path
    unified: Path
    out: Path
    template: str | None
    threads: int
    limit: int | None
    parts: tuple[str, ...]
    split: str = "auto"
    sft: Path | None = None


PARTS = ("latency", "accuracy", "memory")


def _progress(items: Sequence[Any], desc: str) -> Iterable[Any]:
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="conv", leave=False, disable=not sys.stderr.isatty())


def resolve_split(opts: Options) -> tuple[str, set[str] | None, str]:
    """Which conversations to score: (split name, ids or None for all, a sentence for the report).

    `auto` takes the SFT set's `validation` split when there is one (the model never trained on
    it), else every labeled conversation, and says so: accuracy on training data flatters a model.
    """
    sft = opts.sft or acc.default_sft_path(opts.labels)
    splits = acc.load_splits(sft)
    name = opts.split
    if name == "auto":
        name = "validation" if "validation" in splits.values() else "all"
    if name == "all":
        why = (f"no SFT split file at {sft}" if not splits else "--split all")
        return "all", None, f"all labeled conversations ({why}; a trained model may have seen them)"
    ids = {i for i, s in splits.items() if s == name}
    if not ids:
        raise acc.EvalDataError(f"--split {name}: {sft} has no {name!r} records; run `make sft` or pass "
                                "--split all")
    held = "held out from training" if name == "validation" else "seen in training"
    return name, ids, f"the {name} split of {sft.name} ({len(ids)} ids, {held})"


def run_accuracy(opts: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Assess the labeled set once (safety net on; the model's own flag gives 'off'); score it."""
    split, ids, note = resolve_split(opts)
    items, ledger = acc.load_eval_set(opts.labels, opts.unified, limit=opts.limit or opts.mode.eval_limit,
                                      ids=ids)
    if not items:
        raise acc.EvalDataError(f"no labeled conversation to evaluate in {split} ({ledger}): check that "
                                f"{opts.labels} and {opts.unified} come from the same `make data` run")
    t0 = time.perf_counter()
    screener = open_screener(opts.model, opts.template, opts.threads)
    try:
        load_s = time.perf_counter() - t0
        threads = screener.engine.n_threads
        template = screener.template.name
        off, on = acc.predict(items, screener, progress=lambda it: _progress(list(it), "accuracy (psyedge)"))
    finally:
        screener.close()
    result = acc.score(items, off, on)
    if template:  # the plain path needs the template the Screener resolved (from the GGUF or --template)
        t1 = time.perf_counter()
        outputs, plain_load_s = acc.plain_outputs(items[: opts.mode.plain_limit], opts.model, template,
                                                  threads,
                                                  progress=lambda it: _progress(list(it), "accuracy (plain)"))
        result["plain_path"] = {**acc.plain_block(outputs, off), "wall_s": time.perf_counter() - t1,
                                "max_tokens": acc.PLAIN_MAX_TOKENS, "load_s": plain_load_s}
    result["ledger"] = ledger
    result["split"] = {"name": split, "note": note}
    result["load_s"] = load_s
    ms = [p.total_ms for p in off if p.total_ms is not None]
    result["assess_ms"] = metrics.value_stats(ms)
    return result, {"threads": threads, "conversations": [i.conversation for i in items]}


def _short(machine: Mapping[str, Any]) -> str:
    return mach.short(dict(machine))


def collect(opts: Options) -> tuple[dict[str, Any], list[str]]:
    """Run the selected parts; return the summary document and the list of part failures."""
    errors: list[str] = []
    machine = mach.describe(threads=None)
    name = model_label(opts.model)
    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION,
        "mode": opts.mode.name,
        "model": {"name": name, "path": str(opts.model), "file_bytes": opts.model.stat().st_size,
                  "gguf": _json_safe(read_info(opts.model).summary())},
        "labels": str(opts.labels),
        "machine": machine,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parts": {},
        "figures": [],
    }
    ctx = Context(name, opts.threads or _sdk_default_threads(), _short(machine))
    conversations: list[Any] = []

    if "accuracy" in opts.parts:
        t0 = time.perf_counter()
        try:
            result, side = run_accuracy(opts)
            ctx.threads = side["threads"] or ctx.threads
            conversations = side["conversations"]
            result["wall_s"] = time.perf_counter() - t0
            summary["parts"]["accuracy"] = result
        except (acc.EvalDataError, PsyedgeError) as exc:
            errors.append(f"accuracy: {exc}")
            summary["parts"]["accuracy"] = {"error": str(exc)}
    machine["threads"] = ctx.threads

    if "memory" in opts.parts:
        try:
            convs = conversations or _fallback_conversations(opts)
            mem = measure(opts.model, convs[: opts.mode.memory_conversations] or convs,
                          n=opts.mode.memory_conversations, template=opts.template,
                          threads=opts.threads or None)
            summary["parts"]["memory"] = mem
        except (MemoryBenchError, acc.EvalDataError, subprocess.SubprocessError) as exc:
            errors.append(f"memory: {exc}")
            summary["parts"]["memory"] = {"error": str(exc)}

    if "latency" in opts.parts:
        try:
            t0 = time.perf_counter()
            cases = run_latency(opts, ctx.threads or 0)
            summary["parts"]["latency"] = {"cases": cases, "wall_s": time.perf_counter() - t0}
        except (PsyedgeError, RuntimeError, ImportError, OSError) as exc:
            errors.append(f"latency: {exc}")
            summary["parts"]["latency"] = {"error": str(exc)}
        summary["parts"]["benchmarks"] = run_stage_files(opts, errors)

    machine["load_average_end"] = mach.load_average()
    summary["figures"] = figures(summary, ctx)
    summary["errors"] = errors
    return summary, errors


def run_latency(opts: Options, threads: int) -> dict[str, dict[str, Any]]:
    """The SDK latency cases, in this process: the model under test at each prompt size; full
    mode adds the tiny reference model, Gemma-3-270M Q4_K_M (when its package is installed) and
    the 1.5B shape twin, each at its own size."""
    rounds = opts.mode.sdk_rounds
    cases = sdk_latency.measure_model(opts.model, opts.template, threads, rounds)
    if opts.mode.references:
        for name, (path, template, size, measures) in models.references(threads).items():
            case = sdk_latency.Case.open(name, path, template, size, rounds, threads)
            try:
                for what in measures:
                    sdk_latency.measure(case, what)
            finally:
                case.close()
            cases[name] = case.rec
    return cases


def run_stage_files(opts: Options, errors: list[str]) -> dict[str, Any]:
    """The stage benchmark files (pytest-benchmark, their JSON under `<out>/raw/`)."""
    out: dict[str, Any] = {}
    raw = opts.out / "raw"
    for fname, modes in BENCH_FILES.items():
        path = ROOT / "benchmarks" / fname
        if not path.is_file():
            out[fname] = {"skipped": f"{path.relative_to(ROOT)} does not exist"}
            continue
        if opts.mode.name not in modes:
            out[fname] = {"skipped": f"runs in {'/'.join(modes)} mode only "
                                     f"(make bench BENCH_MODE={modes[-1]})"}
            continue
        try:
            t0 = time.perf_counter()
            data = run_pytest_benchmark(path, opts.mode, raw / (path.stem + ".json"))
            rows = stage_rows(data)
            out[fname] = {"kind": "stage", "rows": rows, "raw": str(raw / (path.stem + ".json")),
                          "wall_s": time.perf_counter() - t0, "skipped_cases": data.get("skipped", [])}
            if not rows:
                out[fname]["skipped"] = "; ".join(data.get("skipped", [])) or "no benchmark ran"
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as exc:
            errors.append(f"{fname}: {exc}")
            out[fname] = {"error": str(exc)}
    return out


def _sdk_default_threads() -> int:
    """The thread count the Screener uses when given none (the SDK decides; we only report it)."""
    from psyedge.decode import default_threads

    return default_threads()


def _json_safe(obj: Any) -> Any:
    """GGUF header values as JSON (array summaries become their repr)."""
    return json.loads(json.dumps(obj, default=repr))


def _fallback_conversations(opts: Options) -> list[Any]:
    """Conversations for the memory child when the accuracy part did not run."""
    items, _ = acc.load_eval_set(opts.labels, opts.unified, limit=opts.mode.memory_conversations)
    if not items:
        raise acc.EvalDataError(f"no conversations in {opts.unified} joined with {opts.labels} for the "
                                "memory run")
    return [i.conversation for i in items]


def write_outputs(summary: dict[str, Any], out: Path, failed: bool) -> Path:
    plots_ = write_plots(summary, out)
    summary["plots"] = plots_
    atomic_write_text(out / "report.md", render_markdown(summary, plots_))
    target = out / ("summary.failed.json" if failed else "summary.json")
    atomic_write_json(target, summary)
    if not failed and (out / "summary.failed.json").exists():
        (out / "summary.failed.json").unlink()
    return target


# ---- CLI ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> Options:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--model", type=Path, required=True, help="the GGUF to benchmark")
    ap.add_argument("--labels", type=Path, required=True, help="labeled JSONL (teacher or human labels)")
    ap.add_argument("--unified", type=Path,
                    help="conversations JSONL (default: <data>/processed/unified_min.jsonl)")
    ap.add_argument("--out", type=Path, default=Path("reports/bench"))
    ap.add_argument("--template", help="chat template when the GGUF has no psyedge.template key")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: the SDK's default)")
    ap.add_argument("--limit", type=int, help="assess at most this many labeled conversations")
    ap.add_argument("--split", choices=("auto", "validation", "train", "all"), default="auto",
                    help="which labeled conversations to score (auto: the SFT validation split when it "
                         "exists)")
    ap.add_argument("--sft", type=Path,
                    help="SFT set with the split (default: <data>/datasets/sft_student_mental.jsonl)")
    ap.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        raise ReportError(f"--model {args.model} does not exist: build it with `make quantize` or pass a "
                          ".gguf path")
    if args.model.suffix != ".gguf":
        raise ReportError(f"--model {args.model} is not a .gguf file: pass the quantized model, e.g. "
                          "models/tiny/model-Q4_K_M.gguf")
    if not args.labels.is_file():
        raise ReportError(f"--labels {args.labels} does not exist: run `make label` or pass a labeled JSONL")
    try:
        read_info(args.model)
    except ModelError as exc:
        raise ReportError(f"--model {args.model} is not a readable GGUF ({exc}): pass a model from `make "
                          "quantize`") from None
    unified = args.unified or acc.default_unified_path(args.labels)
    if not unified.is_file():
        raise ReportError(f"conversations file {unified} does not exist: run `make data` or pass --unified")
    if args.threads < 0 or (args.limit is not None and args.limit < 1):
        raise ReportError("--threads must be >= 0 and --limit >= 1")
    return Options(MODES[args.mode], args.model, args.labels, unified, args.out, args.template, args.threads,
                   args.limit, tuple(args.only or PARTS), args.split, args.sft)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        opts = parse_args(argv)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    summary, errors = collect(opts)
    summary["wall_s"] = time.perf_counter() - t0
    target = write_outputs(summary, opts.out, failed=bool(errors))
    print_table(summary)
    print(f"\nwrote {target}, {opts.out / 'report.md'} and {len(summary['plots'])} plots in "
          f"{summary['wall_s']:.1f} s")
    if errors:
        print("\nbenchmark parts failed:\n  " + "\n  ".join(e.splitlines()[0] for e in errors),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
