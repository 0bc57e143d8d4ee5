"""The `openai` provider: any OpenAI-compatible `/chat/completions` endpoint (llama.cpp, vLLM).

For teams whose counseling data may not leave their servers: point `base_url` at a model they
host. The reply is constrained with `response_format: {type: json_schema, strict: true}` and the
SDK schema (llama.cpp turns it into a grammar, vLLM into guided decoding).

Plain `urllib` in a worker thread keeps this dependency-free; concurrency is bounded by the
caller (the interactive executor), so at most `concurrency` threads block on sockets at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Any

from pipeline.labeling.config import LabelConfig
from pipeline.labeling.providers.base import Provider
from pipeline.labeling.records import (
    TRANSIENT_STATUS,
    FatalError,
    Message,
    Reply,
    TransientError,
    Usage,
)
from pipeline.labeling.replies import openai_schema

#: OpenAI finish reasons onto the Gemini names `check_reply` knows.
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except (TypeError, ValueError):
        return None


class OpenAICompatProvider(Provider):
    """`POST {base_url}/chat/completions` with a JSON-schema response format."""

    name = "openai"

    def __init__(self, cfg: LabelConfig) -> None:
        super().__init__(cfg.model)
        self.cfg = cfg
        self.url = str(cfg.base_url).rstrip("/") + "/chat/completions"
        self._key = os.environ.get(cfg.api_key_env, "").strip() if cfg.api_key_env else ""
        self.secrets = [self._key] if self._key else []

    def _body(self, messages: list[Message]) -> bytes:
        return json.dumps({
            "model": self.model,
            "messages": [{"role": "assistant" if r == "model" else "user", "content": t} for r,
                         t in messages],
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_output_tokens,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "psyedge_labels", "strict": True,
                                                "schema": openai_schema()}},
        }, ensure_ascii=False).encode("utf-8")

    def _post(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            if exc.code in TRANSIENT_STATUS:
                raise TransientError(f"http_{exc.code}", _retry_after(exc.headers)) from None
            raise FatalError(f"{self.url} refused the request: HTTP {exc.code} {exc.reason} "
                             "(check base_url, the model name and the server's JSON-schema "
                             "support)") from None
        except (TimeoutError, OSError) as exc:
            raise TransientError(f"connection: {type(exc).__name__}") from None
        except json.JSONDecodeError:
            raise TransientError("reply body is not JSON") from None

    async def generate(self, messages: list[Message], conversation: list[dict[str, Any]]) -> Reply:
        data = await asyncio.to_thread(self._post, self._body(messages))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = _FINISH.get(choice.get("finish_reason") or "", str(choice.get("finish_reason")))
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TransientError("reply has no choices[0].message") from None
        u = data.get("usage") or {}
        thinking = int(((u.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
        usage = Usage(input=int(u.get("prompt_tokens", 0) or 0),
                      output=int(u.get("completion_tokens", 0) or 0) - thinking, thinking=thinking, calls=1)
        return Reply(text, finish, usage)
