"""Options of the benchmark files: the model under test, its template, threads, the 1.5B twin.

Given on the pytest command line (`--bench-model M.gguf --bench-threads 2`), so a run says
what it measured; the reference models come from `benchmarks.models`.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("psyedge benchmarks")
    group.addoption("--bench-model", type=Path, help="a GGUF to measure besides the reference models")
    group.addoption("--bench-template", help="its chat template when the GGUF has no psyedge.template")
    group.addoption("--bench-threads", type=int, default=2, help="llama.cpp threads (default 2)")
    group.addoption("--bench-twin", action="store_true", help="also the 1.5B shape twin (builds 1.1 GB)")


@pytest.fixture(scope="session")
def bench_model(request: pytest.FixtureRequest) -> Path:
    path = request.config.getoption("--bench-model")
    if path is None:
        pytest.skip("no --bench-model given (make bench measures the quantized model in-process)")
    return Path(path)


@pytest.fixture(scope="session")
def bench_template(request: pytest.FixtureRequest) -> str | None:
    return request.config.getoption("--bench-template")


@pytest.fixture(scope="session")
def bench_threads(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--bench-threads"))


@pytest.fixture(scope="session")
def bench_twin(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--bench-twin"))
