"""QLoRA fine-tuning of the screening model (`make train`).

    python -m training.train --profile tiny|a40|gemma-cpu|gemma-a40 --base-model DIR \
        --data-dir DIR --out models/<run> --submit local|slurm

`--submit slurm` hands the same command to `sbatch training/slurm/train_a40.sbatch` and returns;
`--submit local` trains in this process. Reads the profile's `sft_file` (`make sft`'s set by
default), renders each example with the SDK's chat template (loss on the answer only, EOS
included; with `answer_only_logits` the output layer runs at the answer's positions only), loads
the base in 4-bit NF4 with double quantisation (unquantised where `quant_4bit` is off),
computing in the dtype `training.precision` picks for this hardware (bf16 on CUDA and on CPUs
that run it natively, float32 elsewhere), trains LoRA adapters on every linear
layer with the Hugging Face Trainer, and writes under `--out`:

    adapter/                 adapter_model.safetensors, adapter_config.json, psyedge_train.json
    checkpoints/checkpoint-N resumable state (a restart continues from the last one)
    train_results.json, eval_results.json, training_loss.png, training_eval_loss.png, config.yaml

Checkpoint-and-requeue: when `<out>/.checkpoint_requested` appears (the sbatch script creates it
on SLURM's warning signal) or the process gets SIGUSR1, the trainer saves a checkpoint after the
current step and exits with code 75; the batch script then requeues the job, which resumes.

Everything that can be checked without torch (paths, profile, sbatch) is checked first, so a
typo fails in a second with a message instead of after a minute of imports.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.io import JsonlError, atomic_write_json, atomic_write_text, file_sha256
from psyedge.contract import CONTRACT_VERSION
from psyedge.prompt import prompt_hash
from training import slurm_job
from training.config import ConfigError, TrainConfig, known_profiles, load_config, profile_path
from training.examples import TemplateMismatch
from training.precision import Precision
from training.precision import choose as choose_precision
from training.sft import OUT_DIR as SFT_DIR
from training.sft import SftError, iter_split

log = logging.getLogger(__name__)

#: Exit code of a run that checkpointed on request and wants to be requeued (EX_TEMPFAIL).
REQUEUE_EXIT = 75
CHECKPOINT_FLAG = ".checkpoint_requested"
SBATCH_SCRIPT = Path(__file__).resolve().parent / "slurm" / "train_a40.sbatch"
#: Written into the adapter folder: what `training.merge` needs to know about the run.
TRAIN_MANIFEST = "psyedge_train.json"


class TrainError(ValueError):
    """A user error caught before or during training (message says what to fix)."""


@dataclass(frozen=True)
class Job:
    """A checked request: every path exists and the profile parsed."""

    profile: str
    config_path: Path
    config: TrainConfig
    base_model: Path
    data_dir: Path
    out: Path


def preflight(profile: str, base_model: str, data_dir: Path, out: Path, config_path: Path | None) -> Job:
    """Check the request without importing torch; raise `TrainError`/`ConfigError` naming the fix."""
    if not base_model:
        raise TrainError("--base-model is empty: set BASE_MODEL=<local model directory> "
                         "(e.g. /models/DeepSeek-R1-Distill-Qwen-1.5B)")
    base = Path(base_model).expanduser()
    if not base.is_dir():
        raise TrainError(f"base model {base} does not exist: set BASE_MODEL to a local Hugging Face model "
                         "folder (no hub downloads on compute nodes); for the tiny profile run `make train "
                         "PROFILE=tiny`, which builds models/tiny-base first")
    if not (base / "config.json").is_file():
        raise TrainError(f"base model {base} has no config.json: point BASE_MODEL at the folder that holds "
                         "config.json, the *.safetensors weights and tokenizer.json")
    path = config_path or profile_path(profile)
    if config_path is None and not path.is_file():
        raise TrainError(f"profile {profile!r} has no {path}; known profiles: {known_profiles()}")
    cfg = load_config(path)
    sft = data_dir / SFT_DIR / cfg.sft_file
    if not sft.is_file():
        raise TrainError(f"SFT set {sft} (sft_file of {path.name}) not found: run `make sft` "
                         "(sft_student_mental.jsonl) or `make psysuicide-sft` "
                         f"with DATA_DIR={data_dir}")
    return Job(profile, path.resolve(), cfg, base.resolve(), data_dir.resolve(), out.resolve())


# ---- SLURM -----------------------------------------------------------------------------------

def sbatch_command(job: Job, extra: list[str]) -> list[str]:
    """The sbatch call: the script's #SBATCH lines give the resources; logs go to <out>/logs."""
    args = ["--profile", job.profile, "--base-model", str(job.base_model), "--data-dir", str(job.data_dir),
            "--out", str(job.out)]
    if job.config_path != profile_path(job.profile).resolve():
        args += ["--config", str(job.config_path)]
    return ["sbatch", "--parsable", f"--job-name=psyedge-{job.out.name}",
            f"--output={slurm_job.log_path(job.out, '%j')}", *extra, str(SBATCH_SCRIPT), *args]


