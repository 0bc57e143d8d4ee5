"""The provider interface: one async call that turns a chat (prompt, re-asks) into a raw reply.

Why this split: every provider only talks to its service and reports what came back (text,
finish reason, token usage) or raises `TransientError` / `FatalError`. Validation, re-asking,
retries, rate limits, resume and bookkeeping live once, in the executors of `pipeline.labeling`,
so all providers behave the same and the tests of that logic cover all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pipeline.labeling.records import Message, Reply


class Provider(ABC):
    """One labeling service. Subclasses set `name` and implement `generate`."""

    name: str = ""

    def __init__(self, model: str) -> None:
        self.model = model
        #: Values that must never reach a log or a file (API keys): the command line scrubs
        #: them from every log record and error message. Empty for offline providers.
        self.secrets: list[str] = []

    @abstractmethod
    async def generate(self, messages: list[Message], conversation: list[dict[str, Any]]) -> Reply:
        """Send the chat, return the reply; raise `TransientError`/`FatalError` on failure.

        `messages` is the SDK prompt plus any re-asks; `conversation` the record's turns, for
        offline providers that judge the turns themselves instead of reading a prompt.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections (default: nothing to release)."""
