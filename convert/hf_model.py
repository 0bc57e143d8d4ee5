"""Open a Hugging Face model folder and check, before anything is written, that it can be converted.

Every check that can fail on user input lives here, so `convert.to_gguf` either has a complete,
consistent model in hand or stops with a message naming the missing file or the bad value.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert.errors import ConvertError
from convert.safetensors_io import TensorRef, index_tensors
from convert.tensor_map import ARCHITECTURES, ArchSpec
from psyedge.errors import InputError
from psyedge.prompt import get_template

log = logging.getLogger(__name__)

MANIFEST_FILE = "psyedge.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class HParams:
    """The model shape the GGUF needs, read from config.json (names as in transformers)."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    tie_embeddings: bool
    rope_scaling: dict[str, Any] = field(default_factory=dict)


@dataclass
class HFModel:
    """A checked model folder: architecture, shape, tensors (empty for vocab-only) and manifest."""

    path: Path
    hf_arch: str
    spec: ArchSpec
    config: dict[str, Any]
    hparams: HParams
    tensors: dict[str, TensorRef]
    manifest: dict[str, Any] | None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except OSError as exc:
        raise ConvertError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _rope_params(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """rope theta and the scaling dict, from transformers 4 (`rope_theta`, `rope_scaling`) or 5
    (`rope_parameters` holding both) configs. Models with sliding-window layers (Gemma 3) keep one
    `rope_parameters` entry per layer type: the shared keys take the global layers' entry."""
    params = config.get("rope_parameters") or {}
    params = params.get("full_attention", params)
    theta = config.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling = dict(config.get("rope_scaling") or {})
    if not scaling and params.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    if scaling and "rope_type" not in scaling and "type" in scaling:
        scaling["rope_type"] = scaling["type"]
    if scaling.get("rope_type") == "default":
        scaling = {}
    return float(theta), scaling


def read_hparams(config: dict[str, Any], path: Path) -> HParams:
    """The shape fields, failing with the missing key's name."""
    try:
        n_head = int(config["num_attention_heads"])
        n_embd = int(config["hidden_size"])
        theta, scaling = _rope_params(config)
        return HParams(
            n_layer=int(config["num_hidden_layers"]),
            n_embd=n_embd,
            n_ff=int(config["intermediate_size"]),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=int(config.get("head_dim") or n_embd // n_head),
            n_ctx=int(config.get("max_position_embeddings", 4096)),
            rope_theta=theta,
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            vocab_size=int(config.get("vocab_size", 0)),
            tie_embeddings=bool(config.get("tie_word_embeddings", False)),
            rope_scaling=scaling,
        )
    except KeyError as exc:
        raise ConvertError(f"{path}: config has no {exc.args[0]!r}; it is not a complete "
                           "transformers config (re-save the model with save_pretrained)") from None


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """`psyedge.json` written by the merge stage, checked; None (with a warning) when absent."""
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        log.warning("%s has no %s: the GGUF will carry no psyedge.* keys, so the SDK cannot check the "
                    "contract version or pick the chat template from the file", model_dir, MANIFEST_FILE)
        return None
    manifest = _read_json(path)
    template = manifest.get("template")
    if template is not None:
        try:
            get_template(str(template))
        except InputError as exc:
            raise ConvertError(f"{path}: {exc}") from None
    return manifest


def open_model(model_dir: str | Path, vocab_only: bool = False) -> HFModel:
    """Check the folder and return the model; raises `ConvertError` naming what is missing."""
    path = Path(model_dir)
    if not path.is_dir():
        raise ConvertError(f"{path}: no such model folder (run make merge, or pass --model <folder>)")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ConvertError(f"{path}: no config.json: not a Hugging Face model folder")
    config = _read_json(config_path)
    archs = config.get("architectures") or []
    supported = [a for a in archs if a in ARCHITECTURES]
    if not supported:
        raise ConvertError(f"{config_path}: architectures {archs} are not supported; the converter "
                           f"handles {sorted(ARCHITECTURES)}")
    hf_arch = supported[0]
    missing = [f for f in TOKENIZER_FILES if not (path / f).is_file()]
    if missing:
        raise ConvertError(f"{path}: tokenizer file(s) missing: {missing}; save the tokenizer there with "
                           "tokenizer.save_pretrained()")
    hparams = read_hparams(config, config_path)
    tensors = {} if vocab_only else index_tensors(path)
    manifest = read_manifest(path)
    return HFModel(path, hf_arch, ARCHITECTURES[hf_arch], config, hparams, tensors, manifest)