def submit_slurm(job: Job, extra: list[str]) -> str:
    """Submit the run with sbatch from the repository root; return the job id."""
    if shutil.which("sbatch") is None:
        raise TrainError("sbatch is not on PATH: run on the cluster login node, or use --submit local")
    (job.out / "logs").mkdir(parents=True, exist_ok=True)  # SLURM does not create log folders
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(sbatch_command(job, extra), cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TrainError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    slurm_job.record(job.out, job_id)
    log.info("submitted SLURM job %s; log: %s", job_id, slurm_job.log_path(job.out, job_id))
    return job_id


# ---- training --------------------------------------------------------------------------------


def _checkpoint_step(path: str | None) -> int:
    return int(Path(path).name.rsplit("-", 1)[1]) if path else 0


def load_model(job: Job, precision: Precision):  # -> peft.PeftModel
    """The base in 4-bit NF4 (double quant) with LoRA on every linear layer, computing in
    `precision`'s dtype (the 4-bit weights are dequantised to it for every matmul)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cfg = job.config
    dtype = precision.torch_dtype()
    device = {"": int(os.environ.get("LOCAL_RANK", 0))} if precision.device == "cuda" else {"": "cpu"}
    quant = None
    if cfg.quant_4bit:
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(job.base_model, quantization_config=quant,
                                                 dtype=dtype, device_map=device)
    model.config.use_cache = False  # the KV cache is useless in training and breaks checkpointing
    if quant is not None:
        # Freezes the base, upcasts the remaining bf16 parameters (norms, embeddings) to fp32.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.upcast_layernorm:
        for name, param in model.named_parameters():
            if param.ndim == 1 and "norm" in name:
                param.data = param.data.float()
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _stop_callback(flag: Path):
    """A TrainerCallback that saves and stops when the flag file appears or SIGUSR1 arrives."""
    from transformers import TrainerCallback

    class CheckpointOnRequest(TrainerCallback):
        def __init__(self) -> None:
            self.requested = False
            self.honoured = False
            if hasattr(signal, "SIGUSR1"):
                signal.signal(signal.SIGUSR1, self._on_signal)

        def _on_signal(self, signum: int, frame: Any) -> None:
            self.requested = True

        def _should_stop(self) -> bool:
            want = self.requested or flag.exists()
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():  # every rank must stop at the same step
                import torch

                t = torch.tensor([int(want)], device="cuda" if torch.cuda.is_available() else "cpu")
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                want = bool(t.item())
            return want

        def on_step_end(self, args, state, control, **kwargs):
            if self._should_stop():
                log.warning("checkpoint requested: saving at step %d and stopping for requeue",
                            state.global_step)
                control.should_save = True
                control.should_training_stop = True
                self.honoured = True
            return control

    return CheckpointOnRequest()


def train(job: Job) -> int:
    """Train in this process; return 0 when done, REQUEUE_EXIT when stopped to be requeued."""
    import torch
    from transformers import AutoTokenizer, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    from training.answer_loss import LeftPadCollator, answer_loss_trainer
    from training.examples import PadCollator, encode_records, wants_bos
    from training.plots import plot_losses

    cfg = job.config
    job.out.mkdir(parents=True, exist_ok=True)
    precision = choose_precision(cfg.dtype)
    atomic_write_text(job.out / "config.yaml", _config_yaml(job, precision))
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    bos = wants_bos(job.base_model, tokenizer)
    train_recs = list(iter_split(job.data_dir, "train", cfg.sft_file))
    if cfg.max_train_samples:
        train_recs = train_recs[: cfg.max_train_samples]
    val_recs = list(iter_split(job.data_dir, "validation", cfg.sft_file))
    train_set = encode_records(tokenizer, train_recs, cfg.template, bos, cfg.max_length,
                               prior_dropout=cfg.prior_value_dropout, seed=cfg.seed)
    val_set = encode_records(tokenizer, val_recs, cfg.template, bos, cfg.max_length)
    if not train_set.examples:
        raise TrainError(f"no training examples left in {job.data_dir / SFT_DIR / cfg.sft_file} "
                         f"(dropped {train_set.dropped_too_long} longer than max_length={cfg.max_length})")
    log.info("examples: %d train (%d with wrong earlier values), %d validation (dropped for length: "
             "%d / %d)", len(train_set.examples), train_set.corrupted, len(val_set.examples),
             train_set.dropped_too_long, val_set.dropped_too_long)

    torch.manual_seed(cfg.seed)
    model = load_model(job, precision)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    evaluate = bool(val_set.examples)
    args = TrainingArguments(
        output_dir=str(job.out / "checkpoints"),
        per_device_train_batch_size=cfg.per_device_batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        lr_scheduler_type=cfg.lr_scheduler, **warmup_arguments(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay, **sampling_arguments(cfg.group_by_length),
        bf16=precision.bf16, gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        eval_strategy="steps" if evaluate else "no", eval_steps=cfg.eval_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps, logging_first_step=True, report_to="none", seed=cfg.seed,
        data_seed=cfg.seed, remove_unused_columns=False, dataloader_num_workers=0,
        ddp_find_unused_parameters=False, use_cpu=not torch.cuda.is_available(), label_names=["labels"],
    )
    stopper = _stop_callback(job.out / CHECKPOINT_FLAG)
    # answer_only_logits: left-padded batches and the output layer at the answer only
    # (training.answer_loss); the same loss, without a 262k-wide layer over every prompt token.
    if cfg.answer_only_logits:
        trainer_cls = answer_loss_trainer()
        collator = LeftPadCollator(pad_id, risk_weight=cfg.risk_loss_weight)
    else:
        trainer_cls, collator = Trainer, PadCollator(pad_id)
    trainer = trainer_cls(model=model, args=args, train_dataset=train_set.examples,
                          eval_dataset=val_set.examples if evaluate else None,
                          data_collator=collator, callbacks=[stopper])
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last:
        log.info("resuming from %s (step %d)", last, _checkpoint_step(last))
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=last)
    if stopper.honoured:
        (job.out / CHECKPOINT_FLAG).unlink(missing_ok=True)
        log.warning("stopped at step %d after a checkpoint request; exit %d so the job is requeued",
                    trainer.state.global_step, REQUEUE_EXIT)
        return REQUEUE_EXIT
    eval_metrics = trainer.evaluate() if evaluate else None  # every rank takes part under DDP
    if not trainer.is_world_process_zero():
        return 0

    metrics = dict(result.metrics)
    metrics.update(
        global_step=trainer.state.global_step, resumed_from_step=_checkpoint_step(last),
        train_examples=len(train_set.examples), eval_examples=len(val_set.examples),
        dropped_too_long=train_set.dropped_too_long + val_set.dropped_too_long,
        prior_values_corrupted=train_set.corrupted,
        trainable_params=trainable, wall_seconds=round(time.monotonic() - started, 1), **precision.to_dict(),
        first_loss=next((h["loss"] for h in trainer.state.log_history if "loss" in h), None),
        last_loss=next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
    )
    atomic_write_json(job.out / "train_results.json", metrics)
    if eval_metrics is not None:
        atomic_write_json(job.out / "eval_results.json", eval_metrics)
    atomic_write_json(job.out / "trainer_log_history.json", trainer.state.log_history)
    plot_losses(trainer.state.log_history, job.out)
    save_adapter(model, job)
    (job.out / CHECKPOINT_FLAG).unlink(missing_ok=True)
    return 0


def warmup_arguments(ratio: float) -> dict[str, float]:
    """The warmup as a share of the run, spelled the way the installed transformers reads it.

    transformers 5 takes a float `warmup_steps` below 1 as a ratio and deprecates
    `warmup_ratio`; transformers 4 reads `warmup_steps` as a step count only.
    """
    return {"warmup_steps": ratio} if _transformers_major() >= 5 else {"warmup_ratio": ratio}


def _transformers_major() -> int:
    """The installed transformers' major version: 5 renamed several TrainingArguments."""
    import transformers

    return int(transformers.__version__.split(".", 1)[0])


def sampling_arguments(group_by_length: bool) -> dict[str, Any]:
    """Batches of similar lengths (less padding per step), spelled for the installed transformers:
    `train_sampling_strategy` from transformers 5, `group_by_length` before it."""
    if not group_by_length:
        return {}
    return ({"train_sampling_strategy": "group_by_length"} if _transformers_major() >= 5
            else {"group_by_length": True})


def _config_yaml(job: Job, precision: Precision) -> str:
    import yaml

    resolved = {"profile": job.profile, "config_file": str(job.config_path),
                "base_model": str(job.base_model),
                "data_dir": str(job.data_dir), **job.config.to_dict(), "resolved": precision.to_dict()}
    return yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True)


