"""One job per run on the local one-node SLURM: a queued job blocks every rebuild of its run.

`make train` with `SUBMIT=slurm SBATCH_ARGS=--hold` queues the tiny profile held (PENDING until
released); while it is, `make train`, `make merge` and `training.train` refuse, naming the job,
its state and its log, and SLURM holds one job of the run. Released, it trains; then `make merge`
proceeds. Outside CI this skips when SLURM is not installed; in CI that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from make_builders import ROOT, Make

from training import slurm_job, train

JOB_TIMEOUT_S = 1800


def _state(job_id: str) -> str:
    return slurm_job.job_state(job_id)


def test_readme_names_the_log_the_job_writes() -> None:
    """README's log path is the one sbatch is given (both come from slurm_job.log_path)."""
    readme = (ROOT / "README.md").read_text("utf-8")
    assert str(slurm_job.log_path(Path("models/a40"), "<jobid>")) in readme
    assert "train-<jobid>" not in readme
    job = train.Job("tiny", Path("p.yaml"), None, Path("base"), Path("data"), Path("/runs/x"))  # type: ignore[arg-type]
    assert "--output=/runs/x/logs/slurm-%j.out" in train.sbatch_command(job, [])


@pytest.mark.slow
def test_a_pending_job_blocks_resubmission_and_merge_follows_it(
    slurm_cluster: None, tmp_path: Path
) -> None:
    run = f"slurmguard{os.getpid()}"
    make = Make(tmp_path, PSYEDGE_PYTHON=sys.executable)  # the job runs this interpreter
    make.folders(PROFILE="tiny", SUBMIT="slurm", RUN=run, SBATCH_ARGS="--hold")
    make.ok("train")
    run_dir = tmp_path / "models" / run
    job_id = json.loads((run_dir / slurm_job.RECORD).read_text())["job_id"]
    try:
        assert _state(job_id) == "PENDING"
        log = run_dir / "logs" / f"slurm-{job_id}.out"
        for goal in ("train", "merge"):
            refused = make.run(goal)
            assert refused.returncode != 0, goal
            assert f"SLURM job {job_id} is PENDING (log {log})" in refused.stderr, refused.stderr
        args = [
            "--profile",
            "tiny",
            "--base-model",
            str(tmp_path / "models" / "tiny-base"),
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(run_dir),
            "--submit",
            "slurm",
        ]
        assert train.main(args) == 1
        queued = subprocess.run(
            ["squeue", "-h", "-n", f"psyedge-{run}", "-o", "%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert queued == [job_id], f"expected one job of the run, SLURM has {queued}"

        subprocess.run(["scontrol", "release", job_id], check=True)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while _state(job_id) in slurm_job.LIVE_STATES:
            assert time.monotonic() < deadline, (
                f"job {job_id} still {_state(job_id)} after {JOB_TIMEOUT_S}s"
            )
            time.sleep(2)
        assert _state(job_id) in ("COMPLETED", "GONE"), log.read_text()[-3000:]
        assert re.search(r"job \d+ restart 0", log.read_text())
        merged = make.ok("merge")
        assert "training.merge" in merged.stdout
        assert (run_dir / "merged" / "model.safetensors").is_file()
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)
