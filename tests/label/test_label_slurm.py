"""The SLURM array script: one shard per task, then a merge job (bash-simulated, and on a real
one-node SLURM)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.teacher import folder_name, resolve
from testkit.label_builders import read_jsonl, write_config, write_shards

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "pipeline" / "slurm" / "label_array.sbatch"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PROVIDER="rules", DATA_DIR=str(tmp), LABEL_CONFIG=str(tmp / "c.yaml"),
               PY=str(ROOT / ".venv" / "bin" / "python"), PYTHONPATH=str(ROOT))
    env.pop("MERGE_ONLY", None)
    env.update(extra)
    return env


def _results(tmp: Path) -> Path:
    """The rules teacher's own folder, where the script (like `make label`) writes."""
    return tmp / "labeling" / "results" / folder_name(resolve(tmp / "c.yaml", "rules", None))


def test_array_task_labels_its_shard_then_merge(tmp_path: Path) -> None:
    write_shards(tmp_path, shards=3, per_shard=4)
    write_config(tmp_path / "c.yaml")
    res = _results(tmp_path)
    for task in ("2", "0"):
        p = subprocess.run(["bash", str(SCRIPT)], env=_env(tmp_path, SLURM_ARRAY_TASK_ID=task), cwd=ROOT,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert f"shard 000{task}" in p.stdout
    assert (res / "input_part_0002.jsonl").exists() and not (res / "input_part_0001.jsonl").exists()
    assert len(read_jsonl(res / "dataset.jsonl")) == 8  # the merge after each task covers 2 of 3 shards
    p = subprocess.run(["bash", str(SCRIPT)], env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "SLURM_ARRAY_TASK_ID is not set" in p.stderr
    p = subprocess.run(["bash", str(SCRIPT)], env=_env(tmp_path, MERGE_ONLY="1"), cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.slow
def test_real_sbatch_array_with_concurrency_cap(tmp_path: Path, slurm_cluster: None) -> None:
    write_shards(tmp_path, shards=3, per_shard=3)
    write_config(tmp_path / "c.yaml")
    env = _env(tmp_path)
    jid = subprocess.run(["sbatch", "--parsable", "--export=ALL", "--array=0-2%2", f"--chdir={ROOT}",
                          f"--output={tmp_path}/task_%A_%a.out", str(SCRIPT)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    merge = subprocess.run(["sbatch", "--wait", "--export=ALL", f"--dependency=afterok:{jid}",
                            f"--chdir={ROOT}",
                            f"--output={tmp_path}/merge.out", str(SCRIPT)], env=dict(env, MERGE_ONLY="1"),
                           cwd=ROOT, capture_output=True, text=True, timeout=240)
    logs = "\n".join(p.read_text() for p in tmp_path.glob("*.out"))
    assert merge.returncode == 0, merge.stderr + logs
    rows = read_jsonl(_results(tmp_path) / "dataset.jsonl")
    assert len(rows) == 9 and len({r["id"] for r in rows}) == 9
