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
4. latency and data-stage cost: pytest-benchmark on the `benchmarks/bench_*.py` files (owned by
   their modules; quick: the model under test only, full: every case, the 1.5B shape twin, `make
   data` on the real data, labeling throughput), each writing `--benchmark-json` under
   `<out>/raw/`, bench_sdk.py also its derived ratios (`<out>/raw/sdk.json`).

Every figure in `summary.json` carries its unit, model, prompt length (tokens; null where no
prompt is involved, e.g. `make data` wall time), thread count and machine, so numbers from two
runs can be compared or refused. `summary.json` (the make target) is written only when no part
failed; otherwise `summary.failed.json` holds what was measured and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import accuracy as acc
from benchmarks import machine as mach
from benchmarks.memory import MemoryBenchError, measure, open_screener
from pipeline.io import atomic_write_json, atomic_write_text
from psyedge.errors import ModelError, PsyedgeError
from psyedge.gguf_info import read_info

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_VERSION = 1
#: Benchmark files this report runs when present (other modules own them), in report order, and
#: the modes that run each. Quick (make demo) must take seconds: `make data` on the real data is
#: ~10 s a round (3 rounds), the labeling run is a 20 s rate-limited run and the training-step cases
#: start five processes (one with emulated bf16, seconds a step), so these are full only.
BENCH_FILES: dict[str, tuple[str, ...]] = {
    "bench_sdk.py": ("quick", "full"),
    "bench_data.py": ("full",),
    "bench_label.py": ("full",),
    "bench_train.py": ("full",),
}
#: Extra pytest options per mode: quick leaves out the cases their authors marked slow.
MODE_MARKERS: dict[str, tuple[str, ...]] = {"quick": ("-m", "not slow"), "full": ()}
#: Extra pytest options per file and mode. Quick times only the model under test (`test_model`),
#: not bench_sdk's own tiny model, which only a full run needs as a fixed reference.
FILE_ARGS: dict[tuple[str, str], tuple[str, ...]] = {("bench_sdk.py", "quick"): ("-k", "test_model")}


@dataclass(frozen=True)
class Mode:
    """What quick and full mean. Quick must finish in seconds on the demo's tiny model."""

    name: str
    eval_limit: int | None  # labeled conversations to assess (None = all)
    memory_conversations: int
    plain_limit: int | None  # conversations the plain grammar path answers (it generates ~40-96 tokens each)
    pytest_args: tuple[str, ...]
    pytest_timeout_s: float


#: pytest-benchmark options only reach plain `benchmark(...)` cases: cases that call
#: `benchmark.pedantic` keep their own rounds (bench_sdk.py: 5-10). The timeouts are safety nets:
#: quick mode takes seconds on the demo's tiny model but minutes on Gemma-3-270M.
MODES: dict[str, Mode] = {
    # One round, no calibration loop: a smoke measurement that still exercises every path.
    "quick": Mode("quick", 20, 20, 8, ("--benchmark-min-rounds=1", "--benchmark-max-time=0.000001",
                                    "--benchmark-warmup=off", "--benchmark-disable-gc"), 900),
    # pytest-benchmark's own calibration (at least 5 rounds, about 1 s per case).
    "full": Mode("full", None, 20, None, ("--benchmark-min-rounds=5", "--benchmark-warmup=on"), 3600),
}


class ReportError(Exception):
    """A user error (bad path, bad argument): printed as one line, exit code 2."""


# ---- figures -----------------------------------------------------------------------------------

@dataclass
class Context:
    """What every figure of this run shares."""

    model: str
    threads: int | None
    machine: str


def figure(ctx: Context, name: str, value: float | int | None, unit: str, *, prompt_tokens: float | None,
           model: str | None = "", threads: int | None = -1, **extra: Any) -> dict[str, Any]:
    """One number of the summary with everything needed to compare it: unit, model, prompt, threads, machine.

    `model=None` / `threads=None` say "not applicable" explicitly (e.g. a data-stage wall time).
    """
    return {
        "name": name, "value": value, "unit": unit,
        "model": ctx.model if model == "" else model,
        "prompt_tokens": prompt_tokens,
        "threads": ctx.threads if threads == -1 else threads,
        "machine": ctx.machine,
        **extra,
    }


# ---- latency: pytest-benchmark -----------------------------------------------------------------

