"""`choose`: value probabilities over the candidates' token trie, from synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from psyedge.decode import choose, shared_first


def _logits(values: dict[int, float], n: int = 16) -> np.ndarray:
    out = np.full(n, -5.0, dtype=np.float32)
    for k, v in values.items():
        out[k] = v
    return out


def test_distinct_first_tokens_give_the_renormalised_first_token_probability() -> None:
    cands = [(1,), (2,), (3, 9)]
    logits = _logits({1: 1.0, 2: 2.0, 3: 0.5, 9: 30.0, 7: 50.0})  # 7 and 9 are not first tokens
    best, probs = choose(cands, lambda i, d: logits)
    e = np.exp(np.array([1.0, 2.0, 0.5]))
    assert probs == pytest.approx(list(e / e.sum()))
    assert best == 1
    assert shared_first(cands) == []


def test_shared_first_tokens_multiply_along_the_trie() -> None:
    cands = [(4,), (5, 6), (5, 7, 8)]
    root = _logits({4: 0.0, 5: np.log(3.0)})  # P(4)=0.25, P(5..)=0.75
    after5 = _logits({6: 0.0, 7: np.log(2.0)})  # P(6|5)=1/3, P(7|5)=2/3; 8 after 7 is forced

    def at(i: int, d: int) -> np.ndarray:
        return root if d == 0 else after5

    best, probs = choose(cands, at)
    assert probs == pytest.approx([0.25, 0.25, 0.5])
    assert best == 2
    assert shared_first(cands) == [1, 2]


def test_ties_go_to_the_earlier_value() -> None:
    logits = _logits({1: 3.0, 2: 3.0})
    best, probs = choose([(1,), (2,)], lambda i, d: logits)
    assert best == 0 and probs == pytest.approx([0.5, 0.5])
