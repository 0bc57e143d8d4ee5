"""Run `psyedge_driver` builds on the parity cases and hold them to the Python SDK's answers.

    arm_parity.py --golden build/golden --cases build/arm/cases --runs build/arm/runs \\
        --build host=build/arm/host/psyedge_driver \\
        --build dotprod=build/arm/dotprod/psyedge_driver \\
        --build i8mm=build/arm/i8mm/psyedge_driver \\
        --emulator "qemu-aarch64-static -cpu max" \\
        --models tiny tiny-shared tiny-ctx gemma gemma-q4_0

One test per (build, model): the driver replays the model's cases in the golden's order and
every conversation must give the Python `Screener`'s labels (the model's own risk flag, before
the lexicon, which is Kotlin's part), its token counts and decode calls and guess misses, its
`trimmed`, and probabilities within the tolerance below. Builds named `host` run natively (they
link the SDK's own libllama.so); the others run under `--emulator`. The last line printed is
`N passed, N failed`; the exit status is 1 on any failure.

Probability tolerance (derived per model, not chosen). ARM's kernels (NEON, dot-product or
i8mm, ARM's repacking of Q4_0/Q4_K) compute the same products as x86's and sum them in another
order, so an ARM build may differ from the SDK on x86 by what reordering float arithmetic does
to that model, and no more. That amount is measured on x86 by `arm_cases.py`: the same
conversations scored with llama.cpp's other exact attention (flash attention off instead of on),
the largest probability difference being the model's `reorder_spread` (measured on the goldens'
conversations: 0.006 to 0.025 for the random f32 tiny models, 0.083 for Gemma-3-270M Q4_0 and
0.10 for Q4_K_M, whose large activations amplify rounding through 18 layers; ARM builds measured
4e-4 to 6e-4 and 0.046 to 0.077). ARM builds must stay within it.
`host` builds run the very libllama.so the SDK ran, with the same threads and batches: only the
engine's float64 sums can differ, so 1e-6 (as the host JVM ParityTest). Labels, which a near tie
could flip, are compared exactly on their own.

Emulated builds replay a prefix of the slow models' cases (`EMULATED_CASES`, why there).
`--tolerance` replaces the ARM bound (to show the check can fail); `--no-run` compares the runs
already in `--runs`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Bound for builds that run the SDK's own libllama.so.
HOST_TOLERANCE = 1e-6
#: Timing and counting fields of the driver's stats that must equal the golden's timings.
COUNTS = ("decode_calls", "guess_misses", "prompt_tokens", "cached_tokens", "new_tokens")
#: Whole-run limit per driver run (Gemma under qemu on 2 busy cores takes minutes, never an hour).
RUN_TIMEOUT_S = 3600
#: Under qemu the driver runs ~10-50x slower than natively (Gemma: ~2 min to load and repack, ~1
#: min per conversation on 2 busy cores; the tiny models' 3,300-token byte-level prompts ~6 min
#: each), so emulated builds replay only the first N golden conversations of these models. A
#: prefix of the replay order is still exact: each result depends only on the ones before it.
#: `--all-cases` replays everything. Models not listed here run in full.
EMULATED_CASES = {"tiny": 14, "tiny-shared": 14, "gemma": 2, "gemma-q4_0": 2, "tuned": 2}
#: ARM builds that only change quantized-integer kernels (i8mm's SMMLA repacking of Q4_0/Q4_K) run
#: only the quantized models; the f32 tiny models take the same NEON path as the dotprod build.
QUANTIZED_ONLY = {"i8mm": ("gemma", "gemma-q4_0", "tuned")}


@dataclass
class Outcome:
    """One (build, model) test: what differed, the largest probability difference, wall time."""

    build: str
    model: str
    problems: list[str] = field(default_factory=list)
    max_diff: float = 0.0
    tolerance: float = 0.0
    seconds: float = 0.0
    cases: int = 0


def tolerance(build: str, spread: float, arm_override: float | None) -> float:
    """The probability bound of one (build, model) test (module docstring)."""
    if build == "host":
        return HOST_TOLERANCE
    if arm_override is not None:
        return arm_override
    return max(spread, HOST_TOLERANCE)


def run_driver(
    driver: Path, emulator: list[str], cases: Path, out: Path, threads: int
) -> tuple[float, str]:
    """Run one driver on one cases file into `out`; returns (seconds, error text or "")."""
    doc = json.loads(cases.read_text("utf-8"))
    cmd = [
        *emulator,
        str(driver),
        "--model",
        doc["model"],
        "--cases",
        str(cases),
        "--threads",
        str(threads),
        *(["--adapter", doc["adapter"]] if doc.get("adapter") else []),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with out.open("w", encoding="utf-8") as fh:
        try:
            proc = subprocess.run(
                cmd,
                stdout=fh,
                stderr=subprocess.PIPE,
                text=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, f"timed out after {RUN_TIMEOUT_S} s: {shlex.join(cmd)}"
    err = proc.stderr.strip()[-2000:]
    if proc.returncode != 0:
        err = f"exit {proc.returncode}: {shlex.join(cmd)}\n{err}"
    return time.perf_counter() - t0, err if proc.returncode != 0 else ""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").split("\n") if line.strip()]


def compare(
    outcome: Outcome,
    golden: list[dict[str, Any]],
    cases: list[dict[str, Any]],
    got: list[dict[str, Any]],
) -> None:
    """Fill `outcome.problems` and `outcome.max_diff` from the driver's lines against the golden."""
    if got and "error" in got[-1]:
        outcome.problems.append(f"driver error: {got[-1]['error']}")
    results = [g for g in got if "id" in g]
    outcome.cases = len(results)
    if len(results) != len(golden):
        outcome.problems.append(f"{len(results)} results for {len(golden)} golden conversations")
    for want_row, case, res in zip(golden, cases, results, strict=False):  # lengths checked above
        cid, want = want_row["id"], want_row["result"]
        if res["id"] != cid:
            outcome.problems.append(f"result {res['id']} where {cid} was expected (order differs)")
            continue
        wanted = dict(want["labels"], risk_flag=want["model_risk_flag"])  # the model's own flag
        for f, v in wanted.items():
            if str(res["labels"][f]) != str(v):
                outcome.problems.append(f"{cid}: {f} {res['labels'][f]} where Python says {v}")
        for k in COUNTS:
            if int(res["stats"][k]) != int(want["timings"][k]):
                outcome.problems.append(
                    f"{cid}: {k} {int(res['stats'][k])} where Python says {want['timings'][k]}"
                )
        trimmed = case["trimmed"] or res["stats"]["cut"] != 0
        if trimmed != want["trimmed"]:
            outcome.problems.append(f"{cid}: trimmed {trimmed} where Python says {want['trimmed']}")
        for f, values in want["probabilities"].items():
            for v, p in values.items():
                d = abs(float(res["probabilities"][f][v]) - float(p))
                outcome.max_diff = max(outcome.max_diff, d)
                if d > outcome.tolerance:
                    outcome.problems.append(
                        f"{cid}: P({f}={v}) {res['probabilities'][f][v]:.6g} vs Python "
                        f"{p:.6g}: |diff| {d:.3g} > {outcome.tolerance:g}"
                    )


