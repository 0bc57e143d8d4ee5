"""Train with LLaMA-Factory on our export: `make train TRAINER=llamafactory`.

    python -m training.lf_train --profile tiny --base-model models/tiny-base --data-dir data \\
        --out models/tiny-lf [--submit local|slurm] [--lf-venv .venv-lf]

LLaMA-Factory runs in its own virtual environment (`make lf-venv`), because its pins differ from
ours. This module only resolves the recipe of the profile (`RECIPES`), checks it against the SFT
set, runs `llamafactory-cli train` (or submits training/slurm/train_llamafactory.sbatch), and
imports the adapter LF writes at the top of its output folder into `<run>/adapter/`, so `make
merge`, `gguf`, `quantize` and `assess` follow unchanged:

    <run>/llamafactory.yaml      the resolved recipe LF ran (model, dataset and output paths filled in)
    <run>/lf_parity.json         LF's token ids vs the SDK's for every SFT row (training.lf_parity)
    <run>/llamafactory/          LF's output_dir: adapter, trainer_state.json, LF's logs
    <run>/llamafactory/psyedge_train.json   what it was trained on (template, prompt hash, SFT hash)
    <run>/adapter/               the imported adapter (training.adapter_import)

The SFT set's template must have an LF mapping (training/sft.py `LF_TEMPLATES`), and the recipe's
`template` must be that mapping: a recipe with another template would train on text the Screener
never renders. Before LF trains, `training.lf_parity` renders every SFT row with LF's own code in
LF's venv and compares token ids with the SDK's; one differing row stops the run, since LF would
then train on a prompt the Screener never feeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.io import atomic_write_json, atomic_write_text, file_sha256
from psyedge.contract import CONTRACT_VERSION
from psyedge.prompt import prompt_hash
from training import slurm_job
from training.adapter_import import TRAIN_MANIFEST, import_adapter
from training.sft import LF_REFUSED, LF_TEMPLATES, OUT_DIR, SFT_NAME

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
#: Profile -> LF recipe. a40 is the real run (QLoRA on a GPU); tiny is the CPU run CI does.
RECIPES = {
    "tiny": REPO / "training/llamafactory/lora_sft_tiny.yaml",
    "a40": REPO / "training/llamafactory/qlora_sft_deepseekr1.yaml",
}
SBATCH_SCRIPT = REPO / "training/slurm/train_llamafactory.sbatch"
LF_OUT = "llamafactory"
#: The base model is a local folder: LF must not reach for a hub (nor check its own version online).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "DISABLE_VERSION_CHECK": "1"}
RESOLVED = "llamafactory.yaml"
PARITY = "lf_parity.json"


class LfTrainError(ValueError):
    """A recipe, SFT set or LF environment that cannot train (message names the fix)."""


def sft_stats(data_dir: Path) -> dict[str, Any]:
    """`datasets/sft_stats.json`: the template and prompt hash the export was built with."""
    path = data_dir / OUT_DIR / "sft_stats.json"
    if not path.is_file():
        raise LfTrainError(f"{path} not found: run `make sft DATA_DIR={data_dir}` first")
    return json.loads(path.read_text("utf-8"))


def lf_template_for(stats: dict[str, Any]) -> str:
    """LF's template for the export's, refusing templates LF cannot render identically."""
    ours = stats.get("template")
    if ours in LF_REFUSED:
        raise LfTrainError(f"SFT set built with template {ours!r}, which LLaMA-Factory cannot render "
                           f"as the SDK does: {LF_REFUSED[ours]}; train it with TRAINER=native")
    if ours not in LF_TEMPLATES:
        raise LfTrainError(f"SFT set template {ours!r} has no LLaMA-Factory mapping "
                           f"(known: {sorted(LF_TEMPLATES)})")
    if stats.get("prompt_hash") != prompt_hash():
        raise LfTrainError(f"the SFT set was built with prompt hash {stats.get('prompt_hash')}, the SDK "
                           f"now renders {prompt_hash()}: rebuild it with `make sft`")
    return LF_TEMPLATES[ours]


def resolve_recipe(profile: str, base_model: Path, data_dir: Path, out: Path) -> dict[str, Any]:
    """The profile's recipe with this run's paths; its template checked against the export."""
    if profile not in RECIPES:
        raise LfTrainError(f"PROFILE={profile} has no LLaMA-Factory recipe; expected one of "
                           f"{sorted(RECIPES)}")
    recipe = yaml.safe_load(RECIPES[profile].read_text("utf-8"))
    wanted = lf_template_for(sft_stats(data_dir))
    if recipe.get("template") != wanted:
        raise LfTrainError(f"{RECIPES[profile]}: template {recipe.get('template')!r}, but the SFT set "
                           f"needs {wanted!r} (training/sft.py LF_TEMPLATES)")
    if not (base_model / "config.json").is_file():
        raise LfTrainError(f"base model {base_model} has no config.json: set BASE_MODEL")
    recipe.update({"model_name_or_path": str(base_model.resolve()),
                   "dataset_dir": str((data_dir / OUT_DIR).resolve()),
                   "output_dir": str((out / LF_OUT).resolve())})
    return recipe


def training_record(profile: str, data_dir: Path, base_model: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """What `psyedge_train.json` says of an LF run (checked again when the adapter is imported)."""
    stats = sft_stats(data_dir)
    return {"trainer": "llamafactory", "profile": profile, "template": stats["template"],
            "llamafactory_template": recipe["template"], "base_model": str(base_model.resolve()),
            "contract_version": CONTRACT_VERSION, "prompt_hash": stats["prompt_hash"],
            "sft_sha256": file_sha256(data_dir / OUT_DIR / SFT_NAME), "recipe": str(RECIPES[profile])}


def lf_cli(lf_venv: Path) -> Path:
    cli = lf_venv / "bin" / "llamafactory-cli"
    if not cli.is_file():
        raise LfTrainError(f"{cli} not found: run `make lf-venv` first")
    return cli


def check_parity(lf_venv: Path, resolved: Path, template: str, out: Path) -> Path:
    """Run training.lf_parity in LF's venv on the resolved recipe; raise unless every row agrees."""
    report = out / PARITY
    cmd = [str(lf_venv / "bin" / "python"), "-m", "training.lf_parity", "--recipe", str(resolved),
           "--template", template, "--json", str(report)]
    proc = subprocess.run(cmd, cwd=REPO, env=OFFLINE_ENV | dict(os.environ))
    if proc.returncode != 0:
        raise LfTrainError(f"LLaMA-Factory renders the SFT rows differently from the SDK (exit "
                           f"{proc.returncode}); the differing rows are in {report}")
    return report


