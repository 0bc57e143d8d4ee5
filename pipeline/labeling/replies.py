"""What a reply means: labels, a re-ask, or a final refusal; and the chat that re-asks.

Shared by every executor, so the interactive and the batch path decide alike; the schemas the
services accept are derived here from the SDK's, never written by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.labeling.records import Message, Reply
from psyedge.contract import FIELDS, LABEL_SCHEMA, Labels
from psyedge.errors import LabelError
from psyedge.prompt import prepare

#: Finish reasons (Gemini names; OpenAI's are mapped onto them) that mean the text is cut short.
TRUNCATED = frozenset({"MAX_TOKENS", "length"})


#: Finish reasons (Gemini's `FinishReason`; OpenAI's `content_filter` maps to SAFETY) that mean
#: the service withheld the answer because of its content.
WITHHELD = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION"})


def blocked_why(reply: Reply) -> str | None:
    """Why a reply is a refusal rather than an answer, or None for an answer (valid or not).

    Three shapes reach us: the prompt blocked (no candidate, `blockReason`), a candidate stopped
    for safety with no text, and an empty text with `finishReason: STOP`, which Gemini is
    reported to send for suicide and self-harm content even with BLOCK_NONE
    (google-gemini/cookbook issue 331). Asking again gets the same refusal, so the labeler
    treats all three as final (`reask_blocked`, default 0) instead of as malformed answers.
    A reply cut by the token limit is not a refusal: it is re-asked like any invalid answer.
    """
    if reply.block_reason:
        return f"the prompt was blocked (blockReason {reply.block_reason})"
    if reply.finish_reason in WITHHELD or reply.finish_reason.startswith("BLOCKED"):
        return f"the answer was withheld (finishReason {reply.finish_reason})"
    if reply.finish_reason not in TRUNCATED and not reply.text.strip():
        return f"empty answer (finishReason {reply.finish_reason or 'none'})"
    return None


def check_reply(reply: Reply) -> tuple[dict[str, Any] | None, str | None]:
    """(labels, None) for a valid reply, else (None, why): never clamps or repairs a value.

    A reply cut by the token limit is refused even if it happens to parse: the model did not
    finish its answer. The error text is what the re-ask shows the model, so it names the field.
    """
    if reply.finish_reason in TRUNCATED:
        return None, f"the answer was cut off (finish_reason {reply.finish_reason}): {reply.text[:80]!r}"
    text = reply.text.strip()
    if not text:
        return None, f"empty answer (finish_reason {reply.finish_reason})"
    try:
        labels = Labels.from_json(text)
    except LabelError as exc:
        return None, str(exc)
    return labels.to_dict(), None


#: At most this many quotes back the labels in the evidence mode.
MAX_QUOTES = 3


def student_text(conversation: Any) -> str:
    """The student's turns as the teacher read them (trimmed like the prompt): what quotes of
    the evidence mode must be literal substrings of. A quote cannot span two turns."""
    turns, _ = prepare(conversation)
    return "\n".join(t.text for t in turns if t.role == "user")


def check_evidence(reply: Reply, source: str) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """(labels, quotes, None) for a valid evidence-mode reply, else (None, [], why).

    Every quote must occur word for word in `source` (the student's turns): a paraphrase or an
    invented sentence is an invalid answer and re-asked, so a stored quote can always be found
    and highlighted in the dialogue.
    """
    try:
        obj = json.loads(reply.text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or "evidence" not in obj:
        labels, error = check_reply(reply)
        return None, [], error or 'the answer has no "evidence" list'
    quotes = obj.pop("evidence")
    if not isinstance(quotes, list) or not all(isinstance(q, str) and q for q in quotes):
        return None, [], f'"evidence" must be a list of non-empty strings, got {quotes!r}'
    if len(quotes) > MAX_QUOTES:
        return None, [], f'"evidence" has {len(quotes)} quotes; give at most {MAX_QUOTES}'
    for q in quotes:
        if q not in source:
            return None, [], (f'evidence {q!r} is not a literal quote of the student\'s words: '
                              "copy the student's words exactly, or leave it out")
    labels, error = check_reply(Reply(json.dumps(obj, ensure_ascii=False), reply.finish_reason,
                                      reply.usage))
    return labels, quotes if labels is not None else [], error


def failure_reason(finish_reason: str) -> str:
    """The failed.jsonl reason for a reply that stayed invalid: cut off or just wrong."""
    return "max_tokens" if finish_reason in TRUNCATED else "invalid_reply"


@dataclass(frozen=True)
class Verdict:
    """What one reply means for its sample: labels, one more ask (`reask`), or a final failure.

    `error` is the text of the re-ask while `reask` is set, else the failure message; `reason`
    is the failed.jsonl reason of a final failure (`blocked`, `max_tokens`, `invalid_reply`).
    """

    labels: dict[str, Any] | None
    reason: str = ""
    error: str = ""
    reask: bool = False
    evidence: list[str] | None = None


def judge(reply: Reply, reasks_done: int, reasks: int, reask_blocked: int,
          evidence_from: str | None = None) -> Verdict:
    """The one decision every executor (interactive, batch) takes after a reply.

    A refusal (`blocked_why`) is final once `reask_blocked` re-asks are spent (default 0: asking
    again pays for the same refusal); an invalid answer is re-asked up to `reasks` times.
    `evidence_from` (the student's text) turns on the evidence mode's quote check.
    """
    why = blocked_why(reply)
    if why is not None:
        if reasks_done >= reask_blocked:
            return Verdict(None, "blocked", why)
        return Verdict(None, error=why, reask=True)
    quotes: list[str] | None = None
    if evidence_from is None:
        labels, error = check_reply(reply)
    else:
        labels, quotes, error = check_evidence(reply, evidence_from)
    if labels is not None:
        return Verdict(labels, evidence=quotes)
    assert error is not None
    if reasks_done >= reasks:
        return Verdict(None, failure_reason(reply.finish_reason),
                       f"still invalid after {reasks_done} re-ask(s): {error}")
    return Verdict(None, error=error, reask=True)


def reask_text(error: str, evidence: bool = False) -> str:
    """The follow-up turn after an invalid answer: the error, then the same demand for one line of JSON."""
    fields = ",".join(FIELDS)
    wanted = f"{fields} 四个字段和 evidence 列表" if evidence else f"{fields} 四个字段"
    return (f"上面的回答无效：{error}\n请重新评估，只输出一行 JSON，包含且只包含 {wanted}，"
            "取值必须在规定范围内。")


def reask_messages(prompt: str, history: list[tuple[str, str]], evidence: bool = False) -> list[Message]:
    """The chat for the next attempt: the prompt, then each (bad answer, error) pair as a re-ask."""
    messages: list[Message] = [("user", prompt)]
    for bad_text, error in history:
        messages.append(("model", bad_text or "(空)"))
        messages.append(("user", reask_text(error, evidence)))
    return messages


# ---- schemas the services accept --------------------------------------------------------------

def gemini_schema(evidence: bool = False) -> dict[str, Any]:
    """The label schema as Gemini's `response_schema` accepts it, derived from the SDK schema.

    Gemini's OpenAPI subset has no integer enums: a level becomes an integer with minimum and
    maximum taken from the SDK enum; `risk_flag` stays a string enum. `propertyOrdering` keeps
    the canonical key order in the answer. The evidence mode adds a list of quotes.
    """
    props: dict[str, Any] = {}
    for name, spec in LABEL_SCHEMA["properties"].items():
        values = spec["enum"]
        if spec["type"] == "integer":
            props[name] = {"type": "INTEGER", "minimum": min(values), "maximum": max(values),
                           "description": spec.get("description", "")}
        else:
            props[name] = {"type": "STRING", "enum": list(values), "description": spec.get("description", "")}
    order = list(FIELDS)
    if evidence:
        props["evidence"] = {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": MAX_QUOTES,
                             "description": "literal quotes of the student supporting the labels"}
        order.append("evidence")
    return {"type": "OBJECT", "properties": props, "required": [*LABEL_SCHEMA["required"],
            *(["evidence"] if evidence else [])], "propertyOrdering": order}


def openai_schema() -> dict[str, Any]:
    """The SDK schema for OpenAI-style `response_format: json_schema` (strict), minus its ids."""
    return {k: v for k, v in json.loads(json.dumps(LABEL_SCHEMA)).items() if not k.startswith("$")}
