"""End to end: `make demo` on a reduced sample, asserting on every stage's artifacts.

This runs the very targets `make demo` runs (the demo runner calls the stage targets; here only
the inputs and output folders differ), so a stage that stops connecting to the next fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.teacher import folder_name, resolve

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "pipeline" / "samples"
pytestmark = pytest.mark.slow


def _reduced_sample(dst: Path) -> dict[str, Path]:
    """A subset of the shipped samples, all three formats (a few files each)."""
    cpsyd = dst / "CPsyCounD"
    cpsyd.mkdir(parents=True)
    for n in (1, 3, 5, 6, 9, 12, 21):
        name = f"case_synth_{n}.txt"
        shutil.copy(SAMPLES / "CPsyCounD" / name, cpsyd / name)
    cpsye = dst / "CPsyCounE"
    shutil.copytree(SAMPLES / "CPsyCounE" / "Family Relationship", cpsye / "Family Relationship")
    shutil.copytree(SAMPLES / "CPsyCounE" / "Emotion&Stress", cpsye / "Emotion&Stress")
    psyqa = dst / "psyqa.json"
    shutil.copy(SAMPLES / "psyqa_sample.json", psyqa)
    return {"PSYQA": psyqa, "CPSYCOUND": cpsyd, "CPSYCOUNE": cpsye}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def test_make_demo_chain_produces_every_artifact(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    from safetensors.numpy import load_file

    from psyedge.contract import validate

    inputs = _reduced_sample(tmp_path / "in")
    data, models, reports = tmp_path / "data", tmp_path / "models", tmp_path / "reports"
    variables = {**{k: str(v) for k, v in inputs.items()},
                 "DATA_DIR": str(data), "MODELS_DIR": str(models), "REPORTS_DIR": str(reports)}
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "demo",
           *(f"{k}={v}" for k, v in variables.items())]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PSYEDGE_CONFIG"] = str(tmp_path / "config.mk")  # not the checkout's own `make configure`
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo finished" in proc.stdout

    # 1. data: every input file is counted, kept or dropped.
    stats = json.loads((data / "processed" / "stats.json").read_text("utf-8"))
    n_files = {"cpsycound": 7, "cpsycoune": sum(1 for _ in inputs["CPSYCOUNE"].rglob("*.json"))}
    for source, n in n_files.items():
        assert stats["inputs"][source] == n
        assert stats["by_source"][source] + sum(stats["dropped_by_source"][source].values()) == n
    unified = _jsonl(data / "processed" / "unified.jsonl")
    assert len(unified) == stats["total"]
    student = _jsonl(data / "processed" / "unified_min.jsonl")
    assert 0 < len(student) <= len(unified)

    # 2. label: exactly one label line per student sample, each schema-valid.
    rules = folder_name(resolve(ROOT / "pipeline" / "label_config.yaml", "rules", None))
    labels = _jsonl(data / "labeling" / "results" / rules / "dataset.jsonl")
    assert sorted(r["id"] for r in labels) == sorted(r["id"] for r in student)
    for row in labels:
        validate({k: row[k] for k in ("depression_level", "anxiety_level", "risk_flag",
                                      "student_distress_score")})

    # 3. sft: one record per labeled sample.
    sft = _jsonl(data / "datasets" / "sft_student_mental.jsonl")
    assert len(sft) == len(labels)

    # 4. train: LoRA B matrices start at zero; after training some are not.
    adapter = load_file(str(models / "tiny" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(abs(v).max() > 0 for v in lora_b)

    # 5. gguf + quantize: a Q4_K_M file with the psyedge contract in its metadata.
    reader = gguf.GGUFReader(str(models / "tiny" / "model-Q4_K_M.gguf"))
    fields = reader.fields
    assert int(fields["general.file_type"].parts[-1][0]) == gguf.LlamaFileType.MOSTLY_Q4_K_M
    def text(key: str) -> str:
        return bytes(fields[key].parts[-1]).decode("utf-8")
    from psyedge.contract import CONTRACT_VERSION
    assert text("psyedge.contract_version") == CONTRACT_VERSION
    assert text("psyedge.template") == "deepseek-r1"
    assert "tokenizer.chat_template" in fields

    # 6. assess: every demo conversation got a schema-valid answer.
    answers = _jsonl(reports / "assess.jsonl")
    demo = _jsonl(SAMPLES / "demo_conversations.jsonl")
    assert len(answers) == len(demo)
    for a in answers:
        validate(a["labels"])

    # 7. bench: the three outputs.
    bench = reports / "bench"
    assert (bench / "summary.json").is_file() and (bench / "report.md").is_file()
    assert list(bench.glob("*.png"))

    # A second run with nothing changed rebuilds nothing.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
