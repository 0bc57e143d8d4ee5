"""Labeling cost: token totals from the results, prices from the config, and prompt-size estimates.

The bill is computed from the usage each result row carries (every reply of every attempt,
re-asks included, as the service reported it), so the report equals what the service counted.
Prices per million tokens come from `label_config.yaml`; the Batch API's discount is the
config's `batch_discount` multiplier. Nothing about money is hard-coded here.

`python -m pipeline.cost --data-dir DIR [--tokenizer FILE]` measures the average input tokens
per request of the SDK prompt over the labeling shards *before* spending anything: with a
tokenizer (a `tokenizer.json`, or a GGUF whose vocabulary is read with llama.cpp) it counts,
without one it estimates (`estimate_tokens`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.labeling.config import LabelConfig
from pipeline.labeling.records import Usage
from pipeline.layout import Layout

log = logging.getLogger(__name__)

#: Estimate without a tokenizer: tokens per CJK character and per other character. Calibrated on
#: the real student subset (1,320 SDK prompts, avg 899 characters): the Gemma 3 vocabulary, which
#: google-genai's local tokenizer maps gemini-2.5-* to, counts 532 tokens per prompt on average
#: (Qwen2.5's, the student's, 481); these constants give ~535. Used for TPM reservations.
CJK_TOKENS_PER_CHAR = 0.68
OTHER_TOKENS_PER_CHAR = 0.3


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x3000 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFFEF


def estimate_tokens(text: str) -> int:
    """Token estimate for mixed Chinese text (for TPM reservations and reports without a tokenizer)."""
    cjk = sum(1 for ch in text if _is_cjk(ch))
    return int(round(cjk * CJK_TOKENS_PER_CHAR + (len(text) - cjk) * OTHER_TOKENS_PER_CHAR)) + 1


@dataclass(frozen=True)
class CostReport:
    """Totals of a labeling run and what they cost under the config's prices."""

    provider: str
    model: str
    usage: Usage
    samples: int
    requests_with_usage: int
    price_per_million: dict[str, float]
    batch_discount: float

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], cfg: LabelConfig) -> CostReport:
        total = Usage()
        n = 0
        for row in rows:
            total = total + Usage.from_dict(row.get("usage"))
            n += 1
        p = cfg.price
        return cls(cfg.provider, cfg.model, total, n, total.calls,
                   {"input": p.input, "output": p.output, "thinking": p.thinking}, cfg.batch_discount)

    def cost_usd(self) -> dict[str, float]:
        """Cost per token kind and total, Batch discount applied."""
        m = self.batch_discount / 1e6
        parts = {"input": self.usage.input * self.price_per_million["input"] * m,
                 "output": self.usage.output * self.price_per_million["output"] * m,
                 "thinking": self.usage.thinking * self.price_per_million["thinking"] * m}
        parts["total"] = sum(parts.values())
        return {k: round(v, 6) for k, v in parts.items()}

    def to_dict(self) -> dict[str, Any]:
        calls = max(self.usage.calls, 1)
        return {
            "provider": self.provider, "model": self.model, "samples": self.samples,
            "requests": self.usage.calls,
            "tokens": {"input": self.usage.input, "output": self.usage.output,
                       "thinking": self.usage.thinking},
            "avg_input_tokens_per_request": round(self.usage.input / calls, 1) if self.usage.calls else 0.0,
            "price_per_million_usd": self.price_per_million, "batch_discount": self.batch_discount,
            "cost_usd": self.cost_usd(),
        }

    def summary(self) -> str:
        d = self.to_dict()
        t = d["tokens"]
        return (f"cost {self.provider}/{self.model}: {d['requests']} requests, tokens in {t['input']:,} "
                f"out {t['output']:,} thinking {t['thinking']:,} (avg in/request "
                f"{d['avg_input_tokens_per_request']}), "
                f"${d['cost_usd']['total']:.4f}" + (f" after batch discount x{self.batch_discount}"
                                                     if self.batch_discount != 1 else ""))


# ---- counting prompt tokens before a run --------------------------------------------------------

def tokenizer_counter(path: str | Path) -> Callable[[str], int]:
    """A counting function from a `tokenizer.json` (tokenizers) or a `.gguf` (llama.cpp vocab only)."""
    path = Path(path)
    if path.suffix == ".gguf":
        from llama_cpp import Llama

        llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path if path.name.endswith(".json") else path / "tokenizer.json"))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def prompt_token_stats(conversations: Iterable[list[dict[str, str]]],
                       count: Callable[[str], int] | None = None) -> dict[str, Any]:
    """Average/max input tokens of the SDK teacher prompt over `conversations` (and the estimate)."""
    from psyedge.prompt import instruction_and_transcript

    n = total = est_total = biggest = chars = 0
    for conv in conversations:
        prompt = instruction_and_transcript(conv)
        est = estimate_tokens(prompt)
        tokens = count(prompt) if count else est
        n += 1
        total += tokens
        est_total += est
        chars += len(prompt)
        biggest = max(biggest, tokens)
    return {"prompts": n, "method": "tokenizer" if count else "estimate",
            "avg_input_tokens": round(total / n, 1) if n else 0.0, "max_input_tokens": biggest,
            "avg_estimated_tokens": round(est_total / n, 1) if n else 0.0,
            "avg_prompt_chars": round(chars / n, 1) if n else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="average input tokens per labeling request over the shards")
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--tokenizer", type=Path, help="tokenizer.json or .gguf to count with (else estimate)")
    args = ap.parse_args(argv)
    from pipeline.io import read_jsonl

    shards = Layout(args.data_dir).shards()
    if not shards:
        print(f"error: no shards under {args.data_dir / 'labeling'}: run `make data` first", file=sys.stderr)
        return 2
    if args.tokenizer and not args.tokenizer.exists():
        print(f"error: --tokenizer {args.tokenizer} does not exist", file=sys.stderr)
        return 2
    count = tokenizer_counter(args.tokenizer) if args.tokenizer else None
    convs = (rec["conversation"] for shard in shards for rec in read_jsonl(shard))
    stats = prompt_token_stats(convs, count)
    stats["tokenizer"] = str(args.tokenizer) if args.tokenizer else None
    print(stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
