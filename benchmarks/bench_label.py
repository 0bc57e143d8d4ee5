"""Labeling throughput against a rate limit: does the labeler reach the RPM it is allowed?

The fake Gemini server (testkit/fake_gemini.py, real HTTP on 127.0.0.1, real google-genai
client) answers after `latency` seconds; the labeler runs with `rpm=R` and enough concurrency
to cover the latency (R/60 * latency requests in flight). Achieved throughput = samples labeled /
(last reply - first request) * 60; the goal is >= 90% of R. It also checks the cost report's
token totals against the sum of the server's `usageMetadata`.

    pytest benchmarks/bench_label.py                          # R=600 rpm, ~20 s (pytest-benchmark)
    python -m benchmarks.bench_label --rpm 600 --seconds 20 --out reports/bench
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import label
from pipeline.layout import Layout
from testkit.fake_gemini import FakeGemini
from testkit.label_builders import write_config, write_shards

ROOT = Path(__file__).resolve().parents[1]


def run_throughput(rpm: float, seconds: float, latency: float, workdir: Path,
                   out: Path | None = None) -> dict[str, Any]:
    """Label rpm*seconds/60 samples at rpm against a server with `latency`; return the measurements."""
    n = int(round(rpm * seconds / 60))
    concurrency = max(4, int(rpm / 60 * latency * 2) + 2)
    write_shards(workdir, shards=2, per_shard=(n + 1) // 2)
    cfg = write_config(workdir / "bench.yaml", concurrency=concurrency, rpm=rpm, timeout=latency * 20)
    saved = {k: os.environ.get(k) for k in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL")}
    with FakeGemini(latency=latency) as fake:
        os.environ.update(GEMINI_API_KEY=fake.api_key, GOOGLE_GEMINI_BASE_URL=fake.url)
        os.environ.pop("GOOGLE_API_KEY", None)
        try:
            rc = label.main(["--provider", "gemini", "--data-dir", str(workdir), "--config", str(cfg)])
            end = time.monotonic()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        times = sorted(fake.stats.times)
        usage = dict(fake.stats.usage)
    assert rc == 0, f"labeler exited {rc}"
    res = Layout(workdir).results()
    labeled = len(Layout(workdir).dataset().read_text("utf-8").splitlines())
    # the end of the last reply: the server saw the last request at times[-1], answered after latency
    span = (times[-1] + latency) - times[0]
    achieved = labeled / span * 60
    cost = json.loads((res / "cost.json").read_text("utf-8"))
    result = {"rpm_limit": rpm, "latency_s": latency, "concurrency": concurrency, "samples": labeled,
              "requests": len(times), "span_s": round(span, 3), "achieved_rpm": round(achieved, 1),
              "achieved_over_limit": round(achieved / rpm, 4), "wall_incl_merge_s": round(end - times[0], 3),
              "cost_tokens": cost["tokens"],
              "server_tokens": {k: usage.get(k, 0) for k in ("input", "output", "thinking")},
              "avg_input_tokens_per_request": cost["avg_input_tokens_per_request"]}
    if out is not None:
        _plot(times, rpm, out)
        (out / "label_throughput.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _plot(times: list[float], rpm: float, out: Path) -> None:
    """Requests started per second over the run, against the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    t0 = times[0]
    secs = [t - t0 for t in times]
    bins = range(int(secs[-1]) + 2)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(secs, bins=list(bins), label="requests started per second")
    ax.axhline(rpm / 60, color="red", linestyle="--", label=f"limit {rpm:g} rpm = {rpm / 60:g}/s")
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel("requests")
    ax.set_title("psyedge labeling throughput (fake Gemini, rate-limited)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "label_throughput.png", dpi=120)
    plt.close(fig)


def test_label_throughput(benchmark: Any, tmp_path: Path) -> None:
    """R = 600 rpm over ~20 s with 200 ms latency: achieved >= 90% of R; cost tokens = server tokens."""
    result = benchmark.pedantic(run_throughput, args=(600, 20, 0.2, tmp_path / "w", tmp_path / "plots"),
                                rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(json.dumps(result, indent=2))
    assert result["achieved_over_limit"] >= 0.9, result
    assert result["achieved_over_limit"] <= 1.02, result  # the limiter must not exceed R either
    assert result["cost_tokens"] == result["server_tokens"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rpm", type=float, default=600)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--out", type=Path, default=None, help="folder for label_throughput.{json,png}")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_throughput(args.rpm, args.seconds, args.latency, Path(tmp), args.out)
    print(json.dumps(result, indent=2))
    return 0 if (result["achieved_over_limit"] >= 0.9
                 and result["cost_tokens"] == result["server_tokens"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
