"""A PEFT LoRA adapter as a llama.cpp adapter GGUF: `make lora-gguf`.

    python -m convert.lora_gguf --adapter models/<run>/adapter --base-model DIR \\
        --out models/<run>/adapter-f32.gguf

Why ship the adapter apart from the base: merging adds small deltas to the base weights, and a
4-bit type rounds most of them away (a fine-tuned Gemma 3 270M's answers move at Q4_K_M, see
training/README.md). llama.cpp applies an adapter at run time, `W x + scale * B (A x)` with W
kept in whatever type the base file has, so the base can stay the Q4_K_M file the adapter was
trained against, and the fine-tune itself is not quantized at all.

The file is what llama.cpp's loader (`llama_adapter_lora_init`) reads: `general.type` "adapter",
`adapter.type` "lora", `adapter.lora.alpha`, and per adapted weight `<gguf name>.lora_a` (A, r x
in) and `.lora_b` (B, out x r), named like the base's own tensors. llama.cpp scales by alpha / r,
so rsLoRA's alpha / sqrt(r) is written as alpha * sqrt(r). The psyedge.* manifest (template,
contract version, prompt hash, adapter hash) rides along, so the SDK reads it from the adapter
when the base file has none. Written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFValueType

from convert.errors import ConvertError
from convert.hf_model import _read_json as read_json
from convert.hf_model import open_model
from convert.safetensors_io import TensorRef, load_f32, read_header
from convert.tensor_map import NameMapper, permute_qk
from convert.to_gguf import temp_sibling
from pipeline.io import file_sha256
from psyedge.metadata import make_manifest, manifest_to_gguf

log = logging.getLogger(__name__)

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
#: What `save_pretrained` puts before the model's own tensor names.
PEFT_PREFIX = "base_model.model."
#: Stored types of A and B: f32 by default (the adapter is a few MB, nothing to save).
OUTTYPES = {"f32": np.float32, "f16": np.float16}
#: PEFT options llama.cpp's loader cannot express: the adapter would load and mean something else.
UNSUPPORTED = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save")


@dataclass(frozen=True)
class AdapterResult:
    """What was written (for the CLI's report and the tests)."""

    path: Path
    arch: str
    n_weights: int  # adapted base weights (each one A and one B tensor)
    rank: int
    alpha: float  # as written: llama.cpp's scale is alpha / rank
    size_bytes: int


def read_adapter_config(adapter: Path) -> dict[str, Any]:
    """adapter_config.json, refusing what the GGUF adapter format cannot carry."""
    path = adapter / CONFIG_FILE
    cfg = read_json(path)  # unreadable or not JSON: a ConvertError naming the file and line
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ConvertError(f"{path}: peft_type {cfg['peft_type']!r}; only LORA adapters convert")
    used = [k for k in UNSUPPORTED if cfg.get(k)]
    if used:
        raise ConvertError(f"{path}: {used} set; llama.cpp adapters have one rank and alpha and no "
                           "extra modules, so merge this adapter instead (make merge gguf)")
    if cfg.get("bias", "none") != "none":
        raise ConvertError(f"{path}: bias={cfg['bias']!r} trains biases, which an adapter GGUF cannot hold")
    return cfg


def scale_alpha(cfg: dict[str, Any]) -> tuple[int, float]:
    """(r, the alpha to write) so that llama.cpp's alpha / r equals PEFT's scaling."""
    r = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", r))
    return r, alpha * math.sqrt(r) if cfg.get("use_rslora") else alpha


def pair_tensors(refs: dict[str, TensorRef], path: Path) -> dict[str, tuple[TensorRef, TensorRef]]:
    """HF weight name (`model.layers.0.self_attn.q_proj.weight`) -> its (A, B) tensors."""
    pairs: dict[str, dict[str, TensorRef]] = {}
    for name, ref in refs.items():
        for part in ("lora_A", "lora_B"):
            tail = f".{part}.weight"
            if name.endswith(tail):
                stem = name[: -len(tail)].removeprefix(PEFT_PREFIX)
                pairs.setdefault(f"{stem}.weight", {})[part] = ref
                break
        else:
            raise ConvertError(f"{path}: tensor {name!r} is not a LoRA A or B weight (embedding "
                               "adapters and saved modules cannot go into an adapter GGUF)")
    lone = sorted(k for k, v in pairs.items() if len(v) != 2)
    if lone:
        raise ConvertError(f"{path}: {lone[:3]} have only one of lora_A / lora_B; the file is incomplete")
    return {k: (v["lora_A"], v["lora_B"]) for k, v in sorted(pairs.items())}


def convert_adapter(adapter: str | Path, base_model: str | Path, out: str | Path,
                    outtype: str = "f32", template: str | None = None) -> AdapterResult:
    """Write `out` from the PEFT adapter folder and the base it was trained on (for its names)."""
    adapter, out = Path(adapter), Path(out)
    if outtype not in OUTTYPES:
        raise ConvertError(f"--outtype {outtype!r}: expected one of {sorted(OUTTYPES)}")
    cfg = read_adapter_config(adapter)
    rank, alpha = scale_alpha(cfg)
    base = open_model(base_model, vocab_only=True)
    weights = adapter / WEIGHTS_FILE
    if not weights.is_file():
        raise ConvertError(f"{adapter}: no {WEIGHTS_FILE} (run make train, or pass the adapter folder)")
    pairs = pair_tensors(read_header(weights), weights)
    mapper, hp = NameMapper(base.spec, base.hparams.n_layer), base.hparams
    template = _checked_template(adapter, template)
    manifest = make_manifest(template, base.path.resolve().name, file_sha256(weights)[:16])

    writer = gguf.GGUFWriter(None, base.spec.name)
    writer.add_type("adapter")
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for key, value in manifest_to_gguf(manifest).items():
        writer.add_key_value(key, value, GGUFValueType.STRING)
    dtype = OUTTYPES[outtype]
    for hf_name, (a_ref, b_ref) in pairs.items():
        name = mapper.gguf_name(hf_name)
        if name is None:
            raise ConvertError(f"{weights}: {hf_name} is adapted but the converter skips that tensor")
        a, b = load_f32(a_ref), load_f32(b_ref)
        if a.shape[0] != rank or b.shape[1] != rank:
            raise ConvertError(f"{weights}: {hf_name} has A {a.shape}, B {b.shape}; expected rank {rank}")
        heads = _qk_heads(base.spec.permute_qk, name, hp.n_head, hp.n_head_kv)
        if heads:
            b = permute_qk(b, heads)  # B's rows are the weight's output rows
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=dtype))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=dtype))
    with temp_sibling(out) as tmp:
        try:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return AdapterResult(out, base.spec.name, len(pairs), rank, alpha, out.stat().st_size)


