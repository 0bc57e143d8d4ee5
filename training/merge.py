"""Merge a trained LoRA adapter into the base model (`make merge`).

    python -m training.merge --base-model DIR --adapter models/<run>/adapter --out models/<run>/merged

The base is loaded in float32, never in 4-bit: merging into quantised weights would bake the NF4
rounding into the model and then quantise it a second time in GGUF. The sum W + scale * B @ A is
computed in float32 (fast on every CPU, where bf16 arithmetic may be emulated) and rounded once to
the dtype the base is stored in (bf16 for the real bases), so the merged file has the base's size
and its weights differ from the exact sum by at most half a unit in the last place. The output folder holds a
single `model.safetensors`, the base's tokenizer files (copied byte for byte, so the GGUF
converter sees exactly the vocabulary the model was trained with), the SDK's chat template
(`chat_template.jinja`, also set in tokenizer_config.json) and `psyedge.json`: the manifest of
`psyedge.metadata.make_manifest` (contract version, prompt hash, template, base model, adapter hash)
that the converter copies into GGUF metadata.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.io import atomic_dir, atomic_write_json, atomic_write_text, file_sha256
from psyedge.metadata import make_manifest
from psyedge.prompt import get_template
from training.adapter_import import ADAPTER_FILES, TRAIN_MANIFEST, AdapterImportError, check_recorded

log = logging.getLogger(__name__)

#: Tokenizer files copied verbatim from the base (whichever exist).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json")
MANIFEST_NAME = "psyedge.json"


class MergeError(ValueError):
    """A missing or inconsistent input (message says which file and what to run)."""


def adapter_hash(adapter_dir: Path) -> str:
    """Short sha256 of the adapter weights: identifies the fine-tune inside the GGUF."""
    return file_sha256(adapter_dir / "adapter_model.safetensors")[:16]


def check_inputs(base_model: Path, adapter: Path) -> dict[str, Any]:
    """Fail fast (before importing torch); return the training manifest (may be empty)."""
    if not (base_model / "config.json").is_file():
        raise MergeError(f"base model {base_model} has no config.json: set BASE_MODEL to the local model "
                         "folder the adapter was trained on")
    missing = [f for f in ADAPTER_FILES if not (adapter / f).is_file()]
    if missing:
        raise MergeError(f"adapter folder {adapter} lacks {missing}: run `make train` first")
    manifest_path = adapter / TRAIN_MANIFEST
    return json.loads(manifest_path.read_text("utf-8")) if manifest_path.is_file() else {}


def merge(base_model: Path, adapter: Path, out: Path, template: str | None = None) -> Path:
    """Merge and save; return the output folder (written beside it, then renamed into place)."""
    train_info = check_inputs(base_model, adapter)
    template = template or train_info.get("template") or "deepseek-r1"
    tpl = get_template(template)
    try:
        check_recorded(train_info, template, adapter / TRAIN_MANIFEST)
    except AdapterImportError as exc:
        raise MergeError(str(exc)) from None
    trained_on = train_info.get("base_model")
    if trained_on and Path(trained_on).name != base_model.resolve().name:
        log.warning("adapter was trained on %s but is merged into %s", trained_on, base_model)

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    stored = stored_dtype(base_model)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32, device_map={"": "cpu"})
    model = PeftModel.from_pretrained(base, adapter).merge_and_unload().to(getattr(torch, stored))

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, max_shard_size="1000GB")  # one model.safetensors for the converter
        for name in TOKENIZER_FILES:
            if (base_model / name).is_file():
                shutil.copyfile(base_model / name, tmp / name)
        _set_chat_template(tmp, tpl.jinja)
        manifest = make_manifest(template, base_model.resolve().name, adapter_hash(adapter))
        atomic_write_json(tmp / MANIFEST_NAME, {**manifest, "adapter_source": provenance(train_info)})
        if not (tmp / "model.safetensors").is_file():
            raise MergeError(f"expected a single model.safetensors in {tmp}, got {sorted(os.listdir(tmp))}")
    log.info("merged %s + %s -> %s (template %s)", base_model, adapter, out, template)
    return out


def provenance(train_info: dict[str, Any]) -> dict[str, Any]:
    """Where the adapter came from, for the merged manifest: our trainer unless it was imported."""
    keys = ("trainer", "profile", "imported_from", "imported_at", "recorded", "sft_sha256",
            "recipe")
    found = {k: train_info[k] for k in keys if k in train_info}
    return found or {"trainer": "unknown", "recorded": False}


def stored_dtype(model_dir: Path) -> str:
    """The dtype the model's config says its weights are stored in (bfloat16 when unsaid)."""
    cfg = json.loads((model_dir / "config.json").read_text("utf-8"))
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
    if name not in ("bfloat16", "float16", "float32"):
        raise MergeError(f"{model_dir / 'config.json'}: dtype {name!r} is not bfloat16, float16 or float32")
    return name


def _set_chat_template(model_dir: Path, jinja: str) -> None:
    """Put the SDK's template in both places tools look (chat_template.jinja and tokenizer_config)."""
    atomic_write_text(model_dir / "chat_template.jinja", jinja)
    cfg_path = model_dir / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text("utf-8"))
        cfg["chat_template"] = jinja
        atomic_write_json(cfg_path, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", type=Path, required=True, help="the base the adapter was trained on")
    parser.add_argument("--adapter", type=Path, required=True, help="models/<run>/adapter")
    parser.add_argument("--out", type=Path, required=True, help="models/<run>/merged (replaced whole)")
    parser.add_argument("--template",
                        help="chat template name (default: the one the adapter was trained with)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(merge(args.base_model, args.adapter, args.out, args.template))
    except MergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # unknown template name (InputError) and the like
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
