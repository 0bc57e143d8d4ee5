"""Convert a merged Hugging Face model folder to one GGUF file: `make gguf`.

    python -m convert.to_gguf --model models/tiny/merged --outtype f16 --out models/tiny/model-f16.gguf

Everything that can be wrong with the input (weights, architecture, tokenizer, manifest, tensor
names) is checked before the output file is opened; the file is written under a temporary name
beside the target and renamed only when complete, so an interrupted run never leaves a
half-written `.gguf` under the final name. Tensors are streamed one at a time (memory stays
about one tensor, not the model).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, LlamaFileType, RopeScalingType

from convert.errors import ConvertError
from convert.hf_model import HFModel, open_model
from convert.safetensors_io import TensorRef, load_f32, load_raw
from convert.tensor_map import OUTTYPES, NameMapper, llama3_rope_factors, permute_qk, stored_type
from convert.vocab import add_vocab, read_tokenizer_json
from convert.vocab_spm import add_spm_vocab, is_sentencepiece_bpe
from psyedge.metadata import manifest_to_gguf
from psyedge.prompt import get_template

log = logging.getLogger(__name__)

FILE_TYPES: dict[str, LlamaFileType] = {
    "f32": LlamaFileType.ALL_F32,
    "f16": LlamaFileType.MOSTLY_F16,
    "bf16": LlamaFileType.MOSTLY_BF16,
}


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor: GGUF name, numpy shape, stored type, and where its values come from
    (a checkpoint tensor, q/k-permuted over `permute_heads` heads, plus `shift`; or computed
    `values`)."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    source: TensorRef | None = None
    permute_heads: int | None = None
    values: np.ndarray | None = None
    shift: float = 0.0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * (4 if self.qtype == GGMLQuantizationType.F32 else 2)

    def f32(self) -> np.ndarray:
        """The values as float32 (read from the checkpoint now: one tensor in memory at a time)."""
        if self.values is not None:
            return self.values
        assert self.source is not None, f"{self.name}: neither a source nor values"
        data = load_f32(self.source)
        if self.shift:
            data = data + np.float32(self.shift)
        return permute_qk(data, self.permute_heads) if self.permute_heads else data

    def stored_bytes(self) -> np.ndarray:
        """The values in the stored type (bf16 copied bit-exact when the source is bf16 as is)."""
        if self.qtype == GGMLQuantizationType.BF16:
            as_is = not self.permute_heads and not self.shift
            if self.source is not None and self.source.dtype == "BF16" and as_is:
                return load_raw(self.source).view(np.uint8).reshape(*self.shape[:-1], self.shape[-1] * 2)
            return gguf.quants.quantize(self.f32(), GGMLQuantizationType.BF16)
        data = self.f32()
        if self.qtype == GGMLQuantizationType.F16:
            out = data.astype(np.float16)
            if not np.isfinite(out).all() and np.isfinite(data).all():
                raise ConvertError(f"tensor {self.name}: values beyond the f16 range "
                                   f"({np.abs(data).max():.3g}); convert with --outtype bf16 or f32")
            return out
        return np.ascontiguousarray(data, dtype=np.float32)


@dataclass(frozen=True)
class ConvertResult:
    """What was written (for the CLI's report and the tests)."""

    path: Path
    arch: str
    outtype: str
    n_tensors: int
    n_vocab: int
    pre_tokenizer: str
    size_bytes: int
    has_manifest: bool


def plan_tensors(model: HFModel, outtype: str) -> list[PlannedTensor]:
    """Map every checkpoint tensor to its GGUF tensor, checking names and the required ones."""
    mapper = NameMapper(model.spec, model.hparams.n_layer)
    hp = model.hparams
    plan: list[PlannedTensor] = []
    for hf_name in sorted(model.tensors):
        ref = model.tensors[hf_name]
        name = mapper.gguf_name(hf_name)
        if name is None:
            continue
        heads = None
        if model.spec.permute_qk and name.endswith("attn_q.weight"):
            heads = hp.n_head
        elif model.spec.permute_qk and name.endswith("attn_k.weight"):
            heads = hp.n_head_kv
        plan.append(PlannedTensor(name, ref.shape, stored_type(outtype, len(ref.shape)), ref, heads,
                                  shift=mapper.norm_shift(hf_name)))
    names = {t.name for t in plan}
    required = (["token_embd.weight", "output_norm.weight"]
                + [f"blk.{i}.attn_q.weight" for i in range(hp.n_layer)])
    if not hp.tie_embeddings:
        required.append("output.weight")
    missing = [n for n in required if n not in names]
    if missing:
        raise ConvertError(f"{model.path}: the checkpoint lacks tensors {missing[:5]} (config says "
                           f"{hp.n_layer} layers, tie_word_embeddings={hp.tie_embeddings}); the weights are "
                           "incomplete or do not match config.json")
    if hp.rope_scaling.get("rope_type") == "llama3":
        factors = llama3_rope_factors(hp.head_dim, hp.rope_theta, hp.rope_scaling)
        plan.append(PlannedTensor("rope_freqs.weight", factors.shape, GGMLQuantizationType.F32,
                                  values=factors))
    return plan


def _add_hparams(writer: gguf.GGUFWriter, model: HFModel, n_vocab: int) -> None:
    hp = model.hparams
    writer.add_context_length(hp.n_ctx)
    writer.add_embedding_length(hp.n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layer)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_key_length(hp.head_dim)
    writer.add_value_length(hp.head_dim)
    writer.add_rope_dimension_count(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_vocab_size(n_vocab)
    kind = hp.rope_scaling.get("rope_type")
    if kind == "yarn":
        writer.add_rope_scaling_type(RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(hp.rope_scaling["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(hp.rope_scaling["original_max_position_embeddings"]))
    elif kind == "linear":
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(hp.rope_scaling["factor"]))
    elif kind not in (None, "llama3"):
        raise ConvertError(f"{model.path / 'config.json'}: rope scaling {kind!r} is not supported "
                           "(supported: none, linear, yarn, llama3)")
    if model.spec.extra_hparams is not None:
        model.spec.extra_hparams(writer, model.config, model.path / "config.json")


def _add_template_and_manifest(writer: gguf.GGUFWriter, model: HFModel,
                               tokenizer_template: str | None) -> None:
    """Chat template (tokenizer's, else the manifest's named template) and the psyedge.* keys."""
    manifest = model.manifest or {}
    named = manifest.get("template")
    if tokenizer_template is None and named:
        writer.add_chat_template(get_template(str(named)).jinja)
    elif tokenizer_template is not None and named and tokenizer_template != get_template(str(named)).jinja:
        log.warning("the tokenizer's chat template differs from psyedge template %r: GGUF keeps the "
                    "tokenizer's; the SDK renders prompts with psyedge.template", named)
    if model.manifest is not None:
        for key, value in manifest_to_gguf(model.manifest).items():
            # add_key_value, not add_string: add_string drops empty values (adapter_hash may be "")
            writer.add_key_value(key, value, GGUFValueType.STRING)


def _add_any_vocab(writer: gguf.GGUFWriter, model: HFModel, n_vocab: int,
                   pre_tokenizer: str | None) -> tuple[str, str | None]:
    """SentencePiece-style (byte-fallback BPE) or byte-level BPE, as tokenizer.json says."""
    tok = read_tokenizer_json(model.path)
    if not is_sentencepiece_bpe(tok):
        return add_vocab(writer, model.path, n_vocab, pre_tokenizer)
    if pre_tokenizer:
        raise ConvertError(f"--pre-tokenizer {pre_tokenizer!r}: {model.path / 'tokenizer.json'} "
                           "is a SentencePiece-style vocabulary, which has no pre-tokenizer; "
                           "drop the option")
    return add_spm_vocab(writer, model.path, tok, n_vocab)


@contextlib.contextmanager
def temp_sibling(out: Path) -> Iterator[Path]:
    """A temporary path beside `out`, renamed over it on success and removed on any failure
    (KeyboardInterrupt included), so the final name only ever holds a complete file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def convert(model_dir: str | Path, out: str | Path, outtype: str = "f16", *, vocab_only: bool = False,
            pre_tokenizer: str | None = None, progress: bool = False) -> ConvertResult:
    """Convert `model_dir` to `out`; raises `ConvertError` before writing anything on bad input."""
    if outtype not in OUTTYPES:
        raise ConvertError(f"--outtype {outtype!r}: expected one of {sorted(OUTTYPES)}")
    out = Path(out)
    model = open_model(model_dir, vocab_only=vocab_only)
    plan = [] if vocab_only else plan_tensors(model, outtype)
    emb = next((t for t in plan if t.name == "token_embd.weight"), None)
    n_vocab = emb.shape[0] if emb is not None else (model.hparams.vocab_size or 0)
    if emb is not None and model.hparams.vocab_size and model.hparams.vocab_size != n_vocab:
        log.warning("config vocab_size %d != embedding rows %d: using the rows", model.hparams.vocab_size,
                    n_vocab)

    writer = gguf.GGUFWriter(None, model.spec.name)
    writer.add_type("model")
    writer.add_name(str((model.manifest or {}).get("base_model") or model.path.resolve().parent.name))
    _add_hparams(writer, model, n_vocab)
    writer.add_file_type(FILE_TYPES[outtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    pre, tokenizer_template = _add_any_vocab(writer, model, n_vocab, pre_tokenizer)
    _add_template_and_manifest(writer, model, tokenizer_template)
    for t in plan:
        if t.qtype == GGMLQuantizationType.BF16:
            writer.add_tensor_info(t.name, (*t.shape[:-1], t.shape[-1] * 2), np.dtype(np.uint8), t.nbytes,
                                   raw_dtype=GGMLQuantizationType.BF16)
        else:
            dtype = np.dtype(np.float16 if t.qtype == GGMLQuantizationType.F16 else np.float32)
            writer.add_tensor_info(t.name, t.shape, dtype, t.nbytes)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(t.nbytes for t in plan), unit="B", unit_scale=True, desc=f"writing {out.name}")
    try:
        with temp_sibling(out) as tmp:
            try:
                writer.write_header_to_file(tmp)
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                for t in plan:
                    writer.write_tensor_data(t.stored_bytes())
                    if bar is not None:
                        bar.update(t.nbytes)
            finally:
                writer.close()  # before temp_sibling renames (or removes) the file
    finally:
        if bar is not None:
            bar.close()
    return ConvertResult(out, model.spec.name, outtype, len(plan), n_vocab, pre, out.stat().st_size,
                         model.manifest is not None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.to_gguf", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Hugging Face model folder (merged)")
    parser.add_argument("--outtype", choices=sorted(OUTTYPES), default="f16",
                        help="type of 2-D weights (1-D tensors stay f32); default f16")
    parser.add_argument("--out", type=Path, required=True, help="GGUF file to write")
    parser.add_argument("--vocab-only", action="store_true",
                        help="write hyper-parameters and vocabulary only")
    parser.add_argument("--pre-tokenizer", metavar="NAME",
                        help="llama.cpp pre-tokenizer name, for tokenizers the converter does not recognise")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gguf").setLevel(logging.WARNING)
    try:
        res = convert(args.model, args.out, args.outtype, vocab_only=args.vocab_only,
                      pre_tokenizer=args.pre_tokenizer, progress=True)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} was not written", file=sys.stderr)
        return 130
    print(f"wrote {res.path} ({res.size_bytes / 2**20:.1f} MiB): {res.arch}, {res.outtype}, {res.n_tensors} "
          f"tensors, vocab {res.n_vocab}, pre-tokenizer {res.pre_tokenizer}, "
          f"psyedge manifest {'yes' if res.has_manifest else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
