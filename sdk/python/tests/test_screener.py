"""The Screener on tiny random-weight GGUFs: always schema-valid, probabilities, cache, errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from psyedge import InputError, ModelError, Screener
from psyedge.contract import FIELDS, most_severe, validate
from psyedge.decode import Engine
from psyedge.plan import PLAN
from psyedge.prompt import INSTRUCTION, render
from testkit import gguf_factory
from testkit.conversations import generate, kinds
from testkit.gguf_factory import TINY_CTX, TINY_KW

HOLES = [s for s in PLAN if s.forced is None]
ADVERSARIAL = {"injection", "long_50000", "emoji", "control_chars", "mixed_language", "empty_after_cleaning"}


def _check(a, kind: str = "") -> None:  # type: ignore[no-untyped-def]
    """Everything an Assessment promises, asserted on real values."""
    d = a.to_dict()
    assert set(d) == {"labels", "probabilities", "risk_source", "timings", "trimmed"}
    validate(d["labels"])
    validate(json.loads(a.labels.to_json()))
    json.dumps(d)  # JSON-ready
    for step in HOLES:
        probs = a.probabilities[step.field]
        assert list(probs) == list(step.values), kind
        assert abs(sum(probs.values()) - 1.0) < 1e-9, (kind, probs)
        assert all(0.0 <= p <= 1.0 for p in probs.values())
        best = max(step.values, key=lambda v: probs[v])
        label = str(a.labels.to_dict()[step.field])
        if step.field != "risk_flag" or a.risk_source == "model":
            assert label == best, (kind, step.field, probs, label)
        else:  # the lexicon only ever raises the model's flag
            assert a.model_risk_flag == best
            assert most_severe([label, best]) == label != best
    assert a.risk_source in ("model", "lexicon")
    # DECODING.md 4: one call, one more per wrong guess, one per field scored on scratch sequences.
    assert 1 + a.timings["guess_misses"] <= a.timings["decode_calls"] <= 5


def test_two_hundred_generated_conversations_are_all_schema_valid(screener: Screener) -> None:
    items = generate(200)
    assert len(items) >= 200 and kinds(items) >= ADVERSARIAL
    seen = set()
    for kind, conv in items:
        a = screener.assess(conv)
        _check(a, kind)
        # Every first token is distinct in this vocabulary: no scoring call, only the guess misses.
        assert a.timings["decode_calls"] == 1 + a.timings["guess_misses"]
        assert a.timings["prompt_tokens"] < TINY_CTX
        if kind in ("long_50000", "many_turns"):
            assert a.trimmed, kind
        seen.add(a.labels.to_json())
    # The random model is not constant: the test would catch a decoder that ignores the input.
    assert len(seen) >= 10, seen


def test_render_is_the_contract_prompt_and_segments_tokenize_like_the_whole(screener: Screener) -> None:
    for kind, conv in generate(60):
        if kind == "ordinary":
            text = screener.render(conv)
            assert text == render(conv, "deepseek-r1")
            eng = screener.engine
            whole = [eng.bos] + eng.tokenize(text, special=True)
            segments = screener.prompt_tokens(conv)
            assert segments == whole  # DECODING.md 2: true for byte-level BPE with a qwen2 pre-tokenizer


BAD_INPUTS = [
    ("hello", TypeError), (None, TypeError), (b"x", TypeError), (["user: hi"], TypeError),
    ([{"role": "user", "text": 5}], TypeError), ([{"role": "user"}], TypeError),
    ([], InputError), ([{"role": "system", "text": "x"}], InputError),
    ([{"role": "user", "text": ""}], InputError),
    ([{"role": "user", "text": "   \n"}], InputError), ([{"role": "assistant", "text": "hi"}], InputError),
    ([{"role": "user", "text": "\u200b\ufeff"}], InputError), ([{"Role": "user", "text": "hi"}], InputError),
]


@pytest.mark.parametrize(("conv", "exc"), BAD_INPUTS)
def test_bad_input_raises_a_clear_error(screener: Screener, conv: object, exc: type) -> None:
    with pytest.raises(exc) as info:
        screener.assess(conv)
    assert isinstance(info.value, (ValueError, TypeError))
    assert str(info.value)
    _check(screener.assess([{"role": "user", "text": "我还好"}]))  # the screener still works


def test_session_decodes_only_new_turns_and_matches_a_fresh_screener(screener: Screener,
                                                                     tiny_model: Path) -> None:
    fresh = Screener(tiny_model, **TINY_KW)
    texts = ["老师，我最近压力很大。", "能说说吗？", "考试没考好，爸妈会失望。", "嗯。", "我睡不着。"] * 3
    sess = screener.session()
    plan = screener.token_plan
    prev_lines = 0
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        sess.add(role, text)
        if role != "user":
            continue
        a = sess.assess()
        b = fresh.assess(list(sess.turns))
        for f in FIELDS:
            assert np.allclose(list(a.probabilities[f].values()), list(b.probabilities[f].values()),
                               atol=1e-3)
        prompt = screener.prompt(sess.turns)
        lines, trimmed = prompt.lines, prompt.trimmed
        if not trimmed and i >= 2:
            # Only the assistant turn and this user turn (+ suffix and first forced text) are new.
            new = sum(map(len, lines[-2:])) + len(plan.suffix) + len(plan.forced[0])
            assert a.timings["new_tokens"] == new, (i, a.timings)
            assert a.timings["cached_tokens"] == len(plan.prefix) + prev_lines
        if trimmed and len(sess.turns) > 12:
            # The oldest turn fell out: the cache falls back to the instruction prefix.
            assert a.trimmed
            assert a.timings["cached_tokens"] < len(plan.prefix) + len(lines[0])
        prev_lines = sum(map(len, lines))
    fresh.close()


def test_kv_reuse_and_the_state_restore_path_give_the_same_answer(screener: Screener, tiny_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a_conv = [{"role": "user", "text": "我很焦虑，睡不着。"}, {"role": "assistant", "text": "嗯。"},
              {"role": "user", "text": "不想去学校了。"}]
    b_conv = [{"role": "user", "text": "今天天气不错。"}]
    first = screener.assess(a_conv)
    screener.assess(b_conv)
    again = screener.assess(a_conv)
    assert again.timings["cached_tokens"] >= len(screener.token_plan.prefix)
    # Force the restore path: as if the cache could not be cut (a recurrent or SWA model).
    monkeypatch.setattr(screener.engine, "seq_rm", lambda *a, **k: False)
    restored = screener.assess(a_conv)
    assert restored.timings["cached_tokens"] == len(screener.token_plan.prefix)
    for other in (again, restored):
        assert other.labels == first.labels
        for f in FIELDS:
            assert np.allclose(list(other.probabilities[f].values()), list(first.probabilities[f].values()),
                               atol=1e-4)
    assert 0 < screener.prefix_state_bytes < 64 * 1024 * 1024


def test_template_comes_from_metadata_or_the_caller(tiny_model: Path, tiny_plain: Path,
                                                    model_dir: Path) -> None:
    conv = [{"role": "user", "text": "我好累"}]
    with pytest.raises(ModelError, match="template="):
        Screener(tiny_plain)
    with Screener(tiny_plain, template="raw", n_threads=1) as s:
        assert s.render(conv) == INSTRUCTION + "来访者：我好累\n" + "\n输出："
        _check(s.assess(conv))
    with Screener(tiny_model, template="chatml", n_threads=1) as s:
        assert s.render(conv).startswith("<|im_start|>user\n")
        assert s.template.name == "chatml"
    with Screener(tiny_model, n_threads=1) as s:
        assert s.template.name == "deepseek-r1" and s.metadata["template"] == "deepseek-r1"
    with pytest.raises(InputError, match="unknown chat template"):
        Screener(tiny_model, template="llama3")
    old = gguf_factory.write_model(model_dir / "old.gguf",
                                   manifest={"contract_version": "0.9", "template": "raw"})
    with pytest.raises(ModelError, match="contract 0.9"):
        Screener(old)
    with pytest.raises(ModelError, match="not found"):
        Screener(model_dir / "missing.gguf")
    junk = model_dir / "junk.gguf"
    junk.write_bytes(b"not a model at all" * 10)
    with pytest.raises(ModelError, match="could not load"):
        Screener(junk)


def _reference_probs(engine: Engine, context: list[int], cands: tuple[tuple[int, ...], ...]) -> list[float]:
    """Trie probabilities by brute force: one fresh full decode per trie node, sequence 0 only."""
    probs = []
    for toks in cands:
        p = 1.0
        for d in range(len(toks)):
            children = sorted({c[d] for c in cands if len(c) > d and c[:d] == toks[:d]})
            if len(children) < 2:
                continue
            engine.clear()
            (logits,) = engine.decode_seq(context + list(toks[:d]), 0)
            lc = logits.astype(np.float64)[children]
            e = np.exp(lc - lc.max())
            p *= e[children.index(toks[d])] / e.sum()
        probs.append(p)
    return [p / sum(probs) for p in probs]


def test_shared_first_tokens_are_scored_as_whole_values_in_one_extra_call(tiny_shared: Path) -> None:
    with Screener(tiny_shared, **TINY_KW, lexicon=False) as s:
        risk = s.token_plan.values[2]
        assert risk[1][0] == risk[2][0] and len(risk[1]) > 2  # suicidal / self_harm both start with "s"
        conv = [{"role": "user", "text": "老师，我最近压力很大，不想去学校了。"}]
        a = s.assess(conv)
        _check(a)
        assert a.timings["decode_calls"] == 2 + a.timings["guess_misses"]  # + the risk field's scoring call
        # Rebuild the context at the risk position and score the values by brute force.
        plan = s.token_plan
        ctx = s.prompt_tokens(conv) + list(plan.forced[0])
        for fi in range(2):
            value = str(a.labels.to_dict()[FIELDS[fi]])
            ctx += list(plan.values[fi][HOLES[fi].values.index(value)]) + list(plan.forced[fi + 1])
        ref = _reference_probs(s.engine, ctx, risk)
        got = list(a.probabilities["risk_flag"].values())
        assert np.allclose(got, ref, atol=2e-3), (got, ref)
        s.engine.clear()
        s.kv.reset()  # the brute force above used the cache: make the screener rebuild it
        _check(s.assess(conv))


def test_lexicon_raises_risk_and_says_so(tiny_model: Path, screener: Screener) -> None:
    from psyedge.lexicon import lexicon_risk

    said = "我不想活了，我想自杀。"
    assert lexicon_risk(said) == "suicidal", "the risk lexicon no longer recognises an explicit statement"
    with Screener(tiny_model, **TINY_KW, lexicon=False) as plain:
        for conv in ([{"role": "user", "text": "最近很累。"}, {"role": "assistant", "text": "嗯。"},
                      {"role": "user", "text": said}],
                     [{"role": "user", "text": said}] + [{"role": "assistant", "text": "嗯。"},
                                                          {"role": "user", "text": "还好。"}] * 8):
            model = plain.assess(conv)
            a = screener.assess(conv)
            assert a.labels.risk_flag == "suicidal"
            assert a.model_risk_flag == model.labels.risk_flag
            assert a.risk_source == ("model" if model.labels.risk_flag == "suicidal" else "lexicon")
            assert a.probabilities["risk_flag"] == pytest.approx(model.probabilities["risk_flag"], abs=1e-4)
        # Counselors ask about suicide as routine: their turns are not scanned.
        asked = [{"role": "user", "text": "最近很累。"}, {"role": "assistant", "text": "你有没有想过自杀？"}]
        assert screener.assess(asked).labels.risk_flag == plain.assess(asked).labels.risk_flag
        assert screener.assess(asked).risk_source == "model"


def test_assess_never_touches_the_network(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("psyedge tried to open a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    with Screener(tiny_model, **TINY_KW) as s:
        _check(s.assess([{"role": "user", "text": "我想自杀"},
                         {"role": "assistant", "text": "你现在安全吗"}]))
        sess = s.session()
        sess.add("user", "我好累")
        _check(sess.assess())


def test_session_add_checks_each_turn(screener: Screener) -> None:
    sess = screener.session()
    with pytest.raises(InputError, match="no turns"):
        sess.assess()
    with pytest.raises(InputError, match="role"):
        sess.add("system", "hi")
    with pytest.raises(TypeError):
        sess.add("user", 3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        sess.add("user", "  ")
    sess.add("assistant", "你好")
    with pytest.raises(InputError, match="no user turn"):
        sess.assess()


def test_a_failed_decode_leaves_the_screener_usable(screener: Screener,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    conv = [{"role": "user", "text": "我最近很焦虑。"}]
    before = screener.assess(conv)
    real = screener.engine.decode
    calls = {"n": 0}

    def flaky(rows):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # fail in the middle of the answer, after the prompt was decoded
            raise ModelError("llama_decode failed with code -3")
        return real(rows)

    monkeypatch.setattr(screener.engine, "decode", flaky)
    with pytest.raises(ModelError, match="code -3"):
        screener.assess([{"role": "user", "text": "另一段对话。"}])
    after = screener.assess(conv)
    assert after.labels == before.labels
    assert after.timings["cached_tokens"] == len(screener.token_plan.prefix)  # rebuilt from the prefix


def test_a_context_llama_cpp_rounds_up_never_takes_a_batch_beyond_n_batch(tiny_model: Path) -> None:
    # llama.cpp rounds n_ctx=260 up to 512 but keeps n_batch=260; sizing prompts by the rounded
    # context sent a 500-token batch and aborted the process (GGML_ASSERT n_tokens_all <= n_batch).
    kw = {k: v for k, v in TINY_KW.items() if k != "n_ctx"}
    with Screener(tiny_model, n_ctx=260, **kw) as s:
        assert s.engine.n_ctx == 260
        a = s.assess([{"role": "user", "text": "老师，我最近压力很大，晚上睡不着觉。" * 40}])
        _check(a)
        assert a.trimmed and a.timings["prompt_tokens"] <= 260


def test_a_context_too_small_for_the_instruction_is_refused_at_load(tiny_model: Path) -> None:
    kw = {k: v for k, v in TINY_KW.items() if k != "n_ctx"}
    with Screener(tiny_model, **kw) as s:
        prefix = len(s.token_plan.prefix)
    with pytest.raises(ModelError, match=rf"instruction prefix \({prefix} tokens\) does not fit n_ctx=220"):
        Screener(tiny_model, n_ctx=220, **kw)


def test_prefill_keeps_the_cache_picture_true(screener: Screener) -> None:
    """`prefill` decodes on sequence 0 through the same cache object as `assess`: an assessment
    after it reuses what it left and answers as one without it."""
    conv = [{"role": "user", "text": "老师，我最近压力很大，晚上睡不着觉。"}]
    before = screener.assess(conv)
    screener.assess([{"role": "user", "text": "今天天气不错。"}])
    tokens = screener.prompt_tokens(conv)
    assert 0 < screener.prefill(tokens) <= len(tokens) - len(screener.token_plan.prefix)
    assert screener.prefill(tokens) == 1  # all but the last token already held
    after = screener.assess(conv)
    assert after.labels == before.labels
    assert after.timings["cached_tokens"] == len(tokens)  # the suffix's end onward was new
    with pytest.raises(InputError, match="instruction prefix"):
        screener.prefill(tokens[1:])
    screener.reset_guess()
    assert screener.guess == [0] * len(screener.token_plan.values)


def test_prompt_and_turn_tokens_agree(screener: Screener) -> None:
    conv = [{"role": "user", "text": "我很焦虑。"}, {"role": "assistant", "text": "嗯，能说说吗？"}]
    prompt = screener.prompt(conv + [{"role": "user", "text": "考试。"}])
    assert prompt.lines[1] == screener.turn_tokens("assistant", "嗯，能说说吗？") and not prompt.trimmed
    assert screener.prefix_state_bytes > 0
