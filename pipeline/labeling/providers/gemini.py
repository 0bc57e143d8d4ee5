"""The `gemini` provider: the real `google-genai` client, async requests through `client.aio`.

Settings that matter and why:
- JSON mode with the label schema (`response_mime_type="application/json"`, `response_schema`
  from `base.gemini_schema`): the service constrains its own output, re-asks become rare.
- `thinking_budget=0` (config): Gemini 2.5 Flash thinks by default and bills thinking as output.
- temperature 0: the same conversation gets the same labels across runs and re-runs.
- the SDK's own retries are off (`HttpRetryOptions(attempts=1)`): the executor owns retries
  so it can honour the server's `retryDelay`, which the SDK ignores.
- base URL: `GOOGLE_GEMINI_BASE_URL`, the SDK's own variable (google-genai 3.6 reads it in
  `_base_url.get_base_url` when no `http_options.base_url` is given); it is also passed
  explicitly here so the behaviour does not depend on that SDK detail.
- the key comes only from the environment and is handed to the client object; it is never
  formatted into a message (errors go through `base.redact` anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
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
    redact,
)
from pipeline.labeling.replies import gemini_schema

KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
BASE_URL_VAR = "GOOGLE_GEMINI_BASE_URL"


class MissingKeyError(FatalError):
    """No API key in the environment."""


def api_key_from_env() -> str:
    """`GEMINI_API_KEY`, else `GOOGLE_API_KEY`; never from a file or a flag."""
    for var in KEY_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    raise MissingKeyError(f"no Gemini API key: export {KEY_VARS[0]}=... (or {KEY_VARS[1]}) before running")


def make_client(cfg: LabelConfig, api_key: str) -> Any:
    """A `genai.Client` with our HTTP options (base URL from env, no SDK retries, timeout)."""
    from google import genai
    from google.genai import types

    base_url = os.environ.get(BASE_URL_VAR) or None
    options = types.HttpOptions(base_url=base_url, api_version=cfg.api_version,
                                timeout=int(cfg.timeout_s * 1000),
                                retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=api_key, http_options=options)


def generation_config(cfg: LabelConfig) -> Any:
    """The `GenerateContentConfig` every labeling request uses (also inside batch jobs)."""
    from google.genai import types

    kwargs: dict[str, Any] = {
        "response_mime_type": "application/json",
        "response_schema": gemini_schema(cfg.label_mode == "evidence"),
        "temperature": cfg.temperature,
        "max_output_tokens": cfg.max_output_tokens,
    }
    if cfg.thinking_budget is not None:
        kwargs["thinking_config"] = types.ThinkingConfig(thinking_budget=cfg.thinking_budget)
    if cfg.safety_settings:
        kwargs["safety_settings"] = [types.SafetySetting(category=c, threshold=t)
                                     for c, t in cfg.safety_settings.items()]
    return types.GenerateContentConfig(**kwargs)


def to_contents(messages: list[Message]) -> list[Any]:
    """Our (role, text) chat as Gemini `Content`s (roles `user` / `model`)."""
    from google.genai import types

    return [types.Content(role=role, parts=[types.Part(text=text)]) for role, text in messages]


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")


def retry_delay(details: Any) -> float | None:
    """The `google.rpc.RetryInfo.retryDelay` ("12s", "0.5s") of an error body, in seconds."""
    err = details.get("error", details) if isinstance(details, dict) else None
    for item in (err or {}).get("details", []) if isinstance(err, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = _DURATION.match(str(item.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def _ratings(items: Any) -> tuple[dict[str, Any], ...]:
    """`SafetyRating`s as plain dicts (category, probability, blocked) for the failed rows."""
    out = []
    for r in items or []:
        cat, prob = getattr(r, "category", None), getattr(r, "probability", None)
        out.append({"category": str(getattr(cat, "value", cat)),
                    "probability": str(getattr(prob, "value", prob)),
                    "blocked": bool(getattr(r, "blocked", False))})
    return tuple(out)


def reply_from_response(response: Any) -> Reply:
    """Text, finish reason, usage and any refusal details of a `GenerateContentResponse`."""
    usage_md = response.usage_metadata
    usage = Usage(input=int(getattr(usage_md, "prompt_token_count", 0) or 0),
                  output=int(getattr(usage_md, "candidates_token_count", 0) or 0),
                  thinking=int(getattr(usage_md, "thoughts_token_count", 0) or 0),
                  calls=1) if usage_md is not None else Usage(calls=1)
    feedback = getattr(response, "prompt_feedback", None)
    block = getattr(feedback, "block_reason", None)
    block_name = str(getattr(block, "value", block) or "")
    candidates = response.candidates or []
    if not candidates:
        return Reply("", f"BLOCKED_{block_name or 'NO_CANDIDATE'}", usage, block_name or "NO_CANDIDATE",
                     _ratings(getattr(feedback, "safety_ratings", None)))
    cand = candidates[0]
    parts = (cand.content.parts if cand.content and cand.content.parts else []) or []
    text = "".join(p.text or "" for p in parts if not getattr(p, "thought", False))
    finish = cand.finish_reason
    return Reply(text, str(getattr(finish, "value", finish) or "UNKNOWN"), usage, block_name,
                 _ratings(cand.safety_ratings))


def classify_error(exc: BaseException, secrets: list[str] | None = None) -> Exception:
    """Map an SDK/transport exception to `TransientError` or `FatalError`, `secrets` scrubbed.

    Scrubbing happens here, where the error is made, so no log handler anywhere (ours, a
    caller's, pytest's) ever sees the key, even if a proxy echoes it back in an error body.
    """
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        status = int(getattr(exc, "code", 0) or 0)
        text = f"HTTP {status} {getattr(exc, 'status', '') or ''}".strip()
        if status in TRANSIENT_STATUS:
            return TransientError(f"http_{status}", retry_delay(getattr(exc, "details", None)))
        message = redact(str(getattr(exc, "message", "") or ""), secrets or [])
        return FatalError(f"Gemini refused the request: {text}: {message[:300]} "
                          "(check the model name, the API key and the config)")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return TransientError("timeout")
    return TransientError(f"connection: {type(exc).__name__}")


class GeminiProvider(Provider):
    """Interactive `generateContent` calls through `client.aio`."""

    name = "gemini"

    def __init__(self, cfg: LabelConfig, api_key: str | None = None) -> None:
        super().__init__(cfg.model)
        self.cfg = cfg
        key = api_key or api_key_from_env()
        self.secrets = [key]
        self._client = make_client(cfg, key)
        self._config = generation_config(cfg)

    async def generate(self, messages: list[Message], conversation: list[dict[str, Any]]) -> Reply:
        from google.genai import errors

        try:
            response = await asyncio.wait_for(
                self._client.aio.models.generate_content(model=self.model, contents=to_contents(messages),
                                                         config=self._config),
                timeout=self.cfg.timeout_s)
        except (errors.APIError, asyncio.TimeoutError, TimeoutError, OSError) as exc:
            raise classify_error(exc, self.secrets) from None
        except Exception as exc:  # transport errors of the SDK's HTTP library (httpx2/aiohttp)
            if type(exc).__module__.split(".")[0] in ("httpx2", "httpx", "httpcore2", "httpcore", "aiohttp"):
                raise classify_error(exc, self.secrets) from None
            raise
        return reply_from_response(response)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):  # best effort: a broken transport has nothing left to close
            await self._client.aio.aclose()