def run_pytest_benchmark(path: Path, mode: Mode, model: Path, out_json: Path, env_extra: Mapping[str, str],
                         quiet: bool = True, extra_args: Sequence[str] = ()) -> dict[str, Any]:
    """Run one benchmark file with pytest-benchmark and return its JSON (raises RuntimeError on failure).

    The model and mode reach the benchmark files through environment variables (the bench
    modules' conftest reads them); the mode's pytest options set the rounds.
    """
    out_json.parent.mkdir(parents=True, exist_ok=True)
    if out_json.exists():
        out_json.unlink()
    cmd = [sys.executable, "-m", "pytest", str(path), "-q", "-rs", "-p", "no:cacheprovider",
           "--benchmark-only",
           f"--benchmark-json={out_json}", "--benchmark-columns=median,min,max,rounds", *mode.pytest_args,
           *MODE_MARKERS.get(mode.name, ()), *extra_args]
    env = {**os.environ, "PSYEDGE_BENCH_MODEL": str(model), "PSYEDGE_BENCH_MODE": mode.name, **env_extra}
    log.info("running %s", " ".join(cmd))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=mode.pytest_timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{path.name}: ran past {mode.pytest_timeout_s:.0f} s in {mode.name} mode on "
                           f"{model.name} and was stopped; a larger model needs more time: run it alone with "
                           f"`{' '.join(cmd[2:4])} --benchmark-only` to see which case is slow") from None
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


#: Sides of a latency comparison, as `benchmarks/bench_sdk.py` tags them in `extra_info`:
#: `path` psyedge|plain, and for plain the `grammar` (json_schema: what the issue calls the plain
#: path, `LlamaGrammar.from_json_schema`; gbnf: the exact `psyedge grammar`, a stronger baseline).
SIDES: dict[str, str] = {"psyedge": "psyedge (jump-forward)",
                         "plain": "plain llama-cpp-python (from_json_schema grammar)",
                         "plain_gbnf": "plain llama-cpp-python (exact GBNF)"}


def _side_and_case(bench: Mapping[str, Any]) -> tuple[str, str]:
    """(side, case) of one pytest-benchmark entry; the case drops the plain side's " vs <grammar>"."""
    info = bench.get("extra_info") or {}
    path = str(info.get("path") or "psyedge")
    grammar = str(info.get("grammar") or "")
    case = str(info.get("case") or bench.get("name", "?"))
    if grammar and case.endswith(f" vs {grammar}"):
        case = case[: -len(f" vs {grammar}")]
    side = ("plain_gbnf" if path == "plain" and grammar == "gbnf"
            else ("plain" if path == "plain" else "psyedge"))
    return side, case


def _first(info: Mapping[str, Any], *keys: str) -> Any:
    return next((info[k] for k in keys if info.get(k) is not None), None)


