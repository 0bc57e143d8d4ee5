"""`make demo`: run every stage on the embedded default and say where each artifact landed.

The demo is not a second implementation: each step is the stage's own make target, run as a
sub-make, so the demo, the end-to-end test and the real run share one code path. Variables given
to `make demo` (DATA_DIR=..., MODELS_DIR=...) reach the sub-makes through MAKEFLAGS; this module
only adds the embedded defaults (rules teacher, tiny profile, quick benchmarks) and reports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.configure import read_config
from pipeline.layout import Layout
from pipeline.teacher import folder_name, resolve


@dataclass(frozen=True)
class Step:
    """One demo step: a label for the status line and the make goals it runs."""

    name: str
    goals: tuple[str, ...]


#: The chain, in order. Variables are the embedded default; the real run sets others.
STEPS: tuple[Step, ...] = (
    Step("data", ("data",)),
    Step("label", ("label",)),
    Step("sft", ("sft",)),
    Step("train", ("train",)),
    Step("merge+gguf+quantize", ("merge", "gguf", "quantize")),
    Step("assess", ("assess",)),
    Step("bench", ("bench",)),
)
DEFAULTS = {"PROVIDER": "rules", "PROFILE": "tiny", "SUBMIT": "local", "BENCH_MODE": "quick"}


def _flag(name: str) -> str | None:
    """A `NAME=value` make passes to sub-makes in MAKEFLAGS (a command-line variable), or None."""
    for word in os.environ.get("MAKEFLAGS", "").split():
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _setting(name: str, default: str) -> str:
    """A make variable as the sub-makes will see it (command line > `make configure`'s file >
    environment > default)."""
    flag = _flag(name)
    if flag is not None:
        return flag
    config_file = _flag("PSYEDGE_CONFIG") or os.environ.get("PSYEDGE_CONFIG", "config.mk")
    configured = read_config(Path(config_file))
    return configured.get(name) or os.environ.get(name, default)


def artifacts() -> dict[str, Path]:
    """Where each stage's main output lands, for the closing summary."""
    data = Path(_setting("DATA_DIR", "data"))
    label_config = Path(_setting("LABEL_CONFIG", "pipeline/label_config.yaml"))
    teacher = folder_name(resolve(label_config, "rules", None))
    run = Path(_setting("MODELS_DIR", "models")) / _setting("RUN", _setting("PROFILE", "tiny"))
    reports = Path(_setting("REPORTS_DIR", "reports"))
    return {
        "unified data": Layout(data).unified,
        "stats": Layout(data).stats,
        "labeling shards": Layout(data).labeling,
        "teacher labels": Layout(data).dataset(teacher),
        "SFT set": Layout(data).sft,
        "adapter": run / "adapter",
        "merged model": run / "merged",
        "GGUF f16": run / "model-f16.gguf",
        "GGUF Q4_K_M": run / "model-Q4_K_M.gguf",
        "assessments": reports / "assess.jsonl",
        "benchmark report": reports / "bench" / "report.md",
    }


def _mtimes() -> dict[Path, int]:
    """Modification times of every artifact file (folders: their files), to see what a step rebuilt."""
    out: dict[Path, int] = {}
    for path in artifacts().values():
        files = [path] if path.is_file() else (sorted(path.rglob("*")) if path.is_dir() else [])
        out.update({f: f.stat().st_mtime_ns for f in files if f.is_file()})
    return out


def run_step(step: Step, make: str, extra: list[str]) -> tuple[bool, float, bool]:
    """Run one step's goals; return (ok, seconds, whether it rewrote no artifact)."""
    before = _mtimes()
    t0 = time.perf_counter()
    proc = subprocess.run([make, "--no-print-directory", *extra, *step.goals])
    return proc.returncode == 0, time.perf_counter() - t0, _mtimes() == before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make", default=os.environ.get("MAKE", "make"))
    ap.add_argument("--only", nargs="*", help="run only these steps (names as printed)")
    args = ap.parse_args(argv)

    extra = [f"{k}={_setting(k, v)}" for k, v in DEFAULTS.items()]
    status: list[str] = []
    t_all = time.perf_counter()
    for i, step in enumerate(STEPS, 1):
        if args.only and step.name not in args.only:
            continue
        print(f"\n==> [{i}/{len(STEPS)}] {step.name}: make {' '.join(step.goals)}", flush=True)
        ok, secs, fresh = run_step(step, args.make, extra)
        line = f"[{i}/{len(STEPS)}] {step.name:<20} {'ok' if ok else 'FAILED':<6} {secs:6.1f} s" + (
            "  (nothing to redo)" if fresh and ok else "")
        status.append(line)
        print(line, flush=True)
        if not ok:
            print("\n".join(["", "demo stopped:", *status]), file=sys.stderr)
            return 1
    print(f"\ndemo finished in {time.perf_counter() - t_all:.1f} s")
    print("\n".join(status))
    print("\nartifacts:")
    for name, path in artifacts().items():
        print(f"  {name:<17} {path}{'' if path.exists() else '  (missing)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
