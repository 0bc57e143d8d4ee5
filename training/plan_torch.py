"""The SDK's decode plan run by a transformers model: the fine-tuned checkpoint's labels before it
becomes a GGUF, computed exactly as the Screener computes them (sdk/python/DECODING.md).

The prompt's ids come segment by segment (`training.prompt_ids`, the ids the Screener feeds); the
answer is the plan's forced text with the model asked only at the four holes, each field's value
chosen by `psyedge.decode.choose` over that field's allowed values (the same trie renormalisation,
the same tie rule). So labels and probabilities here differ from the Screener's on the GGUF only by
what the conversion and quantisation change: the quality ladder's measure of each hop.

Not here: the Screener's token-budget cut of very long conversations (`Screener._fit`, which only
acts beyond its context of 4,096 tokens); the character trim (`psyedge.prompt.trim`) is applied.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psyedge.contract import allowed_values
from psyedge.decode import choose, shared_first
from psyedge.errors import ModelError
from psyedge.plan import PLAN
from psyedge.prompt import INSTRUCTION, ChatTemplate, get_template, prepare, transcript
from training.prompt_ids import prompt_ids, segment_ids


@dataclass(frozen=True)
class PlanResult:
    """One conversation's labels (schema values) and per-field value probabilities."""

    labels: dict[str, Any]
    probabilities: dict[str, dict[str, float]]


class PlanScorer:
    """A causal LM and its tokenizer, ready to label conversations along the decode plan."""

    def __init__(self, model: Any, tokenizer: Any, template: str | ChatTemplate, bos: bool) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = get_template(template) if isinstance(template, str) else template
        self.bos = bos
        self.forced = [self._exact(s.forced) for s in PLAN if s.forced is not None]
        self.values = [tuple(self._exact(v) for v in s.values) for s in PLAN if s.forced is None]
        self.fields = [s.field or "" for s in PLAN if s.forced is None]
        head = [tokenizer.bos_token_id] if bos else []
        self.head = head + segment_ids(tokenizer, self.template.prefix + INSTRUCTION, True)
        self._head_cache: Any = None  # the instruction prefix's KV cache, computed once

    @classmethod
    def load(cls, model_dir: Path, template: str) -> PlanScorer:
        """Load a merged checkpoint on the CPU in the dtype training.precision picks for it."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from training.examples import wants_bos
        from training.precision import choose as choose_dtype

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        dtype = choose_dtype("auto", device="cpu").torch_dtype()
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype,
                                                     device_map={"": "cpu"})
        return cls(model, tokenizer, template, wants_bos(model_dir, tokenizer))

    def _exact(self, text: str) -> tuple[int, ...]:
        """`text`'s ids, refused unless they decode back to it (jump-forward needs exact text)."""
        ids = tuple(segment_ids(self.tokenizer, text, parse_special=False))
        back = self.tokenizer.decode(list(ids), skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)
        if back != text:
            raise ModelError(f"the tokenizer does not round-trip {text!r} (gives {back!r})")
        return ids

    def prompt(self, conversation: Any) -> list[int]:
        """The ids the Screener feeds up to the first value: prompt, then the first forced text."""
        turns, _ = prepare(conversation)
        ids = prompt_ids(self.tokenizer, INSTRUCTION, transcript(turns), self.template, self.bos)
        return ids + list(self.forced[0])

    def _step(self, ids: Sequence[int], cache: Any) -> tuple[Any, Any]:
        """Feed `ids` after `cache`; the logits after the last of them (float64) and the cache."""
        import torch

        out = self.model(input_ids=torch.tensor([list(ids)]), past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].double().numpy(), out.past_key_values

    def assess(self, conversation: Any) -> PlanResult:
        """Labels and probabilities for one conversation (`[{"role", "text"}, ...]`)."""
        import torch

        labels: dict[str, Any] = {}
        probabilities: dict[str, dict[str, float]] = {}
        ids = self.prompt(conversation)
        if ids[: len(self.head)] != self.head:
            raise ModelError("the prompt does not start with the instruction prefix's ids")
        with torch.no_grad():
            if self._head_cache is None:
                _, self._head_cache = self._step(self.head, None)
            logits, cache = self._step(ids[len(self.head):], copy.deepcopy(self._head_cache))
            for f, cands in enumerate(self.values):
                deeper: dict[int, list[Any]] = {}
                for i in shared_first(cands):  # a value's later tokens need their own logits
                    rest = cands[i][:-1]
                    out = self.model(input_ids=torch.tensor([list(rest)]),
                                     past_key_values=copy.deepcopy(cache), use_cache=True)
                    deeper[i] = [row.double().numpy() for row in out.logits[0]]

                def logits_at(i: int, d: int, first: Any = logits, more: Any = deeper) -> Any:
                    return first if d == 0 else more[i][d - 1]

                best, probs = choose(cands, logits_at)
                name = self.fields[f]
                labels[name] = allowed_values(name)[best]
                probabilities[name] = dict(zip(PLAN_VALUES[f], probs, strict=True))
                if f + 1 < len(self.values):
                    logits, cache = self._step(list(cands[best]) + list(self.forced[f + 1]), cache)
        return PlanResult(labels, probabilities)


#: Per field, the value texts in plan order (the keys of `PlanResult.probabilities[field]`).
PLAN_VALUES: tuple[tuple[str, ...], ...] = tuple(s.values for s in PLAN if s.forced is None)