def run_local(cli: Path, resolved: Path, out: Path, record: dict[str, Any]) -> Path:
    """Run LF in this process's terminal, then record and import its adapter."""
    lf_out = out / LF_OUT
    shutil.rmtree(lf_out, ignore_errors=True)  # a rerun retrains; LF refuses a non-empty folder
    log.info("llamafactory-cli train %s", resolved)
    proc = subprocess.run([str(cli), "train", str(resolved)], cwd=REPO, env=OFFLINE_ENV | dict(os.environ))
    if proc.returncode != 0:
        raise LfTrainError(f"llamafactory-cli train {resolved} failed ({proc.returncode}); "
                           f"its output is above, its files in {lf_out}")
    atomic_write_json(lf_out / TRAIN_MANIFEST, record)
    return import_adapter(lf_out, out, record["template"], "llamafactory")


def submit_slurm(cli: Path, resolved: Path, out: Path, record: dict[str, Any],
                 extra: list[str]) -> str:
    """Submit LF with sbatch; the job records and imports the adapter when LF is done."""
    if shutil.which("sbatch") is None:
        raise LfTrainError("sbatch is not on PATH: run on the cluster login node, or --submit local")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    record_path = out / "llamafactory_record.json"
    atomic_write_json(record_path, record)
    cmd = ["sbatch", "--parsable", f"--job-name=psyedge-lf-{out.name}",
           f"--output={slurm_job.log_path(out, '%j')}", *extra, str(SBATCH_SCRIPT),
           str(cli), str(resolved), str(out), str(record_path), record["template"]]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LfTrainError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    slurm_job.record(out, job_id)
    return job_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.lf_train", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, help=f"one of {sorted(RECIPES)}")
    parser.add_argument("--base-model", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="models/<run>")
    parser.add_argument("--submit", choices=("local", "slurm"), default="local")
    parser.add_argument("--lf-venv", type=Path, default=REPO / ".venv-lf")
    parser.add_argument("--sbatch-arg", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        recipe = resolve_recipe(args.profile, args.base_model, args.data_dir, args.out)
        record = training_record(args.profile, args.data_dir, args.base_model, recipe)
        cli = lf_cli(args.lf_venv)
        resolved = args.out / RESOLVED
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(resolved, yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
        check_parity(args.lf_venv, resolved, record["template"], args.out)
        if args.submit == "slurm":
            print(f"submitted SLURM job {submit_slurm(cli, resolved, args.out, record, args.sbatch_arg)}")
        else:
            print(run_local(cli, resolved, args.out, record))
    except (LfTrainError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
