"""The SDK latency measures and the peers on a tiny random-weight GGUF: the plumbing is real,
the numbers are meaningless (random weights), so only their shape and consistency are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import peers, sdk_latency
from psyedge import Screener
from testkit import gguf_factory


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    model = gguf_factory.write_model(tmp_path_factory.mktemp("model") / "tiny.gguf", template="raw")
    c = sdk_latency.Case.open("tiny", model, None, 85, 2, 1)
    yield c
    c.close()


def test_conversations_reach_the_asked_size(case: sdk_latency.Case) -> None:
    assert len(case.convs) == 3 and len({str(c) for c in case.convs}) == 3
    assert case.rec["new_tokens"] >= 85 and case.rec["prefix_tokens"] == len(case.s.token_plan.prefix)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # llama.cpp's log callback
def test_every_measure_fills_its_record(case: sdk_latency.Case, tmp_path: Path) -> None:
    for what in sdk_latency.MEASURES:
        sdk_latency.measure(case, what)
    rec = case.rec
    assert rec["psyedge_assess_ms"] > 0 and rec["prefill_only_ms"] > 0 and rec["total_over_prefill"] > 0
    fields = len(case.s.token_plan.values)
    # Every guess wrong: every field but the last misses and costs a call of its own.
    assert rec["psyedge_worst_guess_misses"] == fields - 1 and rec["psyedge_worst_decode_calls"] == fields
    assert rec["peers_rounds"] == 2
    for name in peers.PEERS:
        peer = rec[f"peer_{name}"]
        assert peer["ms"] > 0 and peer["ratio"] == pytest.approx(peer["ms"] / rec["peers_psyedge_ms"])
        assert 0.0 <= peer["validity"] <= 1.0 and isinstance(peer["example_output"], str)
    assert rec["peer_gbnf"]["validity"] == 1.0  # the exact grammar admits only valid answers
    row = rec["session_by_turn"][str(sdk_latency.SESSION_TURN_TOKENS[0])]
    assert row["turn_tokens"] >= sdk_latency.SESSION_TURN_TOKENS[0] and row["floor_ms"] > 0
    # After all of it (prefill, session, peers on their own context) the Screener still answers
    # as a fresh one: the KV-cache picture stayed true.
    conv = case.convs[0]
    with Screener(case.model, n_threads=1, lexicon=False) as fresh:
        assert case.s.assess(conv).labels == fresh.assess(conv).labels


def test_no_peer_starts_from_the_prompt_the_peer_before_it_decoded(
        case: sdk_latency.Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each peer finds cached only what psyedge reuses (the previous prompt's shared head), so
    the second grammar peer pays the conversation's prefill as the first one does."""
    seen: dict[str, list[int]] = {}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def make(llm: object) -> peers.Peer:
            base = peers.gbnf_peer(llm)

            def answer(tokens: list[int], text: str) -> str:
                seen.setdefault(name, []).append(llm.n_tokens)  # type: ignore[attr-defined]
                return base.answer(tokens, text)

            return peers.Peer(name, name, answer)

        return make

    monkeypatch.setattr(sdk_latency, "PEERS", {"a": recorder("a"), "b": recorder("b")})
    sdk_latency.peers(case, ["a", "b"])
    prompts = [case.s.prompt_tokens(c) for c in case.items()]
    previous = [list(case.s.token_plan.prefix), *prompts[:-1]]
    reused = [sdk_latency.common_prefix(a, b) for a, b in zip(previous, prompts, strict=True)]
    assert min(reused) >= len(case.s.token_plan.prefix) and len(seen["b"]) == 3
    assert all(n <= r for n, r in zip(seen["a"], reused, strict=True))
    assert seen["b"] == reused  # the first peer's whole prompt was cut back to psyedge's reuse


def test_is_valid_checks_the_schema() -> None:
    assert peers.is_valid('{"depression_level": 1, "anxiety_level": 0, "risk_flag": "none", '
                          '"student_distress_score": 3}')
    assert not peers.is_valid('{"depression_level": 7, "anxiety_level": 0, "risk_flag": "none", '
                              '"student_distress_score": 3}')
    assert not peers.is_valid('{"depression_level": 1,')
