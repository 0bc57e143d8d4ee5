"""Build the tiny base model: a 2-layer Qwen2ForCausalLM and a byte-level BPE tokenizer, made here.

`PROFILE=tiny` must run every stage (train, merge, GGUF, Q4_K_M, Android) offline in minutes, so
its base model is built from nothing instead of downloaded. It copies the parts of
DeepSeek-R1-Distill-Qwen that the later stages depend on:

- architecture `Qwen2ForCausalLM` (q/k/v biases, grouped-query attention, untied lm_head), with
  every matrix width a multiple of 256 so llama.cpp's Q4_K_M k-quants (256-wide super-blocks)
  apply to all weights;
- a byte-level BPE whose pre-tokenizer is Qwen2's split regex, so llama.cpp's `qwen2`
  pre-tokenizer splits text exactly as the Hugging Face tokenizer does;
- DeepSeek-R1's special tokens and chat template (from `psyedge.prompt`), a BOS added to every
  encoding, and a pad token distinct from EOS (pad == eos would mask the EOS label in training).

Deterministic for a given seed: weights come from `torch.manual_seed(seed)` and the BPE trainer
sees a fixed corpus (the SDK's strings, `training.tiny_corpus`, the label JSON alphabet and the
3,755 level-1 GB2312 characters, which the codec table gives without any download).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.io import atomic_dir, atomic_write_json
from psyedge.contract import FIELDS, allowed_values, canonical_json
from psyedge.prompt import INSTRUCTION, ROLE_NAMES, TEMPLATES
from training.tiny_corpus import SENTENCES

log = logging.getLogger(__name__)

#: Qwen2's pre-tokenizer split regex, as in the `Split` step of Qwen2's tokenizer.json (llama.cpp
#: `LLAMA_VOCAB_PRE_TYPE_QWEN2` implements the same expression).
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# DeepSeek-R1-Distill-Qwen's control tokens. Its own tokenizer marks BOS/EOS special and the
# role/think markers as plain added tokens; we keep that split. Its pad token is EOS, which we
# deliberately do not copy: a distinct pad keeps EOS a learnable label.
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
#: Qwen2's document separator. Unused by our prompts, but transformers 5 loads any `qwen2` model's
#: tokenizer as `Qwen2Tokenizer`, which appends this token when the vocabulary lacks it, leaving a
#: token id the model has no embedding row for. Having it in the vocabulary keeps the two sizes equal.
ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS, EOS, PAD, ENDOFTEXT)
ADDED_TOKENS: tuple[str, ...] = ("<｜User｜>", "<｜Assistant｜>", "<think>", "</think>")

#: Final RMSNorm gain. With the default 1.0 and init std 0.02, a frozen random lm_head can give a
#: token at most ~5 nats of margin over 5,000 others, so LoRA-only training plateaus near loss 3.5.
#: Pretrained Qwen2 checkpoints carry final-norm gains of several units; 5.0 lets the tiny model
#: reach confident logits the same way.
FINAL_NORM_GAIN = 5.0
#: BPE vocabulary target before the added tokens (the trainer stops earlier if it runs out of pairs).
VOCAB_TARGET = 5120
#: How often the prompt-shaped text is repeated so its words win merges over rare characters.
PROMPT_WEIGHT = 50


@dataclass(frozen=True)
class TinyShape:
    """The tiny model's shape: every width a multiple of 256 (Q4_K_M super-block size)."""

    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        assert self.hidden_size % 256 == 0 and self.intermediate_size % 256 == 0, (
            f"hidden {self.hidden_size} / intermediate {self.intermediate_size} must be multiples of 256")
        assert self.num_attention_heads * self.head_dim == self.hidden_size, (
            f"{self.num_attention_heads} heads x {self.head_dim} != hidden {self.hidden_size}")


def _gb2312_level1() -> str:
    """The 3,755 most common Chinese characters (GB2312 level 1, rows 0xB0-0xD7), from the codec."""
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            if hi == 0xD7 and lo > 0xF9:  # row 55 ends at 0xD7F9
                break
            chars.append(bytes((hi, lo)).decode("gb2312"))
    return "".join(chars)


def _label_outputs() -> Iterator[str]:
    """Every canonical label JSON (640 strings): the output alphabet the model must spell."""
    for values in itertools.product(*(allowed_values(f) for f in FIELDS)):
        yield canonical_json(dict(zip(FIELDS, values, strict=True)))


def tokenizer_corpus() -> Iterator[str]:
    """The fixed text the BPE is trained on (same order every call: training is deterministic)."""
    prompt_text = [INSTRUCTION, *SENTENCES, *(f"{name}：" for name in ROLE_NAMES.values())]
    for tpl in TEMPLATES.values():
        prompt_text += [tpl.prefix, tpl.suffix, tpl.eos]
    for _ in range(PROMPT_WEIGHT):
        yield from prompt_text
    yield from _label_outputs()
    yield "0123456789 {}[]\":,-|\n"
    yield from _gb2312_level1()  # one character per sequence: merges its bytes, nothing longer


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast (imported lazily: heavy)
    """Train the byte-level BPE and wrap it as a Hugging Face fast tokenizer."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    from psyedge.prompt import get_template

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()  # Qwen2 normalises to NFC too
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_TARGET, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        add_bos_token=True, add_eos_token=False, model_max_length=TinyShape().max_position_embeddings,
        clean_up_tokenization_spaces=False, padding_side="right",
        chat_template=get_template("deepseek-r1").jinja,
    )


def build_model(tokenizer, shape: TinyShape, seed: int):  # -> Qwen2ForCausalLM
    """A randomly initialised Qwen2ForCausalLM sized to the tokenizer (bf16, like the real base)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer), tie_word_embeddings=False, use_sliding_window=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **asdict(shape),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.fill_(FINAL_NORM_GAIN)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False)
    return model


def _declare_tokenizer_class(model_dir: Path) -> None:
    """Declare the tokenizer the way DeepSeek-R1-Distill-Qwen does (`LlamaTokenizerFast`, BOS on).

    transformers 4 then loads tokenizer.json as saved; transformers 5 overrides the class for
    `qwen2` models with `Qwen2Tokenizer`, which rebuilds the same BPE from the file's vocabulary,
    merges and split regex (the tests check both load paths give the same ids).
    """
    path = model_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text("utf-8"))
    cfg.update(tokenizer_class="LlamaTokenizerFast", add_bos_token=True, add_eos_token=False)
    atomic_write_json(path, cfg)


def build_tiny_base(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny base model + tokenizer to `out_dir` (replaced whole); return `out_dir`.

    The folder is assembled beside `out_dir` and renamed into place, so an interrupted build
    never leaves a half-written model under the final name.
    """
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, TinyShape(), seed)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _declare_tokenizer_class(tmp)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny base: %d parameters, vocab %d -> %s", n_params, len(tokenizer), out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (replaced whole)")
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = build_tiny_base(args.out, args.seed)
    except OSError as exc:
        print(f"error: cannot write the tiny model to {args.out}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
