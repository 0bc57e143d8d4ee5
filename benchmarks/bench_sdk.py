"""psyedge `assess` against llama-cpp-python's grammar path, same GGUF, same prompt tokens.

    pytest benchmarks/bench_sdk.py --benchmark-only                 # tiny + Gemma-3-270M (if installed)
    PSYEDGE_BENCH_FULL=1 pytest benchmarks/bench_sdk.py -k twin      # + the 1.5B shape twin (minutes)

Cases, per model (each a pytest-benchmark entry with extra_info path=psyedge|plain and case=...):
* `e2e`: a new conversation with the instruction prefix already cached (both paths: llama-cpp-
  python reuses the longest cached token prefix on its own). Plain = `create_completion` greedy
  under `LlamaGrammar.from_json_schema(schema)` (what a user would write; it drops the integer
  bounds, so its answers can be schema-invalid) and under the exact GBNF (`psyedge grammar`).
  psyedge guesses the answer (DECODING.md 4); `psyedge:worst` times it with every guess wrong;
  `interleaved` alternates psyedge and the json_schema path round by round (steadier ratio).
* `prefill`: one `llama_decode` of the same new tokens alone: the floor any path pays.
* `session`: re-assessment after one more user turn, against that turn's prefill alone and
  against the least any exact method decodes (the turn + suffix + answer text, one call); on Gemma
  at several turn sizes (SESSION_TURN_TOKENS), since the answer's fixed cost weighs most on short
  turns.
Derived ratios go to reports/bench/sdk.json (benchmarks/conftest.py).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest
from plain_path import checked_grammar, complete, load_llama, prompt_tokens

from benchmarks.conftest import RESULTS, bench_threads
from psyedge import Screener
from psyedge.contract import LABEL_SCHEMA, validate
from psyedge.errors import LabelError
from psyedge.plan import gbnf
from psyedge.prompt import MAX_TURNS

SENTENCES = ["老师，我最近压力很大，晚上睡不着觉。", "我总是担心考试成绩不好，爸妈会失望。",
             "同学关系也不好，感觉自己很孤独。",
             "上课注意力不集中，心里很烦。", "室友吵架，宿舍里我待不下去。", "作业太多，论文写不完。",
             "最近心慌，很紧张，很害怕。", "高考没考好，研究生也没考上。",
             "听起来你很难受，能说说发生了什么吗？"]


def conversations(s: Screener, new_tokens: int, n: int) -> list[list[dict[str, str]]]:
    """`n` distinct conversations whose new tokens (after the cached prefix) are about `new_tokens`.

    Turns grow by whole sentences; each turn takes up to a sixth of the target. The contract's trim
    policy (12 turns, 2,000 characters) caps what a prompt can hold: where the target lies beyond
    it for this tokenizer, the conversation stops at the longest prompt the policy keeps (the
    measured token count is recorded with every result, so the figure says what it measured).
    """
    out = []
    n_prefix = len(s.token_plan.prefix)

    def size(turns: list[dict[str, str]]) -> int:
        return len(prompt_tokens(s, turns)) - n_prefix

    for k in range(n):
        turns: list[dict[str, str]] = []
        i = k
        while (not turns or size(turns) < new_tokens) and len(turns) < MAX_TURNS:
            role = "user" if len(turns) % 2 == 0 else "assistant"
            text = f"（{k}）"
            turns.append({"role": role, "text": text})
            while size(turns) < new_tokens and \
                    len(s._line_tokens(s._prepare(turns)[1][-1])) < max(12, new_tokens // 6):
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


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


class Case:
    """One model's measurements: a Screener, a llama-cpp-python Llama, conversations, results."""

    def __init__(self, name: str, path: Path, template: str | None, new_tokens: int, rounds: int) -> None:
        self.name, self.rounds = name, rounds
        self.s = Screener(path, template=template, n_threads=bench_threads(), lexicon=False)
        self.convs = conversations(self.s, new_tokens, rounds + 1)
        self.llm = load_llama(str(path), self.s.engine.n_ctx, bench_threads())
        self.rec: dict[str, Any] = RESULTS["cases"].setdefault(name, {
            "model": str(path), "template": self.s.template.name, "threads": bench_threads(),
            "flash_attn": True, "prefix_tokens": len(self.s.token_plan.prefix),
            "prefix_state_bytes": len(self.s._prefix_state), "n_vocab": self.s.engine.n_vocab})

    def info(self, path: str, case: str, conv: list[dict[str, str]]) -> dict[str, Any]:
        toks = prompt_tokens(self.s, conv)
        return {"path": path, "case": f"{self.name} {case}", "prompt_tokens": len(toks),
                "new_tokens": len(toks) - len(self.s.token_plan.prefix), "n_threads": bench_threads()}

    def close(self) -> None:
        self.llm.close()
        self.s.close()


