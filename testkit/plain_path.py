"""The plain path to compare against: llama-cpp-python's grammar-constrained greedy completion.

Shared by the agreement tests and the benchmarks. Two grammars describe the canonical output:
`text_grammar` is `psyedge grammar` (GBNF over characters: any tokenization of the text is
allowed); `token_grammar` admits only the token sequences jump-forward feeds (llama.cpp's
`<[id]>` token syntax), so greedy decoding under it is the exact reference for the fast path.
The known traps of the plain path are handled here: the grammar is checked for a NULL sampler
before use, `repeat_penalty` is 1.0 (penalising repeated JSON keys would change the answer), and
flash attention is set explicitly (llama-cpp-python defaults it off).
"""

from __future__ import annotations

import json
from typing import Any

from psyedge.plan import PLAN, gbnf
from psyedge.screener import Screener


def token_grammar(screener: Screener) -> str:
    """GBNF over token ids: the forced segments and each value's tokens, exactly as fed."""
    plan = screener.token_plan

    def seq(tokens: tuple[int, ...]) -> str:
        return " ".join(f"<[{t}]>" for t in tokens)

    parts, rules, fi, vi = [], [], 0, 0
    for step in PLAN:
        if step.forced is not None:
            if plan.forced[fi]:
                parts.append(seq(plan.forced[fi]))
            fi += 1
        else:
            name = f"value{vi}"
            parts.append(name)
            rules.append(f"{name} ::= " + " | ".join(f"({seq(c)})" for c in plan.values[vi]))
            vi += 1
    return "root ::= " + " ".join(parts) + "\n" + "\n".join(rules) + "\n"


def text_grammar() -> str:
    return gbnf()


def checked_grammar(llm: Any, text: str) -> Any:
    """A `LlamaGrammar`, after checking llama.cpp parses it (a bad grammar gives a NULL sampler
    that the high-level API would add unchecked)."""
    import llama_cpp
    from llama_cpp import LlamaGrammar

    smpl = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, text.encode(), b"root")
    if not smpl:
        raise ValueError(f"llama.cpp rejected the grammar:\n{text}")
    llama_cpp.llama_sampler_free(smpl)
    return LlamaGrammar.from_string(text)


def load_llama(path: str, n_ctx: int, n_threads: int, flash_attn: bool = True) -> Any:
    from llama_cpp import Llama

    return Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                 flash_attn=flash_attn, logits_all=False, verbose=False)


def complete(llm: Any, prompt: list[int] | str, grammar: Any, max_tokens: int = 96) -> tuple[str, Any]:
    """Greedy grammar-constrained completion; returns the text and the parsed JSON (or None)."""
    out = llm.create_completion(prompt, grammar=grammar, temperature=0.0, top_k=1, max_tokens=max_tokens,
                                repeat_penalty=1.0)
    text = out["choices"][0]["text"]
    try:
        return text, json.loads(text)
    except json.JSONDecodeError:
        return text, None
