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
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psyedge.contract import FIELDS, allowed_values, canonical_json
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
            "this base model (deepseek-r1 for DeepSeek-R1-Distill, chatml for Qwen chat, raw for base "
            "models)")


@dataclass
class Encoded:
    """Tokenised examples and how many were dropped for length."""

    examples: list[dict[str, list[int]]] = field(default_factory=list)
    dropped_too_long: int = 0
    corrupted: int = 0  # examples with wrong, unlabeled earlier values (corrupt_prior_values)


def encode_record(tokenizer: Any, record: Mapping[str, Any], template: ChatTemplate, bos: bool,
                  corrupt: random.Random | None = None) -> dict[str, list[int]]:
    """One SFT record -> input_ids, labels (prompt positions = IGNORE_INDEX) and `risk_mask`.

    The prompt is tokenized segment by segment, as the Screener feeds it (training.prompt_ids).
    `risk_mask` is 1 at the answer tokens that spell the risk_flag value (`value_mask`). With
    `corrupt`, the values before risk_flag are replaced by other allowed values and left
    unlabeled (`corrupt_prior_values`).
    """
    instruction, input_text = record["instruction"], record["input"]
    output, hidden = record["output"], ()
    if corrupt is not None:
        output, hidden = corrupt_prior_values(output, corrupt)
    _, answer = render_training_text(instruction, input_text, output, template)
    prompt_ids = segmented_prompt_ids(tokenizer, instruction, input_text, template, bos)
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    answer_ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    labels = list(answer_ids)
    for name in hidden:
        for i, m in enumerate(value_mask(answer, offsets, name)):
            if m:
                labels[i] = IGNORE_INDEX
    return {"input_ids": prompt_ids + answer_ids,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + labels,
            "risk_mask": [0] * len(prompt_ids) + value_mask(answer, offsets, "risk_flag")}


def value_mask(answer: str, offsets: Sequence[tuple[int, int]], name: str) -> list[int]:
    """1 for each answer token whose characters overlap the value of field `name`, else 0.

    The answer is canonical JSON (`"name":value,` or `"name":"value",`); `offsets` are the fast
    tokenizer's character offsets of the answer's tokens. The risk value is 1-2 of about 30
    answer tokens, so in a plain mean the safety-critical choice weighs as little as a brace;
    marking it lets the loss weigh it on its own (`TrainConfig.risk_loss_weight`).
    """
    key = f'"{name}":'
    start = answer.index(key) + len(key)
    end = min(i for i in (answer.find(",", start), answer.find("}", start)) if i >= 0)
    if answer[start] == '"':
        start, end = start + 1, end - 1
    mask = [int(lo < end and hi > start) for lo, hi in offsets]
    if not any(mask):
        raise ValueError(f"no answer token covers the {name} value in {answer!r}")
    return mask


def corrupt_prior_values(output: str, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """The answer with every value before risk_flag replaced by another allowed one, and those
    fields' names.

    The Screener decodes the fields in contract order, so the risk decision is conditioned on the
    model's own depression and anxiety values. Trained only on true earlier values, a model can
    learn risk from them (depression 2 -> suicidal) instead of from the text, and when its
    earlier guesses are wrong the shortcut fails on every row: a 60-step Gemma run scored 0.99
    P(suicidal) on its training rows with the true earlier values and answered "none" on every
    held-out row. Shown wrong earlier values (never as a target), it must read the text.
    """
    labels = json.loads(output)
    hidden = FIELDS[: FIELDS.index("risk_flag")]
    for name in hidden:
        labels[name] = rng.choice([v for v in allowed_values(name) if v != labels[name]])
    return canonical_json(labels), hidden


def encode_records(tokenizer: Any, records: Iterable[Mapping[str, Any]], template: str | ChatTemplate,
                   bos: bool, max_length: int, prior_dropout: float = 0.0, seed: int = 0) -> Encoded:
    """Encode every record; drop (and count) those longer than `max_length` rather than cut them,
    since a cut prompt would teach the model text it never sees at inference. A `prior_dropout`
    share of the records (drawn with `seed`) gets wrong, unlabeled earlier values
    (`corrupt_prior_values`)."""
    tpl = get_template(template) if isinstance(template, str) else template
    check_template(tokenizer, tpl)
    rng = random.Random(seed)
    out = Encoded()
    for rec in records:
        corrupt = rng if prior_dropout and rng.random() < prior_dropout else None
        ex = encode_record(tokenizer, rec, tpl, bos, corrupt)
        if len(ex["input_ids"]) > max_length:
            out.dropped_too_long += 1
            continue
        out.corrupted += corrupt is not None
        out.examples.append(ex)
    if out.dropped_too_long:
        log.warning("dropped %d example(s) longer than max_length=%d tokens", out.dropped_too_long,
                    max_length)
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
