"""Greedy decoding with transformers: what a (merged) checkpoint answers before it becomes a GGUF.

Used to check a fine-tune on held-out conversations (exact match against the canonical JSON):
the prompt is `psyedge.prompt.render`, BOS follows the model's tokenizer_config, and decoding
stops at EOS, as the Screener does with llama.cpp (minus the grammar, so format errors show).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from psyedge.contract import canonical_json
from psyedge.prompt import render

MAX_NEW_TOKENS = 48  # the longest canonical answer is ~25 tokens with the tiny vocabulary


def greedy_answers(model_dir: Path, conversations: Iterable[Any], template: str = "deepseek-r1",
                   max_new_tokens: int = MAX_NEW_TOKENS, model: Any = None) -> list[str]:
    """The decoded answer (text before EOS) for each conversation; `model` overrides loading."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.examples import wants_bos
    from training.precision import choose

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if model is None:
        dtype = choose("auto", device="cpu").torch_dtype()  # bf16 only where this CPU runs it natively
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, device_map={"": "cpu"})
    model.eval()
    bos = wants_bos(model_dir, tokenizer)
    answers = []
    for conversation in conversations:
        ids = tokenizer(render(conversation, template), add_special_tokens=False)["input_ids"]
        if bos:
            ids = [tokenizer.bos_token_id, *ids]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]),
                                 attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True))
    return answers


def exact_match(answers: Sequence[str], labels: Sequence[dict[str, Any]]) -> float:
    """Share of answers equal to the canonical JSON of their labels."""
    if len(answers) != len(labels):
        raise ValueError(f"{len(answers)} answers for {len(labels)} label sets")
    return sum(a.strip() == canonical_json(lab) for a,
               lab in zip(answers, labels, strict=True)) / max(len(labels), 1)
