"""A short version of benchmarks/bench_label.py that runs with the suite: >= 90% of the RPM limit."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench_label import run_throughput


def test_throughput_reaches_rate_limit(tmp_path: Path) -> None:
    result = run_throughput(rpm=1200, seconds=5, latency=0.2, workdir=tmp_path)
    assert result["samples"] == 100
    assert 0.9 <= result["achieved_over_limit"] <= 1.02, result
    assert result["cost_tokens"] == result["server_tokens"]
