"""Shared pytest settings: where the real data lives (one setting: env PSYEDGE_DATA).

Outside CI a test that needs the real data skips with the reason; in CI (CI=true) the data's
absence fails the test instead, so a CI run can never go green without having read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def real_data_dir() -> Path:
    """`$PSYEDGE_DATA`, default `../shared/data` beside the checkout."""
    return Path(os.environ.get("PSYEDGE_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder, or a skip (a failure in CI) naming what is missing."""
    path = real_data_dir()
    if not (path / "cpsycoun").is_dir():
        msg = (f"real data not found at {path} "
               "(set PSYEDGE_DATA to the folder with cpsycoun/, psyqa/, psysuicide/)")
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI requires it", pytrace=False)
        pytest.skip(msg)
    return path


LOCAL_CLUSTER = ROOT / "training" / "slurm" / "local_cluster.sh"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI requires SLURM (.ci/system-deps.sh installs slurm-wlm and munge)",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A one-node SLURM (partition A40, one gpu gres) for tests that submit with sbatch.

    Started by `training/slurm/local_cluster.sh` (idempotent) when run as root; otherwise an
    already running cluster is used. Missing SLURM skips outside CI and fails in CI.
    """
    missing = [c for c in ("sbatch", "scontrol", "slurmctld", "slurmd", "munged") if shutil.which(c) is None]
    if missing:
        _unavailable(f"SLURM is not installed (missing {missing}): apt-get install -y slurm-wlm munge")
    if os.geteuid() != 0:
        status = subprocess.run(["bash", str(LOCAL_CLUSTER), "status"], capture_output=True, text=True)
        if status.returncode != 0:
            _unavailable(f"no SLURM cluster is running and starting one needs root: sudo {LOCAL_CLUSTER}")
        return
    proc = subprocess.run(["bash", str(LOCAL_CLUSTER)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"local_cluster.sh failed:\n{proc.stdout}\n{proc.stderr}"