def _qk_heads(permute: bool, name: str, n_head: int, n_head_kv: int) -> int | None:
    if permute and name.endswith("attn_q.weight"):
        return n_head
    if permute and name.endswith("attn_k.weight"):
        return n_head_kv
    return None


def _checked_template(adapter: Path, template: str | None) -> str:
    """The template the adapter was trained with (its trainer's record), or `template`.

    As at merge, an adapter trained on another prompt or contract is refused: its manifest would lie.
    """
    from training.adapter_import import TRAIN_MANIFEST, AdapterImportError, check_recorded

    path = adapter / TRAIN_MANIFEST
    info = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    chosen = template or str(info.get("template") or "deepseek-r1")
    try:
        check_recorded(info, chosen, path)
    except AdapterImportError as exc:
        raise ConvertError(str(exc)) from None
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.lora_gguf",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True, help="PEFT adapter folder")
    parser.add_argument("--base-model", type=Path, required=True,
                        help="the Hugging Face folder it was trained on (architecture, names)")
    parser.add_argument("--out", type=Path, required=True, help="adapter GGUF to write")
    parser.add_argument("--outtype", choices=sorted(OUTTYPES), default="f32")
    parser.add_argument("--template", help="chat template, when the adapter folder records none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = convert_adapter(args.adapter, args.base_model, args.out, args.outtype, args.template)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {res.path} ({res.size_bytes / 2**20:.2f} MiB): {res.arch} LoRA, {res.n_weights} "
          f"weights, r={res.rank}, alpha={res.alpha:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
