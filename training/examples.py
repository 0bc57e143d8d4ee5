"""SFT records -> token ids with the prompt masked, and the batch collator.

The prompt comes from `psyedge.prompt.render_training_text`, the same function chain the Screener
uses, and is tokenised on its own exactly as at inference: segment by segment, as the Screener
feeds llama.cpp (`training.prompt_ids`), then the model generates. The answer is the canonical
JSON followed by the template's EOS text, which the tokenizer turns into the EOS id: that id is
a label, so the model learns to stop. The `raw` template (base models such as Gemma 3 270M) has
no EOS text: its answer ends at the closing "}", which the Screener's decode plan forces.

Labels are built from positions, never from `pad_token_id`: DeepSeek-R1-Distill's pad token *is*
its EOS, and masking "every pad id" would silently mask the EOS label too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psyedge.prompt import ChatTemplate, get_template, render_training_text
from training.prompt_ids import prompt_ids as segmented_prompt_ids

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # PyTorch cross-entropy's ignore_index: no loss on these positions


class TemplateMismatch(ValueError):
    """The chat template's markers are not single tokens of this tokenizer (wrong --template)."""


def wants_bos(model_dir: Path, tokenizer: Any) -> bool:
    """Whether inference prepends BOS: `add_bos_token` in the model's tokenizer_config.json.

    llama.cpp reads this flag into the GGUF, so training follows the file, not whatever a given
    transformers version's tokenizer class does with it.
    """
    if tokenizer.bos_token_id is None:
        return False
    cfg_path = Path(model_dir) / "tokenizer_config.json"
    if cfg_path.is_file():
        return bool(json.loads(cfg_path.read_text("utf-8")).get("add_bos_token", False))
    return bool(getattr(tokenizer, "add_bos_token", False))


def check_template(tokenizer: Any, template: ChatTemplate) -> None:
    """Refuse a template whose EOS text is not exactly the tokenizer's EOS token.

    The seed trained DeepSeek-R1-Distill with ChatML markers its vocabulary does not have: they
    became a dozen ordinary tokens and the model never saw its real EOS. This catches that.
    """
    if not template.eos:
        return
    ids = tokenizer(template.eos, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] != tokenizer.eos_token_id:
        raise TemplateMismatch(
            f"template {template.name!r} ends answers with {template.eos!r}, which this tokenizer encodes as "
            f"{ids} (its EOS is {tokenizer.eos_token!r} = {tokenizer.eos_token_id}); choose the template of "
            "this base model (deepseek-r1 for DeepSeek-R1-Distill, chatml for Qwen chat, raw for base models)")


@dataclass
class Encoded:
    """Tokenised examples and how many were dropped for length."""

    examples: list[dict[str, list[int]]] = field(default_factory=list)
    dropped_too_long: int = 0


def encode_record(tokenizer: Any, record: Mapping[str, Any], template: ChatTemplate,
                  bos: bool) -> dict[str, list[int]]:
    """One SFT record -> input_ids, labels (prompt positions = IGNORE_INDEX) and `risk_mask`.

    The prompt is tokenized segment by segment, as the Screener feeds it (training.prompt_ids).
    `risk_mask` is 1 at the answer tokens that spell the risk_flag value (see `risk_value_mask`).
    """
    instruction, input_text = record["instruction"], record["input"]
    _, answer = render_training_text(instruction, input_text, record["output"], template)
    prompt_ids = segmented_prompt_ids(tokenizer, instruction, input_text, template, bos)
    answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return {"input_ids": prompt_ids + answer_ids,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
            "risk_mask": [0] * len(prompt_ids) + risk_value_mask(tokenizer, answer, answer_ids)}


RISK_KEY = '"risk_flag":"'


def risk_value_mask(tokenizer: Any, answer: str, answer_ids: list[int]) -> list[int]:
    """1 for each answer token whose characters overlap the risk_flag value, else 0.

    The value is 1-2 of about 30 answer tokens, so in a mean over the answer the safety-critical
    choice weighs as little as a brace; marking it lets the loss weigh it on its own
    (`TrainConfig.risk_loss_weight`). Character offsets come from the fast tokenizer; the same
    call must give the same ids, or the mask would point at the wrong tokens.
    """
    start = answer.index(RISK_KEY) + len(RISK_KEY)
    end = answer.index('"', start)
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != answer_ids:
        raise ValueError("the tokenizer gave other ids with offsets than without")
    mask = [int(lo < end and hi > start) for lo, hi in enc["offset_mapping"]]
    if not any(mask):
        raise ValueError(f"no answer token covers the risk value in {answer!r}")
    return mask


def encode_records(tokenizer: Any, records: Iterable[Mapping[str, Any]], template: str | ChatTemplate,
                   bos: bool, max_length: int) -> Encoded:
    """Encode every record; drop (and count) those longer than `max_length` rather than cut them,
    since a cut prompt would teach the model text it never sees at inference."""
    tpl = get_template(template) if isinstance(template, str) else template
    check_template(tokenizer, tpl)
    out = Encoded()
    for rec in records:
        ex = encode_record(tokenizer, rec, tpl, bos)
        if len(ex["input_ids"]) > max_length:
            out.dropped_too_long += 1
            continue
        out.examples.append(ex)
    if out.dropped_too_long:
        log.warning("dropped %d example(s) longer than max_length=%d tokens", out.dropped_too_long, max_length)
    return out


@dataclass
class PadCollator:
    """Right-pads a batch; padding gets attention 0 and label IGNORE_INDEX (by position)."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(ex["input_ids"]) for ex in batch)
        ids, labels, mask = [], [], []
        for ex in batch:
            n = len(ex["input_ids"])
            ids.append(ex["input_ids"] + [self.pad_token_id] * (width - n))
            labels.append(ex["labels"] + [IGNORE_INDEX] * (width - n))
            mask.append([1] * n + [0] * (width - n))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}