def latency_rows(bench_json: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per case with each side's median/min/mean (ms) and the ratios plain/psyedge."""
    cases: dict[str, dict[str, Any]] = {}
    for b in bench_json.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if info.get("pair"):  # both paths in one timing (bench_sdk.interleaved): reported as a ratio only
            continue
        side, case = _side_and_case(b)
        stats = b["stats"]
        row = cases.setdefault(case, {"label": case, "model_case": case.split(" ", 1)[0],
                                      "prompt_tokens": None, "new_tokens": None, "threads": None})
        row[f"{side}_ms"] = stats["median"] * 1000
        row[f"{side}_min_ms"] = stats["min"] * 1000
        row[f"{side}_mean_ms"] = stats["mean"] * 1000
        row[f"{side}_rounds"] = stats["rounds"]
        row["prompt_tokens"] = row["prompt_tokens"] or _first(info, "prompt_tokens")
        row["new_tokens"] = row["new_tokens"] or _first(info, "new_tokens")
        row["threads"] = row["threads"] or _first(info, "n_threads", "threads")
    for row in cases.values():
        if row.get("psyedge_ms"):
            if row.get("plain_ms"):
                row["ratio"] = row["plain_ms"] / row["psyedge_ms"]
            if row.get("plain_gbnf_ms"):
                row["ratio_gbnf"] = row["plain_gbnf_ms"] / row["psyedge_ms"]
    return list(cases.values())


#: Derived numbers of `sdk.json` (benchmarks/conftest.py RESULTS) -> (figure name, unit).
SDK_DERIVED: dict[str, tuple[str, str]] = {
    "speedup_vs_json_schema": ("e2e.ratio_plain_json_schema_over_psyedge", "ratio"),
    "speedup_vs_gbnf": ("e2e.ratio_plain_gbnf_over_psyedge", "ratio"),
    "speedup_vs_json_schema_interleaved": ("e2e.interleaved.ratio_plain_json_schema_over_psyedge", "ratio"),
    "total_over_prefill": ("e2e.assess_over_prefill_only", "ratio"),
    "worst_over_prefill": ("e2e.every_guess_wrong.assess_over_prefill_only", "ratio"),
    "worst_speedup_vs_json_schema": ("e2e.every_guess_wrong.ratio_plain_json_schema_over_psyedge", "ratio"),
    "session_over_turn_prefill": ("session.reassess_over_turn_prefill", "ratio"),
    "session_floor_over_turn_prefill": ("session.floor_over_turn_prefill", "ratio"),
    "plain_json_schema_schema_valid_rate": ("e2e.plain_json_schema.schema_validity", "fraction"),
    "plain_gbnf_schema_valid_rate": ("e2e.plain_gbnf.schema_validity", "fraction"),
}


def sdk_figures(ctx: Context, sdk: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Figures from `sdk.json`: its ratios, prefill tokens/s, the answer's decode time, the session sizes.

    Prefill tokens/s = new tokens / prefill-only time; the answer's decode is assess minus
    prefill-only on the same conversation (both medians, so an estimate, said in the name).
    """
    out = []
    for name, rec in (sdk.get("cases") or {}).items():
        model = model_label(Path(rec["model"])) if rec.get("model") else None
        tokens = (rec.get("prefix_tokens") or 0) + (rec.get("new_tokens") or 0) or None
        common = {"prompt_tokens": tokens, "model": model, "threads": rec.get("threads")}
        for key, (fname, unit) in SDK_DERIVED.items():
            if acc.is_number(rec.get(key)):
                out.append(figure(ctx, f"latency.{name}.{fname}", rec[key], unit, **common))
        if acc.is_number(rec.get("prefill_only_ms")) and rec.get("new_tokens"):
            out.append(figure(ctx, f"latency.{name}.prefill_tokens_per_s",
                              rec["new_tokens"] / rec["prefill_only_ms"] * 1000,
                              "tokens/s", **common, new_tokens=rec["new_tokens"]))
            if acc.is_number(rec.get("psyedge_assess_ms")):
                out.append(figure(ctx, f"latency.{name}.answer_decode_est",
                                  rec["psyedge_assess_ms"] - rec["prefill_only_ms"],
                                  "ms", **common, decode_calls=rec.get("psyedge_decode_calls")))
        sizes = rec.get("session_by_turn") or {}
        for row in sorted(sizes.values() if len(sizes) > 1 else [], key=lambda r: r["turn_tokens"]):
            # One size is the headline figure above already; several get one figure each.
            for key in ("reassess_over_turn_prefill", "floor_over_turn_prefill"):
                if acc.is_number(row.get(key)):
                    out.append(figure(ctx, f"latency.{name}.session.turn_{row['turn_tokens']}tok.{key}",
                                      row[key], "ratio", **common, turn_tokens=row["turn_tokens"],
                                      decode_calls=row.get("decode_calls")))
    return out


def load_row(accuracy: Mapping[str, Any], model: str, threads: int | None) -> dict[str, Any] | None:
    """The model-load comparison, from the accuracy run: `Screener(...)` (which also decodes the
    instruction prefix once) against `Llama(...)`, in one process, one after the other (the
    file is in the page cache for both)."""
    plain = accuracy.get("plain_path") or {}
    if not acc.is_number(accuracy.get("load_s")):
        return None
    row: dict[str, Any] = {"label": "model load (warm page cache)", "model": model, "threads": threads,
                           "prompt_tokens": None, "new_tokens": None, "psyedge_ms": accuracy["load_s"] * 1000,
                           "psyedge_rounds": 1}
    if acc.is_number(plain.get("load_s")):
        row.update(plain_ms=plain["load_s"] * 1000, plain_rounds=1,
                   ratio=plain["load_s"] / accuracy["load_s"])
    return row


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
        threads = getattr(getattr(screener, "engine", None), "n_threads", None)
        template = getattr(getattr(screener, "template", None), "name", None) or opts.template
        off, on = acc.predict(items, screener, progress=lambda it: _progress(list(it), "accuracy (psyedge)"))
    finally:
        close = getattr(screener, "close", None)
        if close:
            close()
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
    result["assess_ms"] = acc.value_stats(ms)
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
        summary["parts"]["benchmarks"] = {}
        raw = opts.out / "raw"
        for fname, modes in BENCH_FILES.items():
            path = ROOT / "benchmarks" / fname
            if not path.is_file():
                summary["parts"]["benchmarks"][fname] = {
                    "skipped": f"{path.relative_to(ROOT)} does not exist"}
                continue
            if opts.mode.name not in modes:
                summary["parts"]["benchmarks"][fname] = {"skipped": f"runs in {'/'.join(modes)} mode only "
                                                                   f"(make bench BENCH_MODE={modes[-1]})"}
                continue
            # bench_sdk.py's conftest reads these: the model, its threads and template, where to
            # write its derived ratios; PSYEDGE_BENCH_FULL adds the 1.5B shape twin (full mode).
            sdk_json = raw / "sdk.json"
            env = {"PSYEDGE_BENCH_LABELS": str(opts.labels), "PSYEDGE_BENCH_SDK_JSON": str(sdk_json)}
            if ctx.threads:
                env["PSYEDGE_BENCH_THREADS"] = str(ctx.threads)
            if opts.template:
                env["PSYEDGE_BENCH_TEMPLATE"] = opts.template
            if opts.mode.name == "full" and "PSYEDGE_BENCH_FULL" not in os.environ:
                env["PSYEDGE_BENCH_FULL"] = "1"
            if sdk_json.exists():
                sdk_json.unlink()
            try:
                t0 = time.perf_counter()
                data = run_pytest_benchmark(path, opts.mode, opts.model, raw / (path.stem + ".json"), env,
                                            extra_args=FILE_ARGS.get((fname, opts.mode.name), ()))
                kind = "latency" if fname == "bench_sdk.py" else "stage"
                rows = latency_rows(data) if kind == "latency" else stage_rows(data)
                summary["parts"]["benchmarks"][fname] = {"kind": kind, "rows": rows,
                                                         "raw": str(raw / (path.stem + ".json")),
                                                        "wall_s": time.perf_counter() - t0,
                                                        "skipped_cases": data.get("skipped", [])}
                if kind == "latency" and sdk_json.is_file():
                    sdk = json.loads(sdk_json.read_text(encoding="utf-8"))
                    summary["parts"]["benchmarks"][fname]["sdk"] = sdk
                    for row in rows:
                        rec = (sdk.get("cases") or {}).get(row["model_case"]) or {}
                        row["model"] = model_label(Path(rec["model"])) if rec.get("model") else None
                if not rows:
                    why = "; ".join(data.get("skipped", [])) or "no benchmark ran"
                    summary["parts"]["benchmarks"][fname]["skipped"] = why
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as exc:
                errors.append(f"{fname}: {exc}")
                summary["parts"]["benchmarks"][fname] = {"error": str(exc)}

    machine["load_average_end"] = mach.load_average()
    summary["figures"] = figures(summary, ctx)
    summary["errors"] = errors
    return summary, errors


def _sdk_default_threads() -> int | None:
    """The thread count the Screener uses when given none (the SDK decides; we only report it)."""
    try:
        from psyedge.decode import default_threads
    except ImportError:
        return None
    return default_threads()


def model_label(path: Path) -> str:
    """`<run folder>/<file>` (e.g. `tiny/model-Q4_K_M.gguf`): every run names its file the same."""
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


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


#: Units of the accuracy headline metrics.
_UNITS = {"accuracy": "fraction", "macro_f1": "F1 (0-1)", "qwk": "kappa (-1..1)", "mae": "levels (0-9 scale)",
          "within_1": "fraction", "schema_validity": "fraction", "any_risk_recall": "fraction",
          "suicidal_recall": "fraction", "suicidal_precision": "fraction"}


def figures(summary: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """Flatten every measured number into self-describing figure records."""
    out: list[dict[str, Any]] = []
    parts = summary["parts"]
    a = parts.get("accuracy") or {}
    if "fields" in a:
        tokens = (a.get("prompt_tokens") or {}).get("mean")
        split = (a.get("split") or {}).get("name")
        for name, value in acc.headline(a).items():
            unit = _UNITS.get(name.rsplit(".", 1)[-1], "fraction")
            out.append(figure(ctx, f"accuracy.{name}", value, unit, prompt_tokens=tokens, n=a["scored"],
                              split=split))
        plain = a.get("plain_path") or {}
        for key in ("schema_validity", "agreement_with_psyedge"):
            if key in plain:
                out.append(figure(ctx, f"accuracy.plain.{key}", plain[key], "fraction", prompt_tokens=tokens,
                                  n=plain["n"], split=split))
        if a.get("assess_ms"):
            out.append(figure(ctx, "accuracy.assess_mean", a["assess_ms"]["mean"], "ms", prompt_tokens=tokens,
                              n=a["scored"], split=split))
    m = parts.get("memory") or {}
    if "peak_rss_bytes" in m:
        toks = m.get("prompt_tokens") or []
        tokens = sum(toks) / len(toks) if toks else None
        threads = m.get("threads") or ctx.threads
        out.append(figure(ctx, "memory.gguf_file", m["file_bytes"], "bytes", prompt_tokens=None,
                          threads=None))
        out.append(figure(ctx, "memory.peak_rss", m["peak_rss_bytes"], "bytes", prompt_tokens=tokens,
                          threads=threads, assessed=m.get("assessed")))
        out.append(figure(ctx, "memory.peak_over_file", m["peak_over_file"], "ratio", prompt_tokens=tokens,
                          threads=threads))
        base = ((m.get("stages") or {}).get("import") or {}).get("rss_bytes")
        if base is not None:  # what the model adds on top of Python + llama.cpp loaded with no model
            out.append(figure(ctx, "memory.peak_over_import_baseline", m["peak_rss_bytes"] - base, "bytes",
                              prompt_tokens=tokens, threads=threads))
        for stage, snap in (m.get("stages") or {}).items():
            if snap.get("rss_bytes") is not None:
                out.append(figure(ctx, f"memory.rss_after_{stage}", snap["rss_bytes"], "bytes",
                                  prompt_tokens=tokens if stage == "assess" else None, threads=threads))
    load = load_row(a, ctx.model, ctx.threads) if "fields" in a else None
    if load:
        common = {"prompt_tokens": None, "threads": ctx.threads, "rounds": 1}
        out.append(figure(ctx, "latency.model load.psyedge", load["psyedge_ms"], "ms", **common))
        if "plain_ms" in load:
            out.append(figure(ctx, "latency.model load.plain", load["plain_ms"], "ms", **common))
            out.append(figure(ctx, "latency.model load.ratio_plain_over_psyedge", load["ratio"], "ratio",
                              **common))
    for fname, block in (parts.get("benchmarks") or {}).items():
        if block.get("sdk"):
            out += sdk_figures(ctx, block["sdk"])
        for row in block.get("rows", []):
            if block.get("kind") == "latency":
                common = {"prompt_tokens": row.get("prompt_tokens"),
                          "threads": row.get("threads") or ctx.threads,
                          "model": row.get("model") or ctx.model}
                for side in SIDES:
                    if row.get(f"{side}_ms") is not None:
                        out.append(figure(ctx, f"latency.{row['label']}.{side}", row[f"{side}_ms"],
                                          "ms (median)", **common, rounds=row.get(f"{side}_rounds"),
                                          new_tokens=row.get("new_tokens")))
                for key, side in (("ratio", "plain"), ("ratio_gbnf", "plain_gbnf")):
                    if row.get(key) is not None:
                        out.append(figure(ctx, f"latency.{row['label']}.ratio_{side}_over_psyedge", row[key],
                                          "ratio", **common))
            else:
                extra = row.get("extra", {})
                common = {"prompt_tokens": extra.get("prompt_tokens"), "model": extra.get("model"),
                          "threads": extra.get("threads", extra.get("workers"))}
                stem = f"{Path(fname).stem}.{row['label']}"
                out.append(figure(ctx, stem, row["median_s"], "s (median)", **common,
                                  rounds=row.get("rounds"),
                                  details={k: v for k, v in extra.items() if k not in common}))
                for key, value in extra.items():  # numeric extras whose name says their unit
                    unit = _unit_of(key)
                    if unit and acc.is_number(value):
                        out.append(figure(ctx, f"{stem}.{key}", value, unit, **common, source="extra_info"))
    return out


#: Name suffix -> unit, for the numbers other benchmark files put in `extra_info`.
_SUFFIX_UNITS: tuple[tuple[str, str], ...] = (("_per_s", "per s"), ("_per_step", "s per step"),
                                              ("_mib", "MiB"), ("_ms", "ms"), ("_s", "s"),
                                              ("_bytes", "bytes"), ("_usd", "USD"), ("_rpm", "requests/min"),
                                              ("_over_limit", "ratio"))


def _unit_of(key: str) -> str | None:
    return next((unit for suffix, unit in _SUFFIX_UNITS if key.endswith(suffix)), None)


# ---- outputs -----------------------------------------------------------------------------------

def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_plots(summary: Mapping[str, Any], out: Path) -> dict[str, str]:
    """Draw every plot the data allows; return name -> file name (relative to `out`)."""
    from benchmarks import plots

    model = summary["model"]["name"]
    machine = _short(summary["machine"])
    files: dict[str, str] = {}
    parts = summary["parts"]
    lat = (parts.get("benchmarks") or {}).get("bench_sdk.py") or {}
    load = load_row(parts.get("accuracy") or {}, model, summary["machine"].get("threads"))
    if lat.get("rows") or load:
        rows = ([load] if load else []) + [r for r in lat.get("rows", [])
                                           if r.get("psyedge_ms") or r.get("plain_ms")]
        models = sorted({r.get("model") or model for r in rows})
        files["latency"] = plots.latency_bars(rows, SIDES, ", ".join(models), machine,
                                              out / "latency.png").name
    a = parts.get("accuracy") or {}
    if "fields" in a:
        for field, block in a["fields"].items():
            if field == acc.RISK_FIELD:
                panels = [(f"safety net {k.split('_')[1]}", v["confusion"]) for k, v in block.items()]
                labels = next(iter(block.values()))["labels"]
            else:
                panels, labels = [("model", block["confusion"])], block["labels"]
            files[f"confusion_{field}"] = plots.confusion(panels, labels, field, model,
                                                          out / f"confusion_{field}.png").name
        if a.get("pr_curves"):
            risk = a["fields"][acc.RISK_FIELD]
            operating = {k: (v["any_risk_recall"], v["any_risk_precision"]) for k, v in risk.items()}
            files["pr_curve"] = plots.pr_curve(a["pr_curves"], operating, model, out / "pr_curve.png").name
    m = parts.get("memory") or {}
    if "peak_rss_bytes" in m:
        files["memory"] = plots.memory_bars(m, model, machine, out / "memory.png").name
    return files


def render_markdown(summary: Mapping[str, Any], plots_: Mapping[str, str]) -> str:
    """report.md: the same numbers as summary.json, as tables a person reads."""
    m = summary["machine"]
    model = summary["model"]
    parts = summary["parts"]
    lines = [
        f"# psyedge benchmark report: {model['name']}",
        "",
        f"Mode **{summary['mode']}**, started {summary['started']}, model `{model['path']}` "
        f"({model['file_bytes'] / 2**20:.1f} MiB).",
        "",
        "## Machine",
        "",
        _table(["CPU", "cores", "threads used", "RAM", "llama-cpp-python", "SIMD"],
               [[m["cpu"], m["cores"], m.get("threads") or "SDK default",
                 f"{(m.get('ram_bytes') or 0) / 2**30:.1f} GiB", m["llama"].get("llama_cpp_python"),
                 " ".join(m["llama"].get("simd") or [])]]),
        "",
    ]
    loads = [x for x in (m.get("load_average_start"), m.get("load_average_end")) if x]
    if loads:
        busiest = max(x[0] for x in loads)
        lines += [f"1-minute load average {' -> '.join(f'{x[0]:.1f}' for x in loads)} on {m['cores']} cores"
                  + (": **the machine was busy, so latencies are inflated and noisy**; rerun on an idle "
                     "machine before comparing." if busiest > m["cores"] else "."), ""]
    lat = dict((parts.get("benchmarks") or {}).get("bench_sdk.py") or {})
    load = load_row(parts.get("accuracy") or {}, model["name"], m.get("threads"))
    if load:
        lat["rows"] = [load, *lat.get("rows", [])]
    lines += ["## Latency: psyedge vs plain llama-cpp-python", ""]
    if lat.get("rows"):
        lines += ["Medians over the benchmark's rounds. Plain = `create_completion` greedy under "
                  "`LlamaGrammar.from_json_schema` (the issue's plain path) and under the exact GBNF; "
                  "ratio = plain / psyedge (>1: psyedge is faster).", "",
                  _table(["case", "model", "prompt tokens", "new tokens", "threads", "psyedge (ms)",
                          "plain json_schema (ms)", "ratio", "plain GBNF (ms)", "ratio GBNF"],
                         [[r["label"], r.get("model"), r.get("prompt_tokens"), r.get("new_tokens"),
                           r.get("threads"),
                           r.get("psyedge_ms"), r.get("plain_ms"), r.get("ratio"), r.get("plain_gbnf_ms"),
                           r.get("ratio_gbnf")] for r in lat["rows"]]), ""]
        derived = [f for f in figures(summary, Context(model["name"], None, ""))
                   if f["name"].startswith("latency.") and any(f["name"].endswith(suffix) for suffix in (
                       "prefill_tokens_per_s", "answer_decode_est", "assess_over_prefill_only",
                       "reassess_over_turn_prefill", "floor_over_turn_prefill",
                       "interleaved.ratio_plain_json_schema_over_psyedge",
                       "every_guess_wrong.ratio_plain_json_schema_over_psyedge", "schema_validity"))]
        if derived:
            lines += ["Derived by bench_sdk.py (`sdk.json`): prefill speed, the answer's decode (assess "
                      "minus prefill-only, an estimate), overheads and the plain paths' schema validity:", "",
                      _table(["figure", "value", "unit", "threads"],
                             [[f["name"].removeprefix("latency."), f["value"], f["unit"], f["threads"]]
                              for f in derived]),
                      ""]
        if "latency" in plots_:
            lines += [f"![latency]({plots_['latency']})", ""]
    else:
        lines += [f"Not measured: {lat.get('error') or lat.get('skipped') or 'latency part not run'}", ""]
    mem = parts.get("memory") or {}
    lines += ["## Memory", ""]
    if "peak_rss_bytes" in mem:
        st = mem.get("stages", {})
        mib = 2**20
        lines += [_table(["GGUF file (MiB)", "RSS after import (MiB)", "RSS after load (MiB)",
                          f"peak RSS, load + {mem['assessed']} assessments (MiB)", "peak / file"],
                         [[mem["file_bytes"] / mib, (st.get("import") or {}).get("rss_bytes", 0) / mib,
                           (st.get("load") or {}).get("rss_bytes", 0) / mib, mem["peak_rss_bytes"] / mib,
                           mem["peak_over_file"]]]), ""]
        if "memory" in plots_:
            lines += [f"![memory]({plots_['memory']})", ""]
    else:
        lines += [f"Not measured: {mem.get('error', 'memory part not run')}", ""]
    lines += _accuracy_md(parts.get("accuracy") or {}, plots_)
    stages = {k: v for k, v in (parts.get("benchmarks") or {}).items() if k != "bench_sdk.py"}
    if stages:
        lines += ["## Data stages", ""]
        for name, block in stages.items():
            if block.get("rows"):
                lines += [f"`{name}`:", "", _table(["benchmark", "median (s)", "rounds", "details"],
                          [[r["label"], r["median_s"], r["rounds"],
                            json.dumps(r["extra"], ensure_ascii=False)]
                           for r in block["rows"]]), ""]
            else:
                lines += [f"`{name}`: {block.get('error') or block.get('skipped')}", ""]
    lines += ["## Risk detection on human labels", "",
              "`make bench-risk` scores the lexicon, the rules teacher and the model on PsySUICIDE's human "
              "labels (this report's risk numbers are against the labels file): see `risk.json` and "
              "`risk_pr.png` in this folder once it has run.", ""]
    if summary.get("errors"):
        lines += ["## Failures", ""] + [f"- {e.splitlines()[0]}" for e in summary["errors"]] + [""]
    return "\n".join(lines)


def _accuracy_md(a: Mapping[str, Any], plots_: Mapping[str, str]) -> list[str]:
    lines = ["## Accuracy", ""]
    if "fields" not in a:
        return lines + [f"Not measured: {a.get('error', 'accuracy part not run')}", ""]
    f = a["fields"]
    led = a["ledger"]
    split = a.get("split", {}).get("note", "")
    lines += [f"Evaluated on {split}.", "",
              f"{a['scored']} of {a['n']} conversations scored (label rows {led['label_rows']}, invalid "
              f"labels {led['invalid_label']}, without conversation {led['no_conversation']}, outside the "
              f"split {led.get('not_in_split', 0)}); schema validity "
              f"{_fmt(a['schema_validity'])}; mean prompt "
              f"{_fmt((a.get('prompt_tokens') or {}).get('mean'), 1)} "
              "tokens. References are the labels file's labels (teacher or human).", ""]
    plain = a.get("plain_path")
    if plain:
        lines += [f"Plain llama-cpp-python path on the same {plain['n']} prompts (`create_completion` + "
                  f"`LlamaGrammar.from_json_schema`, greedy, at most {plain['max_tokens']} tokens): schema "
                  f"validity {_fmt(plain['schema_validity'])}, same labels as psyedge (net off) on "
                  f"{_fmt(plain['agreement_with_psyedge'])} of its valid answers.", ""]
    lines += [_table(["field", "accuracy", "macro-F1", "quadratic weighted kappa"],
                     [[k, f[k]["accuracy"], f[k]["macro_f1"], f[k]["qwk"]] for k in acc.LEVEL_FIELDS]), ""]
    s = f[acc.SCORE_FIELD]
    lines += [_table(["field", "MAE (levels)", "within-1 accuracy", "exact accuracy", "QWK"],
                     [[acc.SCORE_FIELD, s["mae"], s["within_1"], s["accuracy"], s["qwk"]]]), ""]
    rows = []
    for net, block in f[acc.RISK_FIELD].items():
        for c in block["per_class"]:
            rows.append([net.replace("_", " "), c["label"], c["precision"], c["recall"], c["f1"],
                         c["support"], c["predicted"]])
    lines += ["`risk_flag` per class, safety net off (model alone) and on (lexicon may raise the flag):", "",
              _table(["safety net", "class", "precision", "recall", "F1", "support", "predicted"], rows), ""]
    for net, block in f[acc.RISK_FIELD].items():
        lines.append(f"- {net.replace('_', ' ')}: any-risk recall {_fmt(block['any_risk_recall'])}, any-risk "
                     f"precision {_fmt(block['any_risk_precision'])}"
                     + (f", raised by the lexicon {block['raised_by_lexicon']}"
                        if "raised_by_lexicon" in block else ""))
    lines.append("")
    if a.get("pr_curves"):
        curves = a["pr_curves"]
        lines += ["Risk recall over a probability threshold sweep (model probabilities, safety net off):", ""]
        head = ["threshold"] + [f"{k} {m}" for k in curves for m in ("recall", "precision")]
        by_t = zip(*[c["points"] for c in curves.values()], strict=True)
        # Every 0.1 here; summary.json has the full 0.05 grid.
        rows = [[pts[0]["threshold"]] + [v for p in pts for v in (p["recall"], p["precision"])]
                for pts in by_t if round(pts[0]["threshold"] * 10, 6).is_integer()]
        lines += [_table(head, rows), ""]
    for key, name in plots_.items():
        if key.startswith("confusion_") or key == "pr_curve":
            lines += [f"![{key}]({name})", ""]
    return lines


def print_table(summary: Mapping[str, Any]) -> None:
    """The summary table on stdout: the figures a reader looks at first."""
    keep = ("latency.", "memory.peak", "memory.gguf", "accuracy.schema", "accuracy.plain.",
            "accuracy.depression_level.qwk",
            "accuracy.anxiety_level.qwk", "accuracy.student_distress_score.mae", "accuracy.risk.", "bench_")
    rows = [f for f in summary["figures"] if f["name"].startswith(keep)]
    width = max((len(f["name"]) for f in rows), default=10)
    print(f"\npsyedge bench ({summary['mode']}): {summary['model']['name']} on {_short(summary['machine'])}")
    for f in rows:
        v = f["value"]
        if f["unit"] == "bytes" and v is not None:
            text = f"{v / 2**20:10.1f} MiB"
        else:
            text = f"{v:10.3f} {f['unit']}" if isinstance(v, float) else f"{_fmt(v):>10} {f['unit']}"
        extra = f"  ({f['prompt_tokens']:.0f} prompt tokens)" if isinstance(f.get("prompt_tokens"),
                                                                            (int, float)) else ""
        print(f"  {f['name']:<{width}} {text}{extra}")


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
