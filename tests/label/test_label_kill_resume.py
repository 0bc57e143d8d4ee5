"""`kill -9` mid-shard, re-run: the same dataset.jsonl as an uninterrupted run, nothing re-sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from psyedge.contract import FIELDS
from psyedge.prompt import instruction_and_transcript
from testkit.fake_gemini import FakeGemini, prompt_key
from testkit.label_builders import read_jsonl, write_config, write_shards

ROOT = Path(__file__).resolve().parents[2]


def _cmd(data: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.label", "--provider", "gemini", "--data-dir", str(data),
            "--config", str(cfg)]


def _env(fake: FakeGemini) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GOOGLE_API_KEY"}
    env.update(GEMINI_API_KEY=fake.api_key, GOOGLE_GEMINI_BASE_URL=fake.url, PYTHONPATH=str(ROOT))
    return env


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _comparable(rows: list[dict]) -> list[tuple]:
    return [(r["id"], *(r[k] for k in FIELDS), r["model"], r["prompt_version"]) for r in rows]


def test_sigkill_then_rerun_matches_uninterrupted(tmp_path: Path) -> None:
    prompts = {}
    for d in ("a", "b"):
        write_shards(tmp_path / d, shards=2, per_shard=30)
    for rec in (read_jsonl(tmp_path / "a/labeling/input_part_0000.jsonl")
                + read_jsonl(tmp_path / "a/labeling/input_part_0001.jsonl")):
        prompts[rec["id"]] = prompt_key(instruction_and_transcript(rec["conversation"]))
    cfg = write_config(tmp_path / "c.yaml", concurrency=4, timeout=5)

    with FakeGemini(latency=0.05) as ref:
        assert subprocess.run(_cmd(tmp_path / "a", cfg), env=_env(ref), capture_output=True,
                              cwd=ROOT).returncode == 0
    reference = read_jsonl(tmp_path / "a/labeling/results/dataset.jsonl")

    with FakeGemini(latency=0.05) as fake:
        journal = tmp_path / "b/labeling/results/input_part_0000.jsonl"
        proc = subprocess.Popen(_cmd(tmp_path / "b", cfg), env=_env(fake), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _lines(journal) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        written = read_jsonl(journal)        # every line parses: no torn line
        assert 10 <= len(written) < 30, len(written)
        sent_before = sum(fake.stats.first_requests.values())
        assert sent_before < 60

        rerun = subprocess.run(_cmd(tmp_path / "b", cfg), env=_env(fake), capture_output=True, cwd=ROOT)
        assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
        resumed = read_jsonl(tmp_path / "b/labeling/results/dataset.jsonl")
        assert _comparable(resumed) == _comparable(reference)
        assert len({r["id"] for r in resumed}) == len(resumed) == 60
        # no sample already written before the kill was sent again
        for row in written:
            assert fake.stats.first_requests[prompts[row["id"]]] == 1, row["id"]
        # at most the requests in flight (concurrency 4) were lost and re-sent
        assert sum(fake.stats.first_requests.values()) - 60 <= 4
