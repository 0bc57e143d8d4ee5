"""The decoders a user would pick instead of psyedge, each answering the same prompt on the same GGUF.

Every peer is greedy (temperature 0, top-k 1, no repeat penalty: penalising repeated JSON keys
would change the answer), starts from the tokens psyedge's own cache reuses for that
conversation (`sdk_latency.start_from`), and returns the text it generated; validity is then
checked against the contract's schema (`psyedge.contract`).

* `json_schema`: `create_completion` under `LlamaGrammar.from_json_schema(schema)` (what the
  llama-cpp-python docs suggest; it drops the integer bounds, so an answer can be invalid);
* `gbnf`: `create_completion` under the exact hand-written GBNF (`psyedge grammar`);
* `chat_json`: `create_chat_completion(response_format={"type": "json_object", "schema": ...})`,
  with a chat handler that renders the messages to exactly psyedge's prompt text (the GGUF's own
  chat template would make it another prompt);
* `outlines`: Outlines 1.x on its llama-cpp-python backend with a JSON-schema output type.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psyedge.contract import LABEL_SCHEMA, validate
from psyedge.errors import LabelError
from psyedge.plan import gbnf
from testkit.plain_path import checked_grammar, complete

#: Tokens a peer may generate: the longest canonical answer is about 60 tokens on every
#: tokenizer measured, so 160 leaves room for a peer that pads with whitespace.
MAX_TOKENS = 160


@dataclass
class Peer:
    """One peer: its name in figures, what a reader sees, and `answer(tokens, text) -> output`."""

    name: str
    label: str
    answer: Callable[[list[int], str], str]
    setup_s: float = 0.0  # building its grammar or index once, before the first answer


def is_valid(text: str) -> bool:
    """Whether `text` is one JSON object that the label schema accepts."""
    try:
        validate(json.loads(text))
    except (json.JSONDecodeError, LabelError):
        return False
    return True


def _grammar_peer(llm: Any, name: str, label: str, grammar_text: str) -> Peer:
    t0 = time.perf_counter()
    grammar = checked_grammar(llm, grammar_text)
    setup = time.perf_counter() - t0

    def answer(tokens: list[int], text: str) -> str:
        return complete(llm, tokens, grammar, max_tokens=MAX_TOKENS)[0]

    return Peer(name, label, answer, setup)


def json_schema_peer(llm: Any) -> Peer:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return _grammar_peer(llm, "json_schema", "create_completion + GBNF from the JSON schema",
                         json_schema_to_gbnf(json.dumps(LABEL_SCHEMA)))


def gbnf_peer(llm: Any) -> Peer:
    return _grammar_peer(llm, "gbnf", "create_completion + the exact hand GBNF", gbnf())


def chat_json_peer(llm: Any) -> Peer:
    """`create_chat_completion` with a JSON-object response format and the schema.

    The handler renders the one user message verbatim (psyedge's rendered prompt), so the model
    sees the same text as every other peer; BOS is added by llama-cpp-python as for a completion.
    """
    from llama_cpp.llama_chat_format import ChatFormatterResponse, chat_formatter_to_chat_completion_handler

    def verbatim(messages: list[dict[str, Any]], **_: Any) -> ChatFormatterResponse:
        return ChatFormatterResponse(prompt=str(messages[0]["content"]), added_special=False)

    handler = chat_formatter_to_chat_completion_handler(verbatim)
    fmt = {"type": "json_object", "schema": LABEL_SCHEMA}

    def answer(tokens: list[int], text: str) -> str:
        out = handler(llama=llm, messages=[{"role": "user", "content": text}], response_format=fmt,
                      temperature=0.0, top_k=1, repeat_penalty=1.0, max_tokens=MAX_TOKENS)
        return str(out["choices"][0]["message"]["content"])

    return Peer("chat_json", "create_chat_completion, response_format json_object + schema", answer)


def outlines_peer(llm: Any) -> Peer:
    """Outlines 1.x: `from_llamacpp(llm)` and a `Generator` with a `JsonSchema` output type.

    Building the generator compiles the schema into a token index once (`setup_s`); each answer
    then masks the logits at every generated token (numba kernels on numpy arrays).
    """
    import outlines
    from outlines.types import JsonSchema

    t0 = time.perf_counter()
    model = outlines.from_llamacpp(llm)
    generator = outlines.Generator(model, JsonSchema(json.dumps(LABEL_SCHEMA)))
    setup = time.perf_counter() - t0

    def answer(tokens: list[int], text: str) -> str:
        return str(generator(text, max_tokens=MAX_TOKENS, temperature=0.0, top_k=1, repeat_penalty=1.0))

    return Peer("outlines", "Outlines 1.x (llama-cpp-python backend), JSON-schema output type", answer, setup)


#: Every peer, in report order.
PEERS: dict[str, Callable[[Any], Peer]] = {
    "json_schema": json_schema_peer,
    "gbnf": gbnf_peer,
    "chat_json": chat_json_peer,
    "outlines": outlines_peer,
}