def _run(benchmark: Any, fn: Callable[[Any], Any], items: list[Any], rounds: int) -> list[float]:
    """benchmark.pedantic over `items` in turn (one warm-up round); returns each round's seconds."""
    it = cycle(items)
    times: list[float] = []

    def timed(x: Any) -> Any:
        t0 = time.perf_counter()
        r = fn(x)
        times.append(time.perf_counter() - t0)
        return r

    benchmark.pedantic(timed, setup=lambda: ((next(it),), {}), rounds=rounds, iterations=1, warmup_rounds=1)
    return times[1:]


def e2e(benchmark: Any, case: Case, path: str) -> None:
    """End to end on a new conversation: psyedge assess, or llama-cpp-python + a grammar."""
    s, rec = case.s, case.rec
    if path == "psyedge":
        calls: list[int] = []
        misses: list[int] = []

        def fn(conv: Any) -> Any:
            a = s.assess(conv)
            calls.append(a.timings["decode_calls"])
            misses.append(a.timings["guess_misses"])
            return a

        times = _run(benchmark, fn, case.convs, case.rounds)
        a = s.assess(case.convs[0])
        rec["psyedge_assess_ms"] = _median_ms(times)
        rec["psyedge_decode_calls"] = max(calls[1:])  # timed rounds only (the first is the warm-up)
        rec["psyedge_guess_misses"] = sum(misses[1:])
        rec["psyedge_labels"] = a.labels.to_dict()
        benchmark.extra_info.update(case.info("psyedge", "e2e", case.convs[0]), decode_calls=max(calls[1:]))
        return
    if path == "psyedge:worst":
        worst(benchmark, case)
        return
    if path == "interleaved":
        interleaved(benchmark, case)
        return
    kind = path.split(":")[1]
    grammar = plain_grammar(case, kind)
    outputs: list[str] = []

    def plain(conv: Any) -> Any:
        text, _ = complete(case.llm, prompt_tokens(s, conv), grammar, max_tokens=160)
        outputs.append(text)
        return text

    times = _run(benchmark, plain, case.convs, case.rounds)
    valid = 0
    for text in outputs:
        try:
            validate(json.loads(text))
            valid += 1
        except (json.JSONDecodeError, LabelError):
            pass
    rec[f"plain_{kind}_ms"] = _median_ms(times)
    rec[f"plain_{kind}_example_output"] = outputs[-1]
    rec[f"plain_{kind}_schema_valid_rate"] = valid / len(outputs)
    benchmark.extra_info.update(case.info("plain", "e2e", case.convs[0]), grammar=kind)
    benchmark.extra_info["case"] += f" vs {kind}"


def plain_grammar(case: Case, kind: str) -> Any:
    """The plain path's grammar: the exact GBNF, or what `LlamaGrammar.from_json_schema` builds."""
    if kind == "gbnf":
        return checked_grammar(case.llm, gbnf())
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # checked for a NULL sampler first

    return checked_grammar(case.llm, json_schema_to_gbnf(json.dumps(LABEL_SCHEMA)))


