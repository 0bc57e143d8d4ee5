"""README's "I train with LLaMA-Factory" block, as written, and the checks it relies on.

The block is read from README.md and each line run as one `make` call in the test's own folders:
LF's venv is built (or found) by `make lf-venv`, LF's own code renders every SFT row of the
embedded demo set and must give the SDK's token ids, `llamafactory-cli train` trains the tiny
base for a few CPU steps, and the imported adapter is merged, quantized and screened by the SDK.
Then the parity check is shown to fail on the skews it exists for (the seed's newline-joined
alpaca export, another LF template), so its "identical" cannot be an artefact.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from make_builders import ROOT, Make, jsonl

from psyedge.contract import validate

SECTION = "### I train with LLaMA-Factory"
LF_PY = ROOT / ".venv-lf" / "bin" / "python"


def readme_block() -> list[list[str]]:
    """make arguments of each line of the section's first bash block."""
    text = (ROOT / "README.md").read_text("utf-8")
    block = re.search(r"```bash\n(.*?)```", text[text.index(SECTION):], re.S)
    assert block, f"README.md: no ```bash block under {SECTION!r}"
    calls = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "make", f"README LLaMA-Factory line is not a make call: {line!r}"
            calls.append(words[1:])
    return calls


@pytest.fixture(scope="module")
def lf_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Make, Path]:
    tmp = tmp_path_factory.mktemp("lf")
    make = Make(tmp)
    make.folders()
    for args in readme_block():
        make.ok(*args, timeout=3600)
    return make, tmp


pytestmark = pytest.mark.slow


def test_lf_renders_every_demo_row_as_the_sdk_does(lf_run: tuple[Make, Path]) -> None:
    _, tmp = lf_run
    report = json.loads((tmp / "models/tiny-lf/lf_parity.json").read_text("utf-8"))
    rows = jsonl(tmp / "data/datasets/sft_student_mental.jsonl")
    assert report["template"] == "deepseek-r1" and report["lf_template"] == "deepseekr1"
    assert report["mismatches"] == []
    assert report["rows"] == report["identical"] == len(rows) > 0


def test_lf_trained_and_the_sdk_screens_its_model(lf_run: tuple[Make, Path]) -> None:
    _, tmp = lf_run
    run = tmp / "models/tiny-lf"
    log = jsonl(run / "llamafactory/trainer_log.jsonl")
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]  # 4 steps of the tiny recipe, learning
    manifest = json.loads((run / "merged/psyedge.json").read_text("utf-8"))
    source = manifest["adapter_source"]
    assert source["trainer"] == "llamafactory" and source["recorded"] is True
    assert Path(source["imported_from"]) == (run / "llamafactory").resolve()
    answers = jsonl(tmp / "reports/assess.jsonl")
    assert answers and len(answers) == len(jsonl(ROOT / "pipeline/samples/demo_conversations.jsonl"))
    for a in answers:
        validate(a["labels"])


def _parity(recipe: Path, *extra: str) -> tuple[int, dict]:
    out = recipe.parent / "parity.json"
    proc = subprocess.run([str(LF_PY), "-m", "training.lf_parity", "--recipe", str(recipe),
                           "--json", str(out), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads(out.read_text("utf-8"))


def test_parity_catches_the_newline_skew_and_another_template(lf_run: tuple[Make, Path]) -> None:
    _, tmp = lf_run
    recipe = yaml.safe_load((tmp / "models/tiny-lf/llamafactory.yaml").read_text("utf-8"))
    rows = {r["id"]: r for r in jsonl(tmp / "data/datasets/sft_student_mental.jsonl")}
    # The seed's export: instruction and input as separate alpaca columns, which LF's converter
    # joins with a "\n" the Screener never sends.
    seed = tmp / "seed-style"
    seed.mkdir()
    info = json.loads((tmp / "data/datasets/dataset_info.json").read_text("utf-8"))
    for entry in info.values():
        entry["columns"]["query"] = "input"
        lines = [json.loads(x) for x in
                 (tmp / "data/datasets" / entry["file_name"]).read_text("utf-8").splitlines()]
        (seed / entry["file_name"]).write_text("".join(
            json.dumps({k: rows[r["id"]][k] for k in ("id", "instruction", "input", "output")},
                       ensure_ascii=False) + "\n" for r in lines), "utf-8")
    (seed / "dataset_info.json").write_text(json.dumps(info), "utf-8")
    (seed / "sft_student_mental.jsonl").write_text(
        (tmp / "data/datasets/sft_student_mental.jsonl").read_text("utf-8"), "utf-8")
    seed_recipe = seed / "recipe.yaml"
    seed_recipe.write_text(yaml.safe_dump({**recipe, "dataset_dir": str(seed)}), "utf-8")
    rc, report = _parity(seed_recipe)
    assert rc == 1 and report["identical"] == 0 and len(report["mismatches"]) == len(rows)
    assert all("\\n" in m["lf"] + m["sdk"] for m in report["mismatches"]), report["mismatches"][:2]

    rc, report = _parity(tmp / "models/tiny-lf/llamafactory.yaml", "--lf-template", "qwen")
    assert rc == 1 and report["lf_template"] == "qwen" and report["mismatches"]
