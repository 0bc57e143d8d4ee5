"""`Screener`: screen a conversation into the four labels with a GGUF model, on-device.

Decoding jumps forward along the decode plan (DECODING.md): the fixed JSON text is fed as token
batches and the model is asked only at the four value positions, choosing among the allowed
values; the per-value probabilities come from the same logits. The answer is guessed (the last
assessment's values) and decoded with the prompt in one call; from the first field the model
chooses differently the rest is decoded again, so the labels are exactly field-by-field ones. The
instruction prefix is decoded once per Screener and kept in the KV cache; a session re-decodes only
its new turns. A risk lexicon raises `risk_flag` on explicit expressions. Nothing here opens a
socket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psyedge.contract import CONTRACT_VERSION, Labels, allowed_values, most_severe
from psyedge.decode import Engine, EngineConfig, choose, shared_first
from psyedge.errors import InputError, ModelError
from psyedge.lexicon import lexicon_risk, scan
from psyedge.metadata import KEYS
from psyedge.plan import PLAN
from psyedge.prompt import (
    INSTRUCTION,
    ChatTemplate,
    Turn,
    check_conversation,
    check_turn,
    get_template,
    prompt_hash,
    transcript,
    transcript_line,
    trim,
)

log = logging.getLogger(__name__)

#: Slack kept free at the end of the context beyond the answer's own tokens.
ANSWER_SLACK = 8


@dataclass(frozen=True)
class TokenPlan:
    """The decode plan in this model's tokens: what the Android bridge computes the same way."""

    prefix: tuple[int, ...]  # BOS + template.prefix + INSTRUCTION (cached once)
    suffix: tuple[int, ...]  # template.suffix
    forced: tuple[tuple[int, ...], ...]  # F0..F4, the plan's forced steps in order
    values: tuple[tuple[tuple[int, ...], ...], ...]  # per field, per allowed value: its tokens


@dataclass(frozen=True)
class Prompt:
    """A conversation as the Screener feeds it: the turns kept after the trim policy and the
    context budget, each kept turn's transcript tokens, and whether anything was cut."""

    turns: tuple[Turn, ...]
    lines: tuple[tuple[int, ...], ...]
    trimmed: bool


class KVCache:
    """What sequence 0 of the KV cache holds, as tokens, kept equal to what it really holds.

    Every change to sequence 0 goes through these four methods, so the picture cannot drift
    from the cache: `reuse` keeps the longest prefix shared with a new prompt, `cut` drops a
    tail, `extend` records tokens just decoded, `reset` distrusts everything (after an error,
    or after someone else decoded on the context). A cache that cannot cut at a position
    (recurrent state) is rebuilt from the instruction prefix's snapshot (DECODING.md 3).
    """

    def __init__(self, engine: Engine, prefix: Sequence[int]) -> None:
        self.engine = engine
        self.prefix = tuple(prefix)
        engine.decode_seq(self.prefix, 0, logits="none")
        self.snapshot = engine.state_get(0)
        self.tokens: list[int] = list(self.prefix)

    def reuse(self, full: Sequence[int]) -> int:
        """Cut to the longest prefix shared with `full`, leaving at least its last token to
        decode (its logits are needed); returns where decoding starts."""
        cached = self.tokens
        n = min(len(cached), len(full) - 1)
        k = 0
        while k < n and cached[k] == full[k]:
            k += 1
        if k < len(self.prefix) or not self.engine.seq_rm(0, k, -1):
            k = self._restore()
        self.tokens = list(full[:k])
        return k

    def cut(self, pos: int) -> None:
        """Drop sequence 0 from `pos` on (rebuilding from the snapshot if it cannot be cut)."""
        keep = self.tokens[:pos]
        if not self.engine.seq_rm(0, pos, -1):
            n = self._restore()
            self.engine.decode_seq(keep[n:], n, logits="none")
        self.tokens = keep

    def extend(self, tokens: Sequence[int]) -> None:
        """Record tokens just decoded on sequence 0 after what it holds."""
        self.tokens += tokens

    def reset(self) -> None:
        """Trust nothing beyond the snapshot: the next `reuse` restores the prefix."""
        self.tokens = []

    def _restore(self) -> int:
        self.engine.clear()
        self.engine.state_set(self.snapshot, 0)
        return len(self.prefix)