def interleaved(benchmark: Any, case: Case) -> None:
    """psyedge and the plain json_schema path on each conversation in turn, one right after the other.

    The separate `e2e` entries run minutes apart, and on a shared machine the speed drifts by 10%
    between them; alternating the two paths round by round exposes both to the same drift, so
    their ratio (`speedup_vs_json_schema_interleaved`) is the steadier figure.
    """
    s, rec = case.s, case.rec
    grammar = plain_grammar(case, "json_schema")
    ours: list[float] = []
    theirs: list[float] = []

    def pair(conv: Any) -> None:
        t0 = time.perf_counter()
        s.assess(conv)
        t1 = time.perf_counter()
        complete(case.llm, prompt_tokens(s, conv), grammar, max_tokens=160)
        ours.append(t1 - t0)
        theirs.append(time.perf_counter() - t1)

    _run(benchmark, pair, case.convs, case.rounds)
    rec["interleaved_psyedge_ms"] = _median_ms(ours[1:])
    rec["interleaved_plain_json_schema_ms"] = _median_ms(theirs[1:])
    rec["interleaved_rounds"] = len(ours) - 1
    rec["speedup_vs_json_schema_interleaved"] = (rec["interleaved_plain_json_schema_ms"]
                                                 / rec["interleaved_psyedge_ms"])
    benchmark.extra_info.update(case.info("psyedge+plain", "e2e interleaved", case.convs[0]), pair=True)


def worst(benchmark: Any, case: Case) -> None:
    """psyedge with every guess wrong (DECODING.md 4): the answer's cost when nothing was guessed.

    Each conversation's choices are learnt in an untimed assessment; before each timed one the
    guess is set to another value for every field, so every field but the last costs a call.
    """
    s, rec = case.s, case.rec
    fields = len(s.token_plan.values)
    wrong: dict[int, list[int]] = {}
    for i, conv in enumerate(case.convs):
        s.assess(conv)
        wrong[i] = [(c + 1) % len(v) for c, v in zip(s._guess, s.token_plan.values, strict=True)]
    order = cycle(range(len(case.convs)))
    calls: list[int] = []
    misses: list[int] = []
    times: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        i = next(order)
        s._guess = list(wrong[i])
        return (case.convs[i],), {}

    def fn(conv: Any) -> None:
        t0 = time.perf_counter()
        a = s.assess(conv)
        times.append(time.perf_counter() - t0)
        calls.append(a.timings["decode_calls"])
        misses.append(a.timings["guess_misses"])

    benchmark.pedantic(fn, setup=setup, rounds=case.rounds, iterations=1, warmup_rounds=1)
    rec["psyedge_worst_ms"] = _median_ms(times[1:])
    rec["psyedge_worst_decode_calls"] = max(calls[1:])
    rec["psyedge_worst_guess_misses"] = min(misses[1:])
    assert max(calls) <= fields + 1
    benchmark.extra_info.update(case.info("psyedge", "e2e, every guess wrong", case.convs[0]),
                                decode_calls=max(calls))


def prefill(benchmark: Any, case: Case) -> None:
    """The same new tokens as `e2e` in one decode call on top of the cached prefix, nothing else."""
    s = case.s
    n_prefix = len(s.token_plan.prefix)

    def fn(conv: Any) -> None:
        full = prompt_tokens(s, conv) + list(s.token_plan.forced[0])
        s.engine.seq_rm(0, n_prefix, -1)
        s.engine.decode_seq(full[n_prefix:], n_prefix)
        s._cached = full

    times = _run(benchmark, fn, case.convs, case.rounds)
    case.rec["prefill_only_ms"] = _median_ms(times)
    case.rec["new_tokens"] = len(prompt_tokens(s, case.convs[0])) + len(s.token_plan.forced[0]) - n_prefix
    benchmark.extra_info.update(case.info("psyedge", "prefill only", case.convs[0]), what="prefill only")


#: Sizes of the added turn in the session benchmark, in Gemma-3 tokens: 23 is the median student
#: turn of the real CPsyCounD dialogues and 61 the median counselor reply + student turn (what a
#: live session adds between two assessments), both measured with Gemma's tokenizer; 33 is the
#: size the first measurements used; 120 a long turn.
SESSION_TURN_TOKENS = (33, 23, 61, 120)
TURN_SENTENCES = ["我还是很担心期末考试。", "晚上一直睡不着，白天上课也没精神。",
                  "不知道该怎么办，心里很乱。",
                  "室友说我想太多，可是我控制不住自己。", "爸妈每天打电话问成绩，我都不敢接。",
                  "上周的小测验又没考好，老师还点名批评了我。"]


def turn_text(s: Screener, k: int, target: int) -> str:
    """A user turn of about `target` tokens (whole sentences; `k` makes each round's text distinct)."""
    from psyedge.prompt import Turn

    text = f"第{k}次了，"
    i = k
    while len(s._line_tokens(Turn("user", text))) < target:
        text += TURN_SENTENCES[i % len(TURN_SENTENCES)]
        i += 1
    return text