def quant_type(path: str) -> str:
    """The model's file type as llama.cpp names it (general.file_type), for the report."""
    try:
        from gguf import GGUFReader, LlamaFileType

        reader = GGUFReader(path)
        ftype = reader.fields["general.file_type"]
        return LlamaFileType(int(ftype.parts[ftype.data[0]][0])).name.removeprefix("MOSTLY_")
    except (ImportError, KeyError, ValueError, OSError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path, required=True)
    ap.add_argument("--cases", type=Path, required=True, help="arm_cases.py's output folder")
    ap.add_argument("--runs", type=Path, required=True, help="folder for the drivers' JSON lines")
    ap.add_argument(
        "--build",
        action="append",
        required=True,
        metavar="NAME=DRIVER",
        help="a driver binary; NAME 'host' runs natively, others under --emulator",
    )
    ap.add_argument("--emulator", default="qemu-aarch64-static -cpu max")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--tolerance", type=float, default=None, help="replace the ARM probability tolerance"
    )
    ap.add_argument("--no-run", action="store_true", help="compare the runs already in --runs")
    ap.add_argument("--all-cases", action="store_true", help="emulated builds replay all cases")
    args = ap.parse_args(argv)

    builds = dict(b.split("=", 1) for b in args.build)
    outcomes: list[Outcome] = []
    for name, driver in builds.items():
        emulator = [] if name == "host" else shlex.split(args.emulator)
        for model in args.models:
            if model not in QUANTIZED_ONLY.get(name, args.models):
                continue
            doc = json.loads((args.cases / f"cases-{model}.json").read_text("utf-8"))
            spread = float(doc["reorder_spread"])
            o = Outcome(name, model, tolerance=tolerance(name, spread, args.tolerance))
            golden = read_jsonl(args.golden / f"parity-{model}.jsonl")
            if emulator and not args.all_cases and model in EMULATED_CASES:
                doc["cases"] = doc["cases"][: EMULATED_CASES[model]]
                golden = golden[: EMULATED_CASES[model]]
            cases_path = args.runs / f"{name}-{model}.cases.json"
            run = args.runs / f"{name}-{model}.jsonl"
            if not args.no_run:
                args.runs.mkdir(parents=True, exist_ok=True)
                cases_path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
                o.seconds, err = run_driver(Path(driver), emulator, cases_path, run, args.threads)
                if err:
                    o.problems.append(err)
            compare(o, golden, doc["cases"], read_jsonl(run) if run.is_file() else [])
            outcomes.append(o)
            verdict = "PASS" if not o.problems else "FAIL"
            print(
                f"{verdict} {name}/{model}: {o.cases} conversations, max |dP| {o.max_diff:.3g} "
                f"(tolerance {o.tolerance:g}), {o.seconds:.1f} s",
                flush=True,
            )
            for p in o.problems[:20]:
                print(f"     {p}")
            if len(o.problems) > 20:
                print(f"     ... {len(o.problems) - 20} more")

    print(
        "largest probability difference per model and quant type (against the Python SDK on x86):"
    )
    types: dict[str, str] = {}
    for model in args.models:
        doc = json.loads((args.cases / f"cases-{model}.json").read_text("utf-8"))
        types[model] = quant_type(doc["model"])
        row = ", ".join(f"{o.build} {o.max_diff:.3g}" for o in outcomes if o.model == model)
        print(f"  {model} ({types[model]}): {row}")
    passed = sum(not o.problems for o in outcomes)
    print(f"{passed} passed, {len(outcomes) - passed} failed")
    return 0 if passed == len(outcomes) and outcomes else 1


if __name__ == "__main__":
    sys.exit(main())
