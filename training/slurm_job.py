"""One SLURM job per run: its id is recorded, and nothing submits the run again while it lives.

A queued or running training job has not written its adapter yet, so to make the run looks
untrained: `make merge` would submit a second job into the same folder (two trainers writing one
set of checkpoints). `training.train --submit slurm` records the job in `<run>/slurm_job.json`;
before submitting, and before make builds anything of that run, `live_job` asks SLURM for the
job's state; while it is pending or running the request is refused with the job id, state and log.

    python -m training.slurm_job check models/a40     # prints the refusal (one line) or nothing
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.io import atomic_write_json

RECORD = "slurm_job.json"
#: Job states in which the job may still write to the run folder (squeue(1) "JOB STATE CODES").
LIVE_STATES: frozenset[str] = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
    }
)


@dataclass(frozen=True)
class Job:
    """A recorded job and the state SLURM reports for it now."""

    job_id: str
    state: str
    log: str


def log_path(run_dir: Path, job_id: str) -> Path:
    """Where the job writes its output (`training.train.sbatch_command` passes this --output)."""
    return run_dir / "logs" / f"slurm-{job_id}.out"


def record(run_dir: Path, job_id: str) -> None:
    """Remember the submitted job (atomically; the last submission wins)."""
    atomic_write_json(
        run_dir / RECORD,
        {
            "job_id": job_id,
            "log": str(log_path(run_dir, job_id)),
            "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def job_state(job_id: str) -> str:
    """SLURM's state of the job; GONE once slurmctld forgot it (ended long ago) or no SLURM here."""
    if shutil.which("scontrol") is None:
        return "GONE"  # no SLURM client on this machine: nothing here can submit either
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    m = re.search(r"\bJobState=(\S+)", proc.stdout)
    return m.group(1) if proc.returncode == 0 and m else "GONE"


def live_job(run_dir: Path) -> Job | None:
    """The run's recorded job if it is pending or running, else None."""
    path = run_dir / RECORD
    if not path.is_file():
        return None
    info = json.loads(path.read_text("utf-8"))
    job_id = str(info["job_id"])
    state = job_state(job_id)
    return (
        Job(job_id, state, info.get("log", str(log_path(run_dir, job_id))))
        if state in LIVE_STATES
        else None
    )


def busy_message(run_dir: Path, job: Job) -> str:
    """One line refusing to build or submit anything of `run_dir` while `job` lives."""
    return (
        f"{run_dir}: SLURM job {job.job_id} is {job.state} (log {job.log}); this run is not "
        f"submitted again while it lives: wait for it (squeue -j {job.job_id}) or cancel it "
        f"(scancel {job.job_id}), "
        "then re-run the same command"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "check":
        print("usage: python -m training.slurm_job check RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(args[1])
    job = live_job(run_dir)
    if job is not None:
        print(busy_message(run_dir, job))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