@dataclass
class Assessment:
    """One screening result. `probabilities[field][value_text]` sums to 1 per field."""

    labels: Labels
    probabilities: dict[str, dict[str, float]]
    risk_source: str
    timings: dict[str, float]
    trimmed: bool = False
    model_risk_flag: str = "none"
    lexicon_hits: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `{"labels", "probabilities", "risk_source", "timings", "trimmed"}`."""
        return {
            "labels": self.labels.to_dict(),
            "probabilities": {f: dict(p) for f, p in self.probabilities.items()},
            "risk_source": self.risk_source,
            "timings": dict(self.timings),
            "trimmed": self.trimmed,
        }


class Screener:
    """A GGUF model ready to screen conversations.

    `template` names the chat template (`deepseek-r1`, `chatml`, `raw`); without it the GGUF's
    `psyedge.template` key decides. `lexicon=False` turns the risk safety net off. `n_threads=0`
    uses up to 4 cores. `flash_attn` is on by default (llama-cpp-python's `Llama` defaults off).
    `adapter` is a LoRA adapter GGUF applied on top of the model (`make lora-gguf`): the fine-tune
    stays unquantized while the base keeps its 4-bit type; its psyedge.* keys come first.
    """

    def __init__(self, model_path: str | Path, template: str | None = None, *, lexicon: bool = True,
                 n_ctx: int = 4096, n_threads: int = 0, flash_attn: bool = True,
                 verbose: bool = False, adapter: str | Path | None = None) -> None:
        if template is not None and not isinstance(template, str):
            raise TypeError(f"template must be a template name (str), got {type(template).__name__}")
        if template is not None:
            get_template(template)  # unknown name -> InputError before loading anything
        n_seq = 1 + max(len(s.values) for s in PLAN if s.forced is None)
        self.engine = Engine(model_path, EngineConfig(n_ctx=n_ctx, n_threads=n_threads,
                                                      flash_attn=flash_attn, n_seq_max=n_seq), verbose,
                             adapter=adapter)
        try:
            self.metadata = {f: self.engine.meta(k) for k, f in KEYS.items()}
            self.template: ChatTemplate = self._resolve_template(template)
            self.lexicon = lexicon
            self.token_plan = self._build_token_plan()
            self._check_fits()
            self._line_cache: dict[str, tuple[int, ...]] = {}
            self._guess = self._first_values()
            t0 = time.perf_counter()
            #: What sequence 0 holds; code that decodes on `engine` itself calls `kv.reset()`.
            self.kv = KVCache(self.engine, self.token_plan.prefix)
            self.prefix_ms = (time.perf_counter() - t0) * 1000
        except Exception:
            self.engine.close()
            raise
        log.info("loaded %s (template %s, prefix %d tokens in %.0f ms, state %d KiB)", self.engine.path.name,
                 self.template.name, len(self.token_plan.prefix), self.prefix_ms,
                 self.prefix_state_bytes // 1024)

    # ---- setup -------------------------------------------------------------------------------
    def _resolve_template(self, template: str | None) -> ChatTemplate:
        meta = self.metadata
        path = self.engine.path
        version = meta.get("contract_version")
        if version and version != CONTRACT_VERSION:
            raise ModelError(f"{path} was built for psyedge contract {version}, this SDK speaks "
                             f"{CONTRACT_VERSION}: use a matching psyedge version or re-export the model")
        if meta.get("prompt_hash") and meta["prompt_hash"] != prompt_hash():
            log.warning("%s was trained on prompt %s, this SDK renders prompt %s: labels may drift",
                        path.name, meta["prompt_hash"], prompt_hash())
        name = template or meta.get("template")
        if not name:
            raise ModelError(f"{path} has no psyedge.template metadata: name the chat template, e.g. "
                             "Screener(path, template='raw') (one of deepseek-r1, chatml, raw)")
        if template and meta.get("template") and template != meta["template"]:
            log.warning("template %r overrides the model's psyedge.template %r", template, meta["template"])
        try:
            return get_template(name)
        except InputError as exc:
            raise ModelError(f"{path}: {exc}") from None

    def _tok_exact(self, text: str) -> tuple[int, ...]:
        toks = tuple(self.engine.tokenize(text, special=False))
        back = b"".join(self.engine.piece(t) for t in toks)
        if back != text.encode("utf-8"):
            raise ModelError(f"{self.engine.path}: the tokenizer does not round-trip {text!r} (gives "
                             f"{back!r}); jump-forward decoding needs exact forced text (a space-prefix SPM "
                             "vocabulary?)")
        return toks

    def _build_token_plan(self) -> TokenPlan:
        eng = self.engine
        prefix = ([eng.bos] if eng.add_bos else []) + eng.tokenize(self.template.prefix + INSTRUCTION,
                                                                   special=True)
        forced, values = [], []
        for step in PLAN:
            if step.forced is not None:
                forced.append(self._tok_exact(step.forced) if step.forced else ())
            else:
                cands = tuple(self._tok_exact(v) for v in step.values)
                for i, a in enumerate(cands):
                    for j, b in enumerate(cands):
                        if i != j and b[: len(a)] == a:
                            raise ModelError(f"{eng.path}: value {step.values[i]!r} tokenizes as a prefix of "
                                             f"{step.values[j]!r}; jump-forward cannot tell them apart")
                values.append(cands)
        return TokenPlan(tuple(prefix), tuple(eng.tokenize(self.template.suffix, special=True)),
                         tuple(forced), tuple(values))

    def _answer_tokens(self) -> int:
        """Room the answer needs: every forced segment, each field's longest value, the slack."""
        plan = self.token_plan
        return sum(map(len, plan.forced)) + sum(max(map(len, v)) for v in plan.values) + ANSWER_SLACK

    def _check_fits(self) -> None:
        """Refuse at load a context that cannot hold the instruction, the suffix and the answer."""
        plan = self.token_plan
        if len(plan.prefix) + len(plan.suffix) + self._answer_tokens() >= self.engine.n_ctx:
            raise ModelError(f"the instruction prefix ({len(plan.prefix)} tokens) does not fit n_ctx="
                             f"{self.engine.n_ctx} with the answer: pass a larger n_ctx")

    # ---- prompt ------------------------------------------------------------------------------
    def _line_tokens(self, turn: Turn) -> tuple[int, ...]:
        line = transcript_line(turn)
        toks = self._line_cache.get(line)
        if toks is None:
            toks = tuple(self.engine.tokenize(line, special=False))  # user text never makes control tokens
            if len(self._line_cache) > 512:
                self._line_cache.clear()
            self._line_cache[line] = toks
        return toks

    def _fit(self, turns: list[Turn]) -> tuple[list[Turn], list[tuple[int, ...]], bool]:
        """Drop the oldest turns (then the oldest characters) until the prompt fits the context."""
        plan = self.token_plan
        budget = self.engine.n_ctx - len(plan.prefix) - len(plan.suffix) - self._answer_tokens()
        lines = [self._line_tokens(t) for t in turns]
        cut = False
        while len(turns) > 1 and sum(map(len, lines)) > budget:
            turns, lines, cut = turns[1:], lines[1:], True
        while sum(map(len, lines)) > budget:  # one turn left, still too long: keep its tail
            text = turns[0].text
            turns = [Turn(turns[0].role, text[len(text) // 4 or 1:])]
            lines, cut = [self._line_tokens(turns[0])], True
            if not turns[0].text:
                raise InputError(f"the context of {self.engine.n_ctx} tokens is too small for the "
                                 "instruction")
        return turns, lines, cut

    def _prepare(self, turns: list[Turn]) -> Prompt:
        kept, trimmed = trim(turns)
        kept, lines, cut = self._fit(kept)
        return Prompt(tuple(kept), tuple(lines), trimmed or cut)

    def prompt(self, conversation: Any) -> Prompt:
        """`conversation` as it is fed: the turns kept, their tokens, whether it was trimmed."""
        return self._prepare(check_conversation(conversation))

    def prompt_tokens(self, conversation: Any) -> list[int]:
        """The prompt's tokens exactly as `assess` feeds them (segment tokenization,
        DECODING.md 2): the cached prefix, each kept turn, the template's suffix. What another
        decoding path must be given to answer the same prompt."""
        return self._tokens(self.prompt(conversation))

    def _tokens(self, prompt: Prompt) -> list[int]:
        plan = self.token_plan
        return [*plan.prefix, *(t for line in prompt.lines for t in line), *plan.suffix]

    def turn_tokens(self, role: str, text: str) -> tuple[int, ...]:
        """One turn's transcript tokens, as they appear in a prompt (e.g. to size a turn)."""
        turn = check_turn(0, {"role": role, "text": text})
        if turn is None:
            raise InputError("text has no visible characters")
        return self._line_tokens(turn)

    def render(self, conversation: Any) -> str:
        """The exact prompt text the model sees for `conversation` (BOS aside)."""
        kept = self.prompt(conversation).turns
        return self.template.prefix + INSTRUCTION + transcript(list(kept)) + self.template.suffix

    @property
    def prefix_state_bytes(self) -> int:
        """Size of the instruction prefix's KV snapshot, kept to rebuild the cache from."""
        return len(self.kv.snapshot)

    def prefill(self, tokens: Sequence[int]) -> int:
        """Make sequence 0 hold `tokens` (the instruction prefix first), decoding in one call
        only what it does not hold yet, with logits at the last token only. This is the floor
        every decoding path pays for a prompt, which the benchmarks time; the next `assess`
        reuses what it leaves. Returns the number of tokens decoded."""
        full = list(tokens)
        prefix = self.token_plan.prefix
        if tuple(full[: len(prefix)]) != prefix or len(full) == len(prefix):
            raise InputError(f"prefill needs the instruction prefix ({len(prefix)} tokens) and at "
                             f"least one token after it, got {len(full)} tokens")
        k = self.kv.reuse(full)
        try:
            self.engine.decode_seq(full[k:], k)
        except BaseException:
            self.kv.reset()
            raise
        self.kv.extend(full[k:])
        return len(full) - k

    # ---- assessment --------------------------------------------------------------------------
    def _score(self, cands: Sequence[Sequence[int]], logits: Any, pos: int) -> tuple[int, list[float], bool]:
        """Choose among `cands` at `pos`; one extra decode call when first tokens are shared."""
        shared = shared_first(cands)
        deeper: dict[int, list[Any]] = {}
        if shared:
            rows = []
            for s, i in enumerate(shared, start=1):
                self.engine.seq_cp(0, s, 0, pos)  # only the context before the value, not the speculation
                rows += [(t, pos + d, s, True) for d, t in enumerate(cands[i][:-1])]
            out = self.engine.decode(rows)
            at = 0
            for i in shared:
                n = len(cands[i]) - 1
                deeper[i] = out[at: at + n]
                at += n
            for s in range(1, len(shared) + 1):
                self.engine.seq_rm(s, -1, -1)

        def logits_at(i: int, d: int) -> Any:
            return logits if d == 0 else deeper[i][d - 1]

        best, probs = choose(cands, logits_at)
        return best, probs, bool(shared)

    def _speculate(self, seg: list[int], first: int) -> tuple[list[int], list[int]]:
        """`seg` + the guessed answer from field `first` on; the rows whose logits each field needs.

        The guess for field f is the value chosen for f in the previous assessment (DECODING.md 4):
        the batch holds `seg`, then guess(f) + F(f+1) for every field but the last, and asks for
        logits at the end of `seg` and of each forced segment, i.e. at every remaining value position.
        """
        plan = self.token_plan
        tail, want = list(seg), [len(seg) - 1]
        for f in range(first, len(plan.values) - 1):
            tail += plan.values[f][self._guess[f]]
            tail += plan.forced[f + 1]
            want.append(len(tail) - 1)
        return tail, want

    def _decode(self, full: list[int]) -> tuple[int, dict[str, Any], dict[str, dict[str, float]], float, int]:
        """DECODING.md 4: the prompt tail and a guessed answer in one call, re-decoded from a wrong guess on.

        Returns (cached tokens reused, values, probabilities, time of the first call's end, misses).
        """
        plan = self.token_plan
        holes = [s for s in PLAN if s.forced is None]
        k = self.kv.reuse(full)
        seg, start, first = full[k:], k, 0
        values: dict[str, Any] = {}
        probabilities: dict[str, dict[str, float]] = {}
        chosen: list[int] = []
        t_first = 0.0
        misses = 0
        while len(chosen) < len(holes):
            tail, want = self._speculate(seg, first)
            wanted = set(want)
            outs = self.engine.decode([(t, start + i, 0, i in wanted) for i, t in enumerate(tail)])
            self.kv.extend(tail)
            t_first = t_first or time.perf_counter()
            pos = start + len(seg)  # where field `first`'s value begins
            for f, logits in enumerate(outs, start=first):
                cands = plan.values[f]
                best, probs, _ = self._score(cands, logits, pos)
                name = holes[f].field or ""
                values[name] = allowed_values(name)[best]  # plan values follow the schema's enum order
                probabilities[name] = dict(zip(holes[f].values, probs, strict=True))
                chosen.append(best)
                if f == len(holes) - 1:
                    break  # the closing forced text needs no decoding
                if best != self._guess[f]:  # the rest of the batch saw a wrong value: cut it, go on from here
                    misses += 1
                    self.kv.cut(pos)
                    seg, start, first = list(cands[best]) + list(plan.forced[f + 1]), pos, f + 1
                    break
                pos += len(cands[best]) + len(plan.forced[f + 1])
        self._guess = chosen
        return k, values, probabilities, t_first, misses

    @property
    def guess(self) -> list[int]:
        """The answer the next assessment is decoded with (DECODING.md 4): per field, the index
        of the value in the plan; the previous assessment's choices, or each field's first value."""
        return list(self._guess)

    def _first_values(self) -> list[int]:
        return [0] * len(self.token_plan.values)  # DECODING.md 4: the first value of each field

    def reset_guess(self) -> None:
        """Forget the previous assessment's choices: guess each field's first value again."""
        self._guess = self._first_values()

    def set_guess(self, choices: Sequence[int]) -> None:
        """Set the guessed answer (value indices, one per field), e.g. to measure the cost of a
        wrong guess. The labels do not depend on it; only the number of decode calls does."""
        sizes = [len(v) for v in self.token_plan.values]
        picks = [int(c) for c in choices]
        if len(picks) != len(sizes) or any(not 0 <= c < n for c, n in zip(picks, sizes, strict=True)):
            raise InputError(f"a guess is one value index per field, within {sizes}; got {list(choices)}")
        self._guess = picks

    def assess(self, conversation: Any) -> Assessment:
        """Screen one conversation: a list of `{"role": "user"|"assistant", "text": str}`."""
        t0 = time.perf_counter()
        calls0 = self.engine.decode_calls
        turns = check_conversation(conversation)
        prompt = self._prepare(turns)
        full = self._tokens(prompt) + list(self.token_plan.forced[0])
        t_tok = time.perf_counter()
        try:
            k, values, probabilities, t_prefill, misses = self._decode(full)
        except BaseException:
            self.kv.reset()  # the cache may be half-written: rebuild from the prefix next time
            raise
        t_decode = time.perf_counter()

        model_flag = str(values["risk_flag"])
        risk_source, hits = "model", []
        if self.lexicon:
            lex_flag, hits = self._lexicon([t for t in turns if t.role == "user"])
            if most_severe([model_flag, lex_flag]) != model_flag:
                values["risk_flag"] = lex_flag
                risk_source = "lexicon"
        t_end = time.perf_counter()
        timings = {
            "tokenize_ms": (t_tok - t0) * 1000,
            "prefill_ms": (t_prefill - t_tok) * 1000,
            "decode_ms": (t_decode - t_prefill) * 1000,
            "lexicon_ms": (t_end - t_decode) * 1000,
            "total_ms": (t_end - t0) * 1000,
            "decode_calls": self.engine.decode_calls - calls0,
            "guess_misses": misses,
            "prompt_tokens": len(full),
            "cached_tokens": k,
            "new_tokens": len(full) - k,
        }
        return Assessment(Labels.from_dict(values), probabilities, risk_source, timings, prompt.trimmed,
                          model_flag, hits)

    @staticmethod
    def _lexicon(user_turns: list[Turn]) -> tuple[str, list[dict[str, Any]]]:
        text = "\n".join(t.text for t in user_turns)
        hits = [{"risk_flag": h.risk_flag, "entry": h.entry, "span": list(h.span)} for h in scan(text)]
        return lexicon_risk(text), hits

    def session(self) -> Session:
        """A conversation that grows turn by turn; `assess()` re-decodes only the new turns."""
        return Session(self)

    # ---- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Screener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session:
    """An incremental conversation on a Screener (`add` turns, `assess` any time)."""

    def __init__(self, screener: Screener) -> None:
        self.screener = screener
        self.turns: list[dict[str, str]] = []

    def add(self, role: str, text: str) -> None:
        """Append one turn; checked now, as `assess` would check it, so errors point at this call."""
        turn = {"role": role, "text": text}
        check_turn(len(self.turns), turn)
        self.turns.append(turn)

    def assess(self) -> Assessment:
        if not self.turns:
            raise InputError("the session has no turns yet: add() a user turn first")
        return self.screener.assess(self.turns)
