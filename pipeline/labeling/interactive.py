"""The interactive executor: one request per distinct prompt, concurrent, within rate limits.

The flow per sample, top to bottom:
1. prompt = `psyedge.prompt.instruction_and_transcript(conversation)` (the SDK's; never copied);
2. skip if its id is already labeled under the same model + prompt version + schema version;
   identical prompts (normalised conversations) are sent once and fanned out to every id;
3. send through the rate limiter (rpm, tpm, concurrency); 408/429/5xx/timeouts retry with
   exponential backoff and jitter (`retry.backoff`), honouring the server's retryDelay;
4. judge the reply (`replies.judge`): an invalid one (bad JSON, out of range, unknown enum,
   MAX_TOKENS) is re-asked with the error up to `reasks` times, never clamped; a refusal
   (blocked prompt, SAFETY stop, empty text) is final: `blocked`, with the service's reasons;
5. append the result line (fsynced) as soon as it is known; failures go to the failed journal.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import Any

from pipeline.cost import estimate_tokens
from pipeline.labeling.config import LabelConfig
from pipeline.labeling.journal import (
    LABEL_FIELDS_ROW,
    Journal,
    ShardFiles,
    current_rows,
    finalize,
    label_journals,
)
from pipeline.labeling.providers.base import Provider
from pipeline.labeling.records import (
    Outcome,
    RunKey,
    Sample,
    TransientError,
    read_samples,
    redact,
    result_row,
)
from pipeline.labeling.replies import judge, reask_messages, student_text
from pipeline.labeling.retry import backoff
from pipeline.ratelimit import RateLimiter

log = logging.getLogger(__name__)


class GiveUp(Exception):
    """Transient errors outlasted the retries."""


class Labeler:
    """Sends prompts through one provider with retries, re-asks, rate and concurrency limits."""

    def __init__(self, cfg: LabelConfig, provider: Provider, seed: int | None = None) -> None:
        self.cfg = cfg
        self.provider = provider
        self.limiter = RateLimiter(cfg.rpm, cfg.tpm)
        self.sem = asyncio.Semaphore(cfg.concurrency)
        self.rng = random.Random(seed)
        self.requests_sent = 0

    async def _send(self, messages: list[tuple[str, str]], conversation: list[dict[str, Any]],
                    out: Outcome) -> Any:
        est = sum(estimate_tokens(t) for _, t in messages) + self.cfg.max_output_tokens
        for attempt in range(self.cfg.retries + 1):
            async with self.sem:
                await self.limiter.acquire(est)
                out.attempts += 1
                self.requests_sent += 1
                try:
                    reply = await self.provider.generate(messages, conversation)
                except TransientError as exc:
                    err = exc
                else:
                    u = reply.usage
                    self.limiter.settle(est, u.input + u.output + u.thinking)
                    return reply
            if attempt == self.cfg.retries:
                raise GiveUp(f"{err.reason} after {attempt + 1} attempts")
            delay = backoff(self.cfg, attempt, err.retry_after, self.rng)
            if err.retry_after and err.reason == "http_429":
                self.limiter.pause(err.retry_after)
            log.info("transient %s (retryDelay %s): retry %d/%d in %.2f s", err.reason, err.retry_after,
                     attempt + 1, self.cfg.retries, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def label(self, prompt: str, conversation: list[dict[str, Any]]) -> Outcome:
        """Labels for one prompt, re-asking invalid replies up to `reasks` times."""
        out = Outcome(None)
        history: list[tuple[str, str]] = []
        evidence = self.cfg.label_mode == "evidence"
        source = student_text(conversation) if evidence else None
        while True:
            try:
                reply = await self._send(reask_messages(prompt, history, evidence), conversation, out)
            except GiveUp as exc:
                out.reason, out.error = "transient_errors", redact(str(exc), self.provider.secrets)
                return out
            out.usage = out.usage + reply.usage
            out.text, out.finish_reason = reply.text, reply.finish_reason
            out.block_reason, out.safety_ratings = reply.block_reason, reply.safety_ratings
            verdict = judge(reply, len(history), self.cfg.reasks, self.cfg.reask_blocked, source)
            if not verdict.reask:
                out.labels, out.reason, out.error = verdict.labels, verdict.reason, verdict.error
                out.evidence = verdict.evidence
                return out
            log.info("invalid reply (%s): re-ask %d", verdict.error[:160], len(history) + 1)
            history.append((reply.text, verdict.error))
            out.reasks += 1


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True, disable=None)


class Run:
    """State shared by the shards of one invocation: the labeler, the dedup cache, the key."""

    def __init__(self, cfg: LabelConfig, provider: Provider, key: RunKey, results_dir: Path) -> None:
        self.cfg = cfg
        self.key = key
        self.results_dir = results_dir
        self.labeler = Labeler(cfg, provider)
        #: prompt sha -> a labeled row with this key (from earlier runs or shards): dedup + cache.
        self.cache: dict[str, dict[str, Any]] = {}

    def preload_cache(self) -> None:
        """Every label this key already has in the folder, by prompt: current shards, shards of an
        earlier input, retired rows. A prompt seen before is never sent again."""
        for path in label_journals(self.results_dir):
            for row in current_rows(path, self.key).values():
                if row.get("prompt_sha") and row.get("dedup_of") is None:
                    self.cache.setdefault(row["prompt_sha"], row)

    async def shard(self, path: Path) -> dict[str, int]:
        files = ShardFiles.of(path, self.results_dir)
        samples, dups = read_samples(path, self.cfg.label_mode)
        done = current_rows(files.results, self.key)
        # Reading the failures also repairs a torn tail before appending. A refusal is final for
        # this key: a re-run sends the other failures again, never a refused prompt.
        refused = {i for i, r in current_rows(files.failed, self.key).items()
                   if r.get("reason") == "blocked"}
        pending = [s for s in samples if s.id not in done and s.id not in refused]
        groups: dict[str, list[Sample]] = {}
        ok_journal, fail_journal = Journal(files.results), Journal(files.failed)
        bar = _progress(len(pending), files.name)
        sent_before = self.labeler.requests_sent
        try:
            for s in pending:
                if s.error:
                    bad = Outcome(None, reason="bad_input", error=s.error)
                    fail_journal.write(result_row(s, bad, self.key))
                    bar.update(1)
                else:
                    groups.setdefault(s.sha, []).append(s)

            async def one(group: list[Sample]) -> None:
                first = group[0]
                cached = self.cache.get(first.sha)
                if cached is not None:
                    out = Outcome({k: cached[k] for k in LABEL_FIELDS_ROW}, evidence=cached.get("evidence"),
                                  finish_reason=cached.get("finish_reason", ""))
                    for s in group:
                        ok_journal.write(result_row(s, out, self.key, dedup_of=cached["id"]))
                else:
                    out = await self.labeler.label(first.prompt, first.record["conversation"])
                    for i, s in enumerate(group):
                        dedup = None if i == 0 else first.id
                        row = result_row(s, out, self.key, dedup)
                        if out.labels is not None and i == 0:
                            self.cache[first.sha] = row
                        (ok_journal if out.labels is not None else fail_journal).write(row)
                bar.update(len(group))

            to_send = [g[0].prompt for sha, g in groups.items() if sha not in self.cache]
            if to_send:
                est = sum(estimate_tokens(p) for p in to_send) / len(to_send)
                log.info("%s: %d to label, %d distinct prompts to send, ~%.0f input tokens each (estimate)",
                         files.name, len(pending), len(to_send), est)
            tasks = [asyncio.create_task(one(g)) for g in groups.values()]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            bar.close()
            ok_journal.close()
            fail_journal.close()
        counts = finalize(files, [s.id for s in samples], self.key)
        counts.update({"duplicate_ids": dups, "skipped_done": len(samples) - len(pending),
                       "distinct_prompts_now": len(groups),
                       "requests_now": self.labeler.requests_sent - sent_before})
        log.info("%s: %s", files.name, counts)
        return counts


async def label_all(run: Run, shard_paths: list[Path]) -> dict[str, dict[str, int]]:
    """Label every shard in turn (shards share the dedup cache), then close the provider."""
    stats = {}
    try:
        for path in shard_paths:
            stats[path.name] = await run.shard(path)
    finally:
        await run.labeler.provider.aclose()
    return stats
