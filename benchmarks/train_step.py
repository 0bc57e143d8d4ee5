"""Seconds per training step of the tiny profile, in the dtype the hardware rule picks or another.

    python -m benchmarks.train_step --dtype auto|float32|bfloat16 --steps 6 [--work DIR]

Builds the tiny base and a synthetic SFT set (as the tiny-training tests do), loads the model
exactly as `training.train` does (4-bit NF4, LoRA on every linear layer, the chosen compute
dtype) and times forward + backward + AdamW steps on batches of the profile's size. Prints one
JSON line: dtype, why, seconds per step (median after one warm-up step), tokens per second.

It is a separate process on purpose: the CPU limits that reproduce a slow-bf16 machine
(`ATEN_CPU_CAPABILITY`, `DNNL_MAX_CPU_ISA`) are read when torch loads, so each setting needs a
fresh interpreter (`benchmarks/bench_train.py` starts one per case).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from training.precision import DTYPE_CHOICES
from training.precision import choose as choose_precision

#: Synthetic SFT rows to draw batches from: enough for distinct batches, quick to build.
SAMPLES = 64


def prepare(work: Path) -> tuple[Path, Path]:
    """The tiny base model and an SFT set under `work` (built once, reused on later calls)."""
    from training.sft import build_sft
    from training.synthetic import write_rule_dataset
    from training.tiny import build_tiny_base

    base, data = work / "tiny-base", work / "data"
    if not (base / "config.json").is_file():
        build_tiny_base(base, seed=0)
    if not (data / "datasets").is_dir():
        write_rule_dataset(data, SAMPLES, seed=0)
        build_sft(data, "deepseek-r1")
    return base, data


def measure(dtype: str, steps: int, work: Path, profile: str = "tiny") -> dict[str, Any]:
    """Time `steps` optimizer steps (after one warm-up) of `profile` on the tiny base."""
    import torch
    from transformers import AutoTokenizer

    from training.examples import PadCollator, encode_records, wants_bos
    from training.sft import iter_split
    from training.train import load_model, preflight

    base, data = prepare(work)
    job = preflight(profile, str(base), data, work / "run", None)
    precision = choose_precision(dtype)
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoded = encode_records(tokenizer, list(iter_split(data, "train")), job.config.template,
                             wants_bos(base, tokenizer), job.config.max_length).examples
    collate = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                          else tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = load_model(job, precision)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=job.config.learning_rate)
    size = job.config.per_device_batch_size
    times, tokens = [], []
    for step in range(steps + 1):
        rows = [encoded[(step * size + i) % len(encoded)] for i in range(size)]
        batch = collate(rows)
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:  # the first step pays for lazy initialisation
            times.append(time.perf_counter() - t0)
            tokens.append(int(batch["attention_mask"].sum()))
    per_step = statistics.median(times)
    return {
        **precision.to_dict(), "profile": profile, "steps": steps, "batch_size": size,
        "s_per_step": round(per_step, 4), "tokens_per_step": round(statistics.mean(tokens), 1),
        "tokens_per_s": round(statistics.mean(tokens) / per_step, 1),
        "step_times_s": [round(t, 4) for t in times],
        "torch_threads": torch.get_num_threads(),
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "dnnl_max_cpu_isa": os.environ.get("DNNL_MAX_CPU_ISA"), "last_loss": round(float(loss), 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto")
    ap.add_argument("--steps", type=int, default=6, help="timed steps after one warm-up step")
    ap.add_argument("--work", type=Path, help="folder for the tiny base and data (default: a temporary one)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        result = measure(args.dtype, args.steps, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = measure(args.dtype, args.steps, Path(tmp))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