def save_adapter(model: Any, job: Job) -> Path:
    """Write adapter/ via a sibling temp folder renamed into place (the Makefile's target file
    appears only when the whole adapter is there)."""
    final = job.out / "adapter"
    tmp = job.out / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    weights = tmp / "adapter_model.safetensors"
    atomic_write_json(tmp / TRAIN_MANIFEST, {
        "trainer": "psyedge", "template": job.config.template, "base_model": str(job.base_model),
        "profile": job.profile,
        "contract_version": CONTRACT_VERSION, "prompt_hash": prompt_hash(),
        "adapter_sha256": file_sha256(weights),
        "sft_sha256": file_sha256(job.data_dir / SFT_DIR / job.config.sft_file),
    })
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    log.info("adapter -> %s", final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, help=f"training profile: {', '.join(known_profiles())}")
    parser.add_argument("--base-model", required=True, help="local Hugging Face model folder")
    parser.add_argument("--data-dir", type=Path, required=True, help="the pipeline's data folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder, e.g. models/tiny")
    parser.add_argument("--submit", choices=("local", "slurm"), default="local",
                        help="local: train in this process; slurm: sbatch training/slurm/train_a40.sbatch")
    parser.add_argument("--config", type=Path,
                        help="a profile YAML to use instead of training/configs/<profile>.yaml")
    parser.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                        help="extra sbatch option (repeatable), e.g. --sbatch-arg=--time=02:00:00")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only, never the hub
    try:
        job = preflight(args.profile, args.base_model, args.data_dir, args.out, args.config)
        busy = slurm_job.live_job(job.out)
        if busy and busy.job_id != os.environ.get("SLURM_JOB_ID"):  # the job itself trains here
            raise TrainError(slurm_job.busy_message(job.out, busy))
        if args.submit == "slurm":
            print(submit_slurm(job, args.sbatch_arg))
            return 0
        return train(job)
    except (TrainError, ConfigError, SftError, TemplateMismatch, JsonlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1


if __name__ == "__main__":
    sys.exit(main())
