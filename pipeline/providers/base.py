"""The provider interface: one async call that turns a chat (prompt, re-asks) into a raw reply.

Why this split: every provider only talks to its service and reports what came back (text,
finish reason, token usage) or raises `TransientError` / `FatalError`. Validation, re-asking,
retries, rate limits, resume and bookkeeping live once, in `pipeline.label`, so all providers
behave the same and the tests of that logic cover all of them.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from psyedge.contract import FIELDS, LABEL_SCHEMA, Labels
from psyedge.errors import LabelError

#: A chat message: ("user" | "model", text). Providers map "model" to their own role name.
Message = tuple[str, str]

#: HTTP statuses that are worth retrying (the issue's list); anything else is not transient.
TRANSIENT_STATUS: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Usage:
    """Billed tokens of one or more replies; `calls` counts replies that reported usage."""

    input: int = 0
    output: int = 0
    thinking: int = 0
    calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input + other.input, self.output + other.output,
                     self.thinking + other.thinking, self.calls + other.calls)

    def to_dict(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "thinking": self.thinking, "calls": self.calls}

    @classmethod
    def from_dict(cls, obj: dict[str, Any] | None) -> Usage:
        obj = obj or {}
        return cls(int(obj.get("input", 0)), int(obj.get("output", 0)), int(obj.get("thinking", 0)),
                   int(obj.get("calls", 0)))


@dataclass(frozen=True)
class Reply:
    """What a service answered: raw text (may be invalid), its finish reason and usage."""

    text: str
    finish_reason: str
    usage: Usage


class TransientError(Exception):
    """Worth retrying after a pause: 408/429/5xx, a timeout, a dropped connection.

    `retry_after` is the server's own hint in seconds (Gemini `RetryInfo.retryDelay`, HTTP
    `Retry-After`), which the retry loop honours when it is longer than its own backoff.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class FatalError(Exception):
    """Retrying cannot help (bad key, unknown model, malformed request): the run stops with the fix."""


class Provider(ABC):
    """One labeling service. Subclasses set `name` and implement `generate`."""

    name: str = ""

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    async def generate(self, messages: list[Message], conversation: list[dict[str, Any]]) -> Reply:
        """Send the chat, return the reply; raise `TransientError`/`FatalError` on failure.

        `messages` is the SDK prompt plus any re-asks; `conversation` the record's turns, for
        offline providers that judge the turns themselves instead of reading a prompt.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections (default: nothing to release)."""


# ---- reply checking and re-asking -----------------------------------------------------------

#: Finish reasons (Gemini names; OpenAI's are mapped onto them) that mean the text is cut short.
TRUNCATED = frozenset({"MAX_TOKENS", "length"})


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


def failure_reason(finish_reason: str) -> str:
    """The failed.jsonl reason for a reply that stayed invalid: cut off, blocked, or just wrong."""
    if finish_reason in TRUNCATED:
        return "max_tokens"
    if finish_reason.startswith("BLOCKED") or finish_reason in ("SAFETY", "PROHIBITED_CONTENT", "RECITATION"):
        return "blocked"
    return "invalid_reply"


def reask_text(error: str) -> str:
    """The follow-up turn after an invalid answer: the error, then the same demand for one line of JSON."""
    fields = ",".join(FIELDS)
    return (f"上面的回答无效：{error}\n请重新评估，只输出一行 JSON，包含且只包含 {fields} 四个字段，"
            "取值必须在规定范围内。")


def reask_messages(prompt: str, history: list[tuple[str, str]]) -> list[Message]:
    """The chat for the next attempt: the prompt, then each (bad answer, error) pair as a re-ask."""
    messages: list[Message] = [("user", prompt)]
    for bad_text, error in history:
        messages.append(("model", bad_text or "(空)"))
        messages.append(("user", reask_text(error)))
    return messages


# ---- schemas the services accept --------------------------------------------------------------

def gemini_schema() -> dict[str, Any]:
    """The label schema as Gemini's `response_schema` accepts it, derived from the SDK schema.

    Gemini's OpenAPI subset has no integer enums: a level becomes an integer with minimum and
    maximum taken from the SDK enum; `risk_flag` stays a string enum. `propertyOrdering` keeps
    the canonical key order in the answer.
    """
    props: dict[str, Any] = {}
    for name, spec in LABEL_SCHEMA["properties"].items():
        values = spec["enum"]
        if spec["type"] == "integer":
            props[name] = {"type": "INTEGER", "minimum": min(values), "maximum": max(values),
                           "description": spec.get("description", "")}
        else:
            props[name] = {"type": "STRING", "enum": list(values), "description": spec.get("description", "")}
    return {"type": "OBJECT", "properties": props, "required": list(LABEL_SCHEMA["required"]),
            "propertyOrdering": list(FIELDS)}


def openai_schema() -> dict[str, Any]:
    """The SDK schema for OpenAI-style `response_format: json_schema` (strict), minus its ids."""
    return {k: v for k, v in json.loads(json.dumps(LABEL_SCHEMA)).items() if not k.startswith("$")}


# ---- secrets ------------------------------------------------------------------------------------

def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret (and its URL-quoted form) replaced: for logs and error messages."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
            text = re.sub(re.escape(secret.replace("/", "%2F")), "[REDACTED]", text)
    return text
