"""Speculative answers (DECODING.md 4) choose exactly what one-call-per-field decoding chooses.

The Screener decodes the prompt and a guessed answer in one batch and re-decodes from the first
wrong guess. These tests hold it to a sequential reference written here from the plan alone
(one `llama_decode` per field, the old algorithm), on the same model, with guesses that are
right, wrong at every field, and left to the Screener's own policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conversations import generate
from gguf_factory import TINY_KW

from psyedge import Screener
from psyedge.decode import choose
from psyedge.plan import PLAN

HOLES = [s for s in PLAN if s.forced is None]
#: Float noise, not speculation: on this random model, decoding the same prompt in two chunks
#: (prefix, rest) instead of one already moves field 0's probabilities by up to 2.8e-3 (measured);
#: batches of other sizes sum floats in other orders. The chosen values must be identical.
PROB_ATOL = 5e-3


def sequential(s: Screener, conv: Any) -> tuple[list[int], list[list[float]]]:
    """Reference: fresh cache, call 1 = prompt + F0, then one call per chosen value + next forced text."""
    plan, eng = s.token_plan, s.engine
    _, _, lines, _ = s._prepare(conv)
    ctx = list(plan.prefix) + [t for ln in lines for t in ln] + list(plan.suffix) + list(plan.forced[0])
    eng.clear()
    (logits,) = eng.decode_seq(ctx, 0)
    chosen, probs = [], []
    for f, cands in enumerate(plan.values):
        assert len({c[0] for c in cands}) == len(cands), "reference handles distinct first tokens only"
        best, p = choose(cands, lambda i, d, lg=logits: lg)
        chosen.append(best)
        probs.append(p)
        if f + 1 < len(plan.values):
            seg = list(cands[best]) + list(plan.forced[f + 1])
            (logits,) = eng.decode_seq(seg, len(ctx))
            ctx += seg
    eng.clear()
    s._cached = []  # the reference used the Screener's context: make it rebuild from the snapshot
    return chosen, probs


def _choices(s: Screener, a: Any) -> list[int]:
    labels = a.labels.to_dict()
    return [step.values.index(str(labels[step.field])) for step in HOLES]


@pytest.fixture(scope="module")
def spec_screener(tiny_model: Path):  # type: ignore[no-untyped-def]
    with Screener(tiny_model, **TINY_KW, lexicon=False) as s:
        yield s


@pytest.mark.parametrize("guesses", ["policy", "right", "wrong"])
def test_speculation_matches_sequential_decoding(spec_screener: Screener, guesses: str) -> None:
    s = spec_screener
    convs = [c for k, c in generate(60) if k not in ("long_50000", "empty_after_cleaning")][:25]
    worst = 0.0
    calls = []
    for conv in convs:
        ref_choice, ref_probs = sequential(s, conv)
        if guesses == "right":
            s._guess = list(ref_choice)
        elif guesses == "wrong":  # every guess differs from what the model will choose
            s._guess = [(c + 1) % len(v) for c, v in zip(ref_choice, s.token_plan.values, strict=True)]
        a = s.assess(conv)
        assert _choices(s, a) == ref_choice
        for step, ref in zip(HOLES, ref_probs, strict=True):
            worst = max(worst, float(np.max(np.abs(np.array(list(a.probabilities[step.field].values())) - ref))))
        assert s._guess == ref_choice  # the next guess is this answer
        misses = a.timings["guess_misses"]
        assert a.timings["decode_calls"] == 1 + misses
        calls.append(a.timings["decode_calls"])
        if guesses == "right":
            assert misses == 0
        if guesses == "wrong":
            assert misses == len(HOLES) - 1  # the last field's value is never fed, so never guessed
    assert worst < PROB_ATOL, worst
    assert max(calls) <= len(HOLES)  # the bound: at most 5 decode calls per assessment


def test_a_session_whose_labels_hold_reassesses_in_one_call(spec_screener: Screener) -> None:
    s = spec_screener
    sess = s.session()
    sess.add("user", "老师，我最近压力很大，晚上睡不着觉。")
    first = sess.assess()
    assert s._guess == _choices(s, first)
    sess.add("assistant", "听起来你很难受，能说说发生了什么吗？")
    sess.add("user", "期末考试快到了，我很担心。")
    second = sess.assess()
    # Only the new turns are decoded, with the answer guessed from the first assessment.
    assert second.timings["cached_tokens"] > len(s.token_plan.prefix)
    assert second.timings["decode_calls"] == 1 + second.timings["guess_misses"]
    ref_choice, _ = sequential(s, sess.turns)
    assert _choices(s, second) == ref_choice


def test_a_cache_that_cannot_cut_is_rebuilt_and_gives_the_same_labels(
        spec_screener: Screener, monkeypatch: pytest.MonkeyPatch) -> None:
    # Recurrent models keep one state per sequence: llama_memory_seq_rm cannot cut inside it and
    # returns false. Every cut then rebuilds from the prefix snapshot instead of decoding on stale state.
    s = spec_screener
    convs = [c for k, c in generate(30) if k == "ordinary"][:6]
    refs = [sequential(s, c) for c in convs]
    monkeypatch.setattr(s.engine, "seq_rm", lambda seq, p0, p1=-1: p0 == -1 and p1 == -1)
    for conv, (ref_choice, ref_probs) in zip(convs, refs, strict=True):
        s._guess = [(c + 1) % len(v) for c, v in zip(ref_choice, s.token_plan.values, strict=True)]
        a = s.assess(conv)
        assert _choices(s, a) == ref_choice
        assert a.timings["guess_misses"] == len(HOLES) - 1
        # each miss: one rebuild call + one re-decode call; the first call restored the snapshot too
        assert a.timings["decode_calls"] == 1 + 2 * a.timings["guess_misses"]
        for step, ref in zip(HOLES, ref_probs, strict=True):
            got = np.array(list(a.probabilities[step.field].values()))
            assert np.max(np.abs(got - ref)) < PROB_ATOL
