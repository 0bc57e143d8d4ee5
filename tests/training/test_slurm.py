"""The sbatch script under a real one-node SLURM (training/slurm/local_cluster.sh starts it).

Outside CI these tests skip when SLURM is not installed; in CI (CI=true) that is a failure.
They need root to start the daemons (CI containers run as root), and take 2-4 minutes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from training import sft, train
from training.config import profile_path
from training.synthetic import write_rule_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def cluster(slurm_cluster: None) -> None:
    """The shared one-node SLURM (root conftest.py starts it with local_cluster.sh)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slurm-data")
    write_rule_dataset(path, 120, seed=1)
    sft.build_sft(path, "deepseek-r1")
    return path


def _config(tmp: Path, **overrides) -> Path:
    cfg = yaml.safe_load(profile_path("tiny").read_text())
    cfg.update(overrides)
    path = tmp / "profile.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _job(job_id: str) -> dict[str, str]:
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    if proc.returncode != 0:  # aged out of slurmctld's memory: it finished long ago
        return {"JobState": "GONE"}
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def _wait(job_id: str, until, what: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _job(job_id)
        if until(info):
            return info
        if info.get("JobState") in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            pytest.fail(f"job {job_id} ended {info.get('JobState')} while waiting for {what}: "
                        f"{info.get('Reason')}")
        time.sleep(1)
    pytest.fail(f"job {job_id}: timed out after {timeout}s waiting for {what}; last state {_job(job_id)}")


def _submit(tiny_base: Path, data: Path, out: Path, config: Path, monkeypatch) -> str:
    monkeypatch.setenv("PSYEDGE_PYTHON", sys.executable)  # the job runs this interpreter
    job = train.preflight("tiny", str(tiny_base), data, out, config)
    job_id = train.submit_slurm(job, [])
    assert job_id.isdigit(), job_id
    return job_id


def test_sbatch_trains_the_tiny_profile(cluster, tiny_base: Path, data: Path, tmp_path: Path,
                                        monkeypatch) -> None:
    out = tmp_path / "run"
    job_id = _submit(tiny_base, data, out, _config(tmp_path, max_steps=12, eval_steps=6, save_steps=6),
                     monkeypatch)
    info = _wait(job_id, lambda i: i.get("JobState") == "COMPLETED", "completion")
    log_text = (out / "logs" / f"slurm-{job_id}.out").read_text()
    assert info.get("Partition") == "A40" and "gpu" in info.get("TresPerNode", ""), info
    assert (out / "adapter" / "adapter_model.safetensors").is_file(), log_text[-3000:]
    assert json.loads((out / "train_results.json").read_text())["global_step"] == 12


def test_checkpoint_signal_requeues_and_resumes(cluster, tiny_base: Path, data: Path, tmp_path: Path,
                                                monkeypatch) -> None:
    out = tmp_path / "run"
    config = _config(tmp_path, max_steps=40, save_steps=4, eval_steps=20, logging_steps=1)
    job_id = _submit(tiny_base, data, out, config, monkeypatch)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (out / "checkpoints" / "checkpoint-4").is_dir():  # mid-run: past the first checkpoint
        assert time.monotonic() < deadline, "no checkpoint-4 before the timeout"
        assert _job(job_id).get("JobState") in ("PENDING", "RUNNING"), _job(job_id)
        time.sleep(0.5)
    # What SLURM does before the time limit (--signal=B:USR1@300), sent now.
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
    _wait(job_id, lambda i: i.get("Restarts", "0") != "0" and i.get("JobState") == "PENDING", "the requeue")
    # A requeued job waits ~2 minutes (BeginTime) before it is eligible, the life of the killed
    # run's credential: slurmd refuses to launch the same job id before it expires ("Job already
    # killed, do not launch batch job", the job then FAILED), so forcing StartTime=now races it.
    _wait(job_id, lambda i: i.get("JobState") == "COMPLETED", "completion after the requeue")

    log_text = (out / "logs" / f"slurm-{job_id}.out").read_text()
    stopped = re.search(r"checkpoint requested: saving at step (\d+)", log_text)
    resumed = re.search(r"resuming from \S+checkpoint-(\d+) \(step (\d+)\)", log_text)
    assert stopped and resumed, log_text[-4000:]
    step = int(stopped.group(1))
    assert 4 <= step < 40 and int(resumed.group(2)) == step
    assert "SIGUSR1" in log_text and f"requeueing job {job_id}" in log_text and "restart 1" in log_text
    results = json.loads((out / "train_results.json").read_text())
    assert results["resumed_from_step"] == step and results["global_step"] == 40
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not (out / train.CHECKPOINT_FLAG).exists()
