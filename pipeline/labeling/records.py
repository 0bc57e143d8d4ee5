"""The records every labeling step shares: what a service replied, one sample, how it ended, its row.

This module sits at the bottom of `pipeline.labeling`: it imports nothing of the package, and
every executor (interactive, batch, fallback), provider and report imports it. So a provider
never reaches up into a command line for a type, and a result row is built in one place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psyedge.contract import canonical_json
from psyedge.errors import InputError
from psyedge.prompt import evidence_prompt, instruction_and_transcript

log = logging.getLogger(__name__)

#: A chat message: ("user" | "model", text). Providers map "model" to their own role name.
Message = tuple[str, str]

#: HTTP statuses that are worth retrying (the issue's list); anything else is not transient.
TRANSIENT_STATUS: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})


class UsageError(Exception):
    """A mistake in how the CLI was called or in its inputs: printed without a traceback, exit 2."""


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
    """What a service answered: raw text (may be invalid), its finish reason and usage.

    `block_reason` is the service's reason for refusing the prompt itself (Gemini
    `promptFeedback.blockReason`); `safety_ratings` the per-category ratings it sent with the
    refusal or the candidate, kept so a reviewer can see why a sample was withheld.
    """

    text: str
    finish_reason: str
    usage: Usage
    block_reason: str = ""
    safety_ratings: tuple[dict[str, Any], ...] = ()


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


@dataclass(frozen=True)
class RunKey:
    """What makes a stored label reusable: same model, prompt and schema."""

    provider: str
    model: str
    prompt_version: str
    contract_version: str

    def matches(self, row: dict[str, Any]) -> bool:
        return (row.get("model") == self.model and row.get("prompt_version") == self.prompt_version
                and row.get("contract_version") == self.contract_version)

    def stamp(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model, "prompt_version": self.prompt_version,
                "contract_version": self.contract_version}


# ---- samples and outcomes -------------------------------------------------------------------

@dataclass
class Sample:
    """One input record ready to label (or the reason it cannot be)."""

    id: str
    record: dict[str, Any]
    prompt: str = ""
    sha: str = ""
    error: str = ""


def read_samples(path: Path, mode: str = "labels") -> tuple[list[Sample], int]:
    """Samples of a shard in file order, and how many duplicate ids were skipped.

    `mode` picks the teacher prompt (`evidence` adds the request for quotes).
    A line that is not JSON or not a valid record becomes a sample with `error` (it goes to the
    failed file with reason `bad_input`): every input line is accounted for.
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    dups = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                samples.append(Sample(where, {}, error=f"{where}: not JSON ({exc.msg})"))
                continue
            sid = rec.get("id") if isinstance(rec, dict) else None
            if not isinstance(sid, str) or not sid:
                samples.append(Sample(where, rec if isinstance(rec, dict) else {},
                                      error=f"{where}: record has no string 'id'"))
                continue
            if sid in seen:
                dups += 1
                log.warning("%s: duplicate id %r skipped (the first occurrence is labeled)", where, sid)
                continue
            seen.add(sid)
            try:
                build = evidence_prompt if mode == "evidence" else instruction_and_transcript
                prompt = build(rec.get("conversation"))
            except (InputError, TypeError) as exc:
                samples.append(Sample(sid, rec, error=f"{where}: {exc}"))
                continue
            samples.append(Sample(sid, rec, prompt, prompt_sha(prompt)))
    return samples, dups


def samples_by_id(shard_paths: list[Path], mode: str = "labels") -> dict[str, Sample]:
    """Every sample of the shards by id, in input order (the first occurrence of an id wins)."""
    out: dict[str, Sample] = {}
    for path in shard_paths:
        for s in read_samples(path, mode)[0]:
            out.setdefault(s.id, s)
    return out


@dataclass
class Outcome:
    """How labeling one prompt ended."""

    labels: dict[str, Any] | None
    text: str = ""
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    reasks: int = 0
    reason: str = ""
    error: str = ""
    block_reason: str = ""
    safety_ratings: tuple[dict[str, Any], ...] = ()
    #: Quotes backing the labels (evidence mode only; None in the labels mode).
    evidence: list[str] | None = None


def prompt_sha(prompt: str) -> str:
    """Dedup/cache key of a prompt: identical normalised conversations give identical prompts."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:20]


def result_row(s: Sample, out: Outcome, key: RunKey, dedup_of: str | None = None,
               provenance: str = "teacher") -> dict[str, Any]:
    """The journal line of one sample: the labels (canonical order) or why there are none.

    Shared by every executor, so a labeled or failed row looks the same whoever made it. A row
    fanned out from an identical prompt (`dedup_of`) bills nothing: its twin carries the cost.
    `provenance` says who labeled it: `teacher`, or `fallback:<teacher>` for a refused sample.
    """
    fan = dedup_of is not None
    row: dict[str, Any] = {"id": s.id}
    if out.labels is not None:
        row.update(json.loads(canonical_json(out.labels)))
    row.update(key.stamp())
    if out.labels is not None:
        row.update(source=s.record.get("source"), topic=s.record.get("topic"), provenance=provenance)
        if out.evidence is not None:
            row["evidence"] = out.evidence
    else:
        row.update(reason=out.reason, error=out.error, raw_text=out.text)
        if out.reason == "blocked":
            row.update(block_reason=out.block_reason, safety_ratings=list(out.safety_ratings))
    row.update({
        "usage": (Usage() if fan else out.usage).to_dict(),
        "attempts": 0 if fan else out.attempts,
        "reasks": out.reasks,
        "finish_reason": out.finish_reason,
        "prompt_sha": s.sha,
        "dedup_of": dedup_of,
        "labeled_at" if out.labels is not None else "failed_at": _now(),
    })
    return row


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---- secrets ------------------------------------------------------------------------------------

def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret (and its URL-quoted form) replaced: for logs and error messages."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
            text = re.sub(re.escape(secret.replace("/", "%2F")), "[REDACTED]", text)
    return text
