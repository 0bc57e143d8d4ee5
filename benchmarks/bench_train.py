"""The tiny profile's training step: seconds per step, tokens per second, dtype
(`make bench BENCH_MODE=full`).

Run: `.venv/bin/python -m pytest benchmarks/bench_train.py --benchmark-only` (not part of the
test suite: timings are not pass/fail material on a shared machine).

Cases, each a fresh `python -m benchmarks.train_step` process:
- `auto`: what `make train PROFILE=tiny` computes in on this machine;
- `float32` and `bfloat16`: both dtypes forced, so their ratio on this CPU is on record;
- `avx2-auto` and `avx2-bfloat16`: the same under `ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2`,
  a CPU without AVX-512 and AMX reproduced on this one. `avx2-bfloat16 / avx2-auto` is the slowdown
  the dtype rule avoids (measured on an AVX2-only AMD EPYC: 17-19 s against 0.55 s per step).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2"}
#: (case, dtype, extra environment, timed steps): emulated bf16 costs seconds a step, so fewer.
CASES = [
    ("auto", "auto", {}, 6),
    ("float32", "float32", {}, 6),
    ("bfloat16", "bfloat16", {}, 6),
    ("avx2-auto", "auto", AVX2_ENV, 6),
    ("avx2-bfloat16", "bfloat16", AVX2_ENV, 2),
]


def run_case(dtype: str, env: dict[str, str], steps: int, work: Path) -> dict[str, Any]:
    """One measurement process; its last stdout line is the JSON result."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--dtype", dtype, "--steps",
                           str(steps),
                           "--work", str(work)], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"train_step failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train-step")


@pytest.mark.parametrize(("case", "dtype", "env", "steps"), CASES, ids=[c[0] for c in CASES])
def test_bench_train_step(benchmark: Any, work: Path, case: str, dtype: str, env: dict[str, str],
                          steps: int) -> None:
    results: list[dict[str, Any]] = []
    benchmark.pedantic(lambda: results.append(run_case(dtype, env, steps, work)), rounds=1, iterations=1)
    got = results[-1]
    benchmark.extra_info.update(got)
    print(f"\n{case}: {got['dtype']} {got['s_per_step']:.3f} s/step, {got['tokens_per_s']:.0f} tokens/s "
          f"({got['dtype_reason']})")
    assert got["s_per_step"] > 0 and got["tokens_per_s"] > 0
    if case.startswith("avx2"):
        assert got["aten_cpu_capability"] == "AVX2", got
    if case == "avx2-auto":
        assert got["dtype"] == "float32", got  # the rule must not pick emulated bf16