def session(benchmark: Any, case: Case, what: str, target: int) -> None:
    """Re-assess a session after one more user turn of about `target` tokens, or decode that turn alone.

    `what`: `reassess` (add the turn, assess: the new turn, suffix, first forced text and the
    guessed answer in one call when the guess holds), `turn` (that turn's tokens alone, logits at
    the end) or `floor` (the turn + suffix + the answer's text up to its last value in one call
    with one logits row: what any exact method must decode after a new turn, so `floor / turn`
    is the best ratio the contract's answer format allows, whatever the implementation).
    """
    from psyedge.prompt import Turn

    s = case.s
    base = case.convs[0][:4] if len(case.convs[0]) >= 4 else case.convs[0]
    extra = [turn_text(s, k, target) for k in range(case.rounds + 1)]
    state: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        sess = s.session()
        for t in base:
            sess.add(t["role"], t["text"])
        sess.assess()  # the cache now holds the base conversation and its answer
        state["k"] = state.get("k", -1) + 1
        return (sess, extra[state["k"] % len(extra)]), {}

    times: list[float] = []
    calls: list[int] = []

    def reassess(sess: Any, text: str) -> None:
        t0 = time.perf_counter()
        sess.add("user", text)
        a = sess.assess()
        times.append(time.perf_counter() - t0)
        calls.append(a.timings["decode_calls"])

    def turn_only(sess: Any, text: str) -> None:
        line = s._line_tokens(Turn("user", text))
        if what == "floor":  # + suffix + the whole answer text up to the last value, one logits row
            plan = s.token_plan
            line = line + plan.suffix + plan.forced[0]
            for f in range(len(plan.values) - 1):
                line = line + plan.values[f][s._guess[f]] + plan.forced[f + 1]
        _, _, lines, _ = s._prepare(sess.turns)
        start = len(s.token_plan.prefix) + sum(map(len, lines))
        t0 = time.perf_counter()
        s.engine.seq_rm(0, start, -1)
        s.engine.decode_seq(list(line), start)
        times.append(time.perf_counter() - t0)
        s._cached = s._cached[:start] + list(line)

    benchmark.pedantic(reassess if what == "reassess" else turn_only, setup=setup, rounds=case.rounds,
                       iterations=1, warmup_rounds=1)
    tokens = len(s._line_tokens(Turn("user", extra[0])))
    row = case.rec.setdefault("session_by_turn", {}).setdefault(str(target), {"turn_tokens": tokens})
    row_key = {"reassess": "reassess_ms", "turn": "turn_prefill_ms", "floor": "floor_ms"}[what]
    row[row_key] = _median_ms(times[1:])
    if calls:
        row["decode_calls"] = max(calls[1:])
    if "reassess_ms" in row and "turn_prefill_ms" in row:
        row["reassess_over_turn_prefill"] = row["reassess_ms"] / row["turn_prefill_ms"]
    if "floor_ms" in row and "turn_prefill_ms" in row:
        row["floor_over_turn_prefill"] = row["floor_ms"] / row["turn_prefill_ms"]
    if "reassess_ms" in row and "floor_ms" in row:
        row["reassess_over_floor"] = row["reassess_ms"] / row["floor_ms"]
    if target == SESSION_TURN_TOKENS[0]:  # the headline figures: the first size
        key = {"reassess": "session_reassess_ms", "turn": "turn_prefill_only_ms",
               "floor": "session_floor_ms"}[what]
        case.rec[key] = row[row_key]
        case.rec["session_turn_tokens"] = tokens
    benchmark.extra_info.update({"path": "psyedge",
                                 "case": f"{case.name} session +1 turn of {tokens} tokens ({what})",
                                 "n_threads": bench_threads(), "what": what, "turn_tokens": tokens})


