"""SDK latency: psyedge `assess` against the peers (benchmarks/peers.py), same GGUF, same prompt.

Plain functions over a `Case` (a Screener, a llama-cpp-python `Llama` on the same file, and
conversations of a chosen size); each fills the case's record (`Case.rec`, numbers in ms) and
`summarise` derives the ratios. `benchmarks.report` calls `measure_model` in-process;
`benchmarks/bench_sdk.py` wraps the same functions for pytest-benchmark.

Measures (`MEASURES`):
* `psyedge`: a new conversation with the instruction prefix cached; psyedge guesses the answer
  (DECODING.md 4); `psyedge:worst` sets every guess wrong before each round;
* `peers` (`peers:a,b` for some): psyedge and every peer on each conversation in turn, round by round,
  so that both meet the same machine drift (a shared machine's speed drifts by 10% between runs minutes
  apart); each peer's median, its ratio to psyedge's median, its schema validity;
* `prefill`: the same new tokens in one decode call on top of the cached prefix: the floor any
  path pays;
* `session@N`: re-assessment after one more user turn of about N tokens, against that turn's
  prefill alone (`turn`) and the least any exact method decodes (`floor`: the turn + suffix +
  the answer text, one call).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peers import PEERS, Peer, is_valid
from psyedge import Screener
from psyedge.prompt import MAX_TURNS
from testkit.plain_path import load_llama

SENTENCES = ["老师，我最近压力很大，晚上睡不着觉。", "我总是担心考试成绩不好，爸妈会失望。",
             "同学关系也不好，感觉自己很孤独。", "上课注意力不集中，心里很烦。",
             "室友吵架，宿舍里我待不下去。", "作业太多，论文写不完。", "最近心慌，很紧张，很害怕。",
             "高考没考好，研究生也没考上。", "听起来你很难受，能说说发生了什么吗？"]
TURN_SENTENCES = ["我还是很担心期末考试。", "晚上一直睡不着，白天上课也没精神。",
                  "不知道该怎么办，心里很乱。",
                  "室友说我想太多，可是我控制不住自己。", "爸妈每天打电话问成绩，我都不敢接。",
                  "上周的小测验又没考好，老师还点名批评了我。"]
#: Sizes of the added turn in the session measures, in Gemma-3 tokens: 23 is the median student
#: turn of the real CPsyCounD dialogues and 61 the median counselor reply + student turn (what a
#: live session adds between two assessments), both measured with Gemma's tokenizer; 33 is the
#: size the first measurements used (the headline figure); 120 a long turn.
SESSION_TURN_TOKENS = (33, 23, 61, 120)
#: Prompt sizes (new tokens after the cached instruction prefix) for the model under test.
MODEL_PROMPT_TOKENS = (100, 500, 1500)
MEASURES = ("psyedge", "psyedge:worst", "peers", "prefill", f"session@{SESSION_TURN_TOKENS[0]}")
#: The peers measured at every prompt size of the model under test.
GRAMMAR_PEERS = ("json_schema", "gbnf")
#: The Gemma case measures the session at every size.
GEMMA_MEASURES = (*MEASURES, *(f"session@{n}" for n in SESSION_TURN_TOKENS[1:]))

Conversation = list[dict[str, str]]


def conversations(s: Screener, new_tokens: int, n: int) -> list[Conversation]:
    """`n` distinct conversations whose new tokens (after the cached prefix) are about `new_tokens`.

    Turns grow by whole sentences; each turn takes up to a sixth of the target. The contract's trim
    policy (12 turns, 2,000 characters) caps what a prompt can hold: where the target lies beyond
    it for this tokenizer, the conversation stops at the longest prompt the policy keeps (the
    measured token count is recorded with every result, so the figure says what it measured).
    """
    out = []
    n_prefix = len(s.token_plan.prefix)

    def size(turns: Conversation) -> int:
        return len(s.prompt_tokens(turns)) - n_prefix

    for k in range(n):
        turns: Conversation = []
        i = k
        while (not turns or size(turns) < new_tokens) and len(turns) < MAX_TURNS:
            role = "user" if len(turns) % 2 == 0 else "assistant"
            text = f"（{k}）"
            turns.append({"role": role, "text": text})
            while size(turns) < new_tokens and len(s.prompt(turns).lines[-1]) < max(12, new_tokens // 6):
                before = size(turns)
                candidate = {"role": role, "text": text + SENTENCES[i % len(SENTENCES)]}
                if size([*turns[:-1], candidate]) <= before:
                    break  # the trim policy keeps no more
                text = candidate["text"]
                i += 1
                turns[-1] = candidate
        if turns[-1]["role"] != "user":
            turns.append({"role": "user", "text": "嗯。"})
        out.append(turns)
    return out


def turn_text(s: Screener, k: int, target: int) -> str:
    """A user turn of about `target` tokens (whole sentences; `k` makes each round's text distinct)."""
    text = f"第{k}次了，"
    i = k
    while len(s.turn_tokens("user", text)) < target:
        text += TURN_SENTENCES[i % len(TURN_SENTENCES)]
        i += 1
    return text


def timed(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[float]:
    """Seconds of `fn(item)` for each item; the first is a warm-up, left out."""
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return times[1:]


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000


@dataclass
class Case:
    """One model at one prompt size: a Screener, a `Llama` on the same file, conversations, results."""

    name: str
    model: Path
    s: Screener
    llm: Any
    convs: list[Conversation]
    rounds: int
    rec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, name: str, model: Path, template: str | None, new_tokens: int, rounds: int,
             threads: int) -> Case:
        s = Screener(model, template=template, n_threads=threads, lexicon=False)
        try:
            convs = conversations(s, new_tokens, rounds + 1)
            llm = load_llama(str(model), s.engine.n_ctx, s.engine.n_threads)
        except BaseException:
            s.close()
            raise
        rec = {"model": str(model), "template": s.template.name, "threads": s.engine.n_threads,
               "flash_attn": True, "prefix_tokens": len(s.token_plan.prefix),
               "prefix_state_bytes": s.prefix_state_bytes, "n_vocab": s.engine.n_vocab,
               "new_tokens": len(s.prompt_tokens(convs[0])) + len(s.token_plan.forced[0])
               - len(s.token_plan.prefix)}
        return cls(name, model, s, llm, convs, rounds, rec)

    def items(self) -> list[Conversation]:
        """The conversations of one measure: a warm-up, then `rounds` timed ones."""
        return [self.convs[i % len(self.convs)] for i in range(self.rounds + 1)]

    def close(self) -> None:
        self.llm.close()
        self.s.close()


def e2e(case: Case) -> None:
    """psyedge on new conversations, the guess carried from one to the next as in use."""
    calls, misses = [], []

    def fn(conv: Conversation) -> None:
        a = case.s.assess(conv)
        calls.append(a.timings["decode_calls"])
        misses.append(a.timings["guess_misses"])

    times = timed(fn, case.items())
    case.rec.update(psyedge_assess_ms=median_ms(times), psyedge_decode_calls=max(calls[1:]),
                    psyedge_guess_misses=sum(misses[1:]),
                    psyedge_labels=case.s.assess(case.convs[0]).labels.to_dict())


def worst(case: Case) -> None:
    """psyedge with every guess wrong (DECODING.md 4): the answer's cost when nothing was guessed.

    Each conversation's choices are learnt in an untimed assessment; before each timed one the
    guess is set to another value for every field, so every field but the last costs a call.
    """
    s = case.s
    wrong = {}
    for i, conv in enumerate(case.convs):
        s.assess(conv)
        wrong[i] = [(c + 1) % len(v) for c, v in zip(s.guess, s.token_plan.values, strict=True)]
    calls, misses = [], []

    def fn(i: int) -> None:
        a = s.assess(case.convs[i])
        calls.append(a.timings["decode_calls"])
        misses.append(a.timings["guess_misses"])

    times = []
    for i in (r % len(case.convs) for r in range(case.rounds + 1)):
        s.set_guess(wrong[i])  # untimed: only the assessment is
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    case.rec.update(psyedge_worst_ms=median_ms(times[1:]), psyedge_worst_decode_calls=max(calls[1:]),
                    psyedge_worst_guess_misses=min(misses[1:]))
    s.reset_guess()


def prefill(case: Case) -> None:
    """The same new tokens as `e2e` in one decode call on top of the cached prefix, nothing else."""
    s = case.s
    times = timed(lambda conv: s.prefill(s.prompt_tokens(conv) + list(s.token_plan.forced[0])), case.items())
    case.rec["prefill_only_ms"] = median_ms(times)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share: what a prefix cache can reuse from one to the other."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def start_from(llm: Any, keep: int) -> None:
    """Make llama-cpp-python's cache hold at most its first `keep` tokens.

    Its completion reuses the longest prefix it still holds, so without this every peer after the
    first would find the whole prompt decoded by the peer before it and skip the prefill that
    psyedge pays. `n_tokens` is the public length of what it holds; the next completion drops the
    KV cells past it.
    """
    llm.n_tokens = min(llm.n_tokens, keep)


def peers(case: Case, names: Sequence[str] = tuple(PEERS)) -> None:
    """psyedge and each peer on the same conversation, one right after the other, round by round.

    Every peer starts from what psyedge's cache can reuse of the conversation: the tokens it
    shares with the previous round's prompt (at least the instruction prefix).
    """
    s, rec = case.s, case.rec
    made: list[Peer] = [PEERS[n](case.llm) for n in names]
    ours: list[float] = []
    theirs: dict[str, list[float]] = {p.name: [] for p in made}
    outputs: dict[str, list[str]] = {p.name: [] for p in made}
    previous = list(s.token_plan.prefix)  # what psyedge's cache holds before the first round
    for conv in case.items():
        tokens, text = s.prompt_tokens(conv), s.render(conv)
        reused = common_prefix(previous, tokens)
        t0 = time.perf_counter()
        s.assess(conv)
        ours.append(time.perf_counter() - t0)
        for p in made:
            start_from(case.llm, reused)  # untimed: as psyedge, never the peer before it
            t0 = time.perf_counter()
            out = p.answer(tokens, text)
            theirs[p.name].append(time.perf_counter() - t0)
            outputs[p.name].append(out)
        previous = tokens
    text = s.render(case.convs[0])
    by_text = case.llm.tokenize(text.encode("utf-8"), add_bos=s.engine.add_bos, special=True)
    rec["peers_rounds"] = len(ours) - 1
    rec["peers_psyedge_ms"] = median_ms(ours[1:])
    rec["peers_text_prompt_is_the_same_tokens"] = by_text == s.prompt_tokens(case.convs[0])
    for p in made:
        ms = median_ms(theirs[p.name][1:])
        rounds = zip(theirs[p.name][1:], ours[1:], strict=True)
        rec[f"peer_{p.name}"] = {
            "label": p.label, "ms": ms, "setup_ms": p.setup_s * 1000,
            "ratio": ms / rec["peers_psyedge_ms"],
            "min_round_ratio": min(t / o for t, o in rounds),
            "validity": sum(map(is_valid, outputs[p.name])) / len(outputs[p.name]),
            "example_output": outputs[p.name][-1]}


def session(case: Case, target: int) -> None:
    """Re-assess a session after one more user turn of about `target` tokens; decode that turn
    alone (`turn`) and the turn + suffix + answer text up to its last value in one call with one
    logits row (`floor`: what any exact method must decode after a new turn, so `floor / turn` is
    the best ratio the contract's answer format allows, whatever the implementation)."""
    s = case.s
    plan = s.token_plan
    base = case.convs[0][:4] if len(case.convs[0]) >= 4 else case.convs[0]
    extra = [turn_text(s, k, target) for k in range(case.rounds + 1)]

    def ready() -> Any:
        sess = s.session()
        for t in base:
            sess.add(t["role"], t["text"])
        sess.assess()  # the cache now holds the base conversation and its answer
        return sess

    def answer_text() -> list[int]:
        out = list(plan.suffix) + list(plan.forced[0])
        for f in range(len(plan.values) - 1):
            out += list(plan.values[f][s.guess[f]]) + list(plan.forced[f + 1])
        return out

    row: dict[str, Any] = {"turn_tokens": len(s.turn_tokens("user", extra[0]))}
    for what in ("reassess", "turn", "floor"):
        times, calls = [], []
        for text in extra:
            sess = ready()
            if what == "reassess":
                t0 = time.perf_counter()
                sess.add("user", text)
                calls.append(sess.assess().timings["decode_calls"])
            else:
                tokens = s.prompt_tokens(sess.turns) + list(s.turn_tokens("user", text))
                if what == "floor":
                    tokens += answer_text()
                t0 = time.perf_counter()
                s.prefill(tokens)
            times.append(time.perf_counter() - t0)
        row[f"{what}_ms"] = median_ms(times[1:])
        if calls:
            row["decode_calls"] = max(calls[1:])
    row["reassess_over_turn_prefill"] = row["reassess_ms"] / row["turn_ms"]
    row["floor_over_turn_prefill"] = row["floor_ms"] / row["turn_ms"]
    row["reassess_over_floor"] = row["reassess_ms"] / row["floor_ms"]
    case.rec.setdefault("session_by_turn", {})[str(target)] = row
    if target == SESSION_TURN_TOKENS[0]:  # the headline figures: the first size
        case.rec.update(session_reassess_ms=row["reassess_ms"], turn_prefill_only_ms=row["turn_ms"],
                        session_floor_ms=row["floor_ms"], session_turn_tokens=row["turn_tokens"])


def summarise(rec: dict[str, Any]) -> None:
    """Ratios against the SDK's goals (computed when their inputs exist)."""
    def ratio(key: str, num: str, den: str) -> None:
        if num in rec and den in rec:
            rec[key] = rec[num] / rec[den]

    ratio("total_over_prefill", "psyedge_assess_ms", "prefill_only_ms")
    ratio("worst_over_prefill", "psyedge_worst_ms", "prefill_only_ms")
    ratio("session_over_turn_prefill", "session_reassess_ms", "turn_prefill_only_ms")
    ratio("session_floor_over_turn_prefill", "session_floor_ms", "turn_prefill_only_ms")
    for key, peer in rec.items():
        if key.startswith("peer_") and rec.get("prefill_only_ms"):
            # Any decoder pays the prefill of the same new tokens: the most it could be ahead.
            peer["ceiling"] = peer["ms"] / rec["prefill_only_ms"]


def measure(case: Case, what: str) -> None:
    """One measure of `MEASURES` on `case`, then the derived ratios."""
    if what == "psyedge":
        e2e(case)
    elif what == "psyedge:worst":
        worst(case)
    elif what == "peers" or what.startswith("peers:"):
        peers(case, what.partition(":")[2].split(",") if ":" in what else tuple(PEERS))
    elif what == "prefill":
        prefill(case)
    elif what.startswith("session@"):
        session(case, int(what.partition("@")[2]))
    else:
        raise ValueError(f"unknown measure {what!r}; expected one of {GEMMA_MEASURES}")
    summarise(case.rec)


def measure_model(model: Path, template: str | None, threads: int, rounds: int,
                  sizes: Sequence[int] = MODEL_PROMPT_TOKENS,
                  measures: Sequence[str] = MEASURES) -> dict[str, dict[str, Any]]:
    """Every measure at every prompt size on one GGUF; returns case name -> record."""
    out = {}
    for i, size in enumerate(sizes):
        case = Case.open(f"model-{size}tok", model, template, size, rounds, threads)
        try:
            for what in measures:
                if i and what == "peers":
                    # Beyond the first size the grammar peers only: chat_json and Outlines take
                    # seconds an answer at long prompts, and their ratio is shown at the first.
                    what = f"peers:{','.join(GRAMMAR_PEERS)}"
                measure(case, what)
        finally:
            case.close()
        out[case.name] = case.rec
    return out