def summarise(rec: dict[str, Any]) -> None:
    """Ratios against the issue's goals (computed when their inputs exist)."""
    if "psyedge_assess_ms" in rec and "prefill_only_ms" in rec:
        rec["total_over_prefill"] = rec["psyedge_assess_ms"] / rec["prefill_only_ms"]
    if "psyedge_worst_ms" in rec and "prefill_only_ms" in rec:
        rec["worst_over_prefill"] = rec["psyedge_worst_ms"] / rec["prefill_only_ms"]
    for kind in ("json_schema", "gbnf"):
        if f"plain_{kind}_ms" in rec and "psyedge_assess_ms" in rec:
            rec[f"speedup_vs_{kind}"] = rec[f"plain_{kind}_ms"] / rec["psyedge_assess_ms"]
        if f"plain_{kind}_ms" in rec and "psyedge_worst_ms" in rec:
            rec[f"worst_speedup_vs_{kind}"] = rec[f"plain_{kind}_ms"] / rec["psyedge_worst_ms"]
    if "session_reassess_ms" in rec and "turn_prefill_only_ms" in rec:
        rec["session_over_turn_prefill"] = rec["session_reassess_ms"] / rec["turn_prefill_only_ms"]
    if "session_floor_ms" in rec and "turn_prefill_only_ms" in rec:
        rec["session_floor_over_turn_prefill"] = rec["session_floor_ms"] / rec["turn_prefill_only_ms"]


PATHS = ["psyedge", "psyedge:worst", "plain:json_schema", "plain:gbnf", "interleaved"]
SESSION_MEASURES = ["session:reassess", "session:turn", "session:floor"]
MEASURES = [*PATHS, "prefill", *SESSION_MEASURES]
#: The Gemma case also measures the session at every size of SESSION_TURN_TOKENS.
GEMMA_MEASURES = [*MEASURES, *(f"{m}@{n}" for n in SESSION_TURN_TOKENS[1:] for m in SESSION_MEASURES)]


def _measure(benchmark: Any, case: Case, what: str) -> None:
    if what in PATHS:
        e2e(benchmark, case, what)
    elif what == "prefill":
        prefill(benchmark, case)
    else:  # session:<what>[@<turn tokens>]
        kind, _, size = what.split(":")[1].partition("@")
        session(benchmark, case, kind, int(size or SESSION_TURN_TOKENS[0]))
    summarise(case.rec)


_CASES: dict[str, Case] = {}


def _case(name: str, path: Path, template: str | None, new_tokens: int, rounds: int) -> Case:
    if name not in _CASES:
        _CASES[name] = Case(name, path, template, new_tokens, rounds)
    return _CASES[name]


@pytest.fixture(scope="module", autouse=True)
def _close_cases() -> Any:
    yield
    for c in _CASES.values():
        c.close()
    _CASES.clear()


@pytest.mark.parametrize("what", MEASURES)
def test_tiny(benchmark: Any, tiny_gguf: Path, what: str) -> None:
    _measure(benchmark, _case("tiny", tiny_gguf, None, 85, 10), what)


#: Prompt sizes (new tokens after the cached instruction prefix) for the model under test.
MODEL_PROMPT_TOKENS = (100, 500, 1500)


@pytest.mark.parametrize("new_tokens", MODEL_PROMPT_TOKENS)
@pytest.mark.parametrize("what", MEASURES)
def test_model(benchmark: Any, env_gguf: Path, what: str, new_tokens: int) -> None:
    import os

    name = f"model-{new_tokens}tok"
    _measure(benchmark, _case(name, env_gguf, os.environ.get("PSYEDGE_BENCH_TEMPLATE"), new_tokens, 5), what)


@pytest.mark.slow
@pytest.mark.parametrize("what", GEMMA_MEASURES)
def test_gemma_270m(benchmark: Any, gemma_gguf: Path, what: str) -> None:
    rounds = 5 if what.startswith("plain") else 9 if what == "interleaved" else 7
    case = _case("gemma-3-270m-Q4_K_M", gemma_gguf, "raw", 85, 7)
    case.rounds = rounds
    _measure(benchmark, case, what)
    case.rounds = 7


@pytest.mark.slow
@pytest.mark.parametrize("what", ["psyedge", "plain:json_schema", "plain:gbnf", "prefill"])
def test_twin_1_5b(benchmark: Any, twin_gguf: Path, what: str) -> None:
    _measure(benchmark, _case("deepseek-1.5b-shape-twin-Q4_K_M", twin_gguf, None, 500, 1), what)
