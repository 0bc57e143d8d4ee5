"""`make label`: label every shard with a teacher, resumably, within rate limits, and price it.

    python -m pipeline.label --provider P [--model M] --data-dir DIR --config pipeline/label_config.yaml [--shard 0007]

Reads `DIR/labeling/input_part_NNNN.jsonl`; writes, under `DIR/labeling/results/`:
- `input_part_NNNN.jsonl`: one line per labeled sample (id, the four labels, provider, model,
  prompt version, contract version, token usage, attempts, re-asks, finish reason, dedup source);
- `input_part_NNNN.failed.jsonl`: samples that could not be labeled, with reason and raw text;
- `dataset.jsonl` / `failed.jsonl`: all shards merged (human review corrections applied);
- `cost.json` (token totals and price), `stats.json` (per shard counts), `config.json` (the
  resolved config), and appends to `labeling.log`.
`--results-dir` puts these elsewhere: the Makefile gives each teacher its own folder
(`pipeline.teacher`), so one teacher's run never rewrites another's labels.

The flow per sample, top to bottom:
1. prompt = `psyedge.prompt.instruction_and_transcript(conversation)` (the SDK's; never copied);
2. skip if its id is already labeled under the same model + prompt version + schema version;
   identical prompts (normalised conversations) are sent once and fanned out to every id;
3. send through the rate limiter (rpm, tpm, concurrency); 408/429/5xx/timeouts retry with
   exponential backoff and jitter, honouring the server's retryDelay;
4. check the reply against the SDK schema; an invalid one (bad JSON, out of range, unknown
   enum, MAX_TOKENS) is re-asked with the error up to `reasks` times, never clamped;
5. append the result line (fsynced) as soon as it is known; failures go to the failed journal.
Exit codes: 0 done, 1 a run error (service refused, bug), 2 a usage error, 3 batch jobs pending,
4 more than `max_failed_share` of the samples failed (everything labeled is written first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.cost import CostReport, estimate_tokens
from pipeline.io import atomic_write_json, write_jsonl
from pipeline.layout import SHARD_NAME, Layout
from pipeline.providers.base import (
    FatalError,
    Provider,
    TransientError,
    Usage,
    check_reply,
    failure_reason,
    reask_messages,
    redact,
)
from pipeline.providers.config import PROVIDERS, ConfigError, LabelConfig, load_config
from pipeline.providers.gemini import MissingKeyError
from pipeline.providers.journal import (
    LABEL_FIELDS_ROW,
    SHARD_RE,
    Journal,
    RunKey,
    ShardFiles,
    current_rows,
    finalize,
    label_journals,
    prompt_sha,
)
from pipeline.ratelimit import RateLimiter
from psyedge.contract import CONTRACT_VERSION, canonical_json
from psyedge.errors import InputError
from psyedge.prompt import instruction_and_transcript, prompt_hash

log = logging.getLogger(__name__)

EXIT_OK, EXIT_RUN, EXIT_USAGE, EXIT_PENDING, EXIT_FAILED = 0, 1, 2, 3, 4


class UsageError(Exception):
    """A mistake in how the CLI was called or in its inputs: printed without a traceback, exit 2."""


# ---- inputs -------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One input record ready to label (or the reason it cannot be)."""

    id: str
    record: dict[str, Any]
    prompt: str = ""
    sha: str = ""
    error: str = ""


def find_shards(labeling_dir: Path, shard: str | None) -> list[Path]:
    """The input shards, sorted; `shard` ("7" or "0007") picks one."""
    if not labeling_dir.is_dir():
        raise UsageError(f"{labeling_dir} does not exist: run `make data` first (it writes the labeling shards)")
    shards = sorted(p for p in labeling_dir.iterdir() if SHARD_RE.match(p.name))
    if not shards:
        raise UsageError(f"no input_part_NNNN.jsonl in {labeling_dir}: run `make data` first")
    if shard is not None:
        if not shard.isdigit():
            raise UsageError(f"--shard must be a number like 0007, got {shard!r}")
        want = SHARD_NAME.format(int(shard))
        shards = [p for p in shards if p.name == want]
        if not shards:
            raise UsageError(f"--shard {shard}: {labeling_dir / want} does not exist")
    return shards


def read_samples(path: Path) -> tuple[list[Sample], int]:
    """Samples of a shard in file order, and how many duplicate ids were skipped.

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
                prompt = instruction_and_transcript(rec.get("conversation"))
            except (InputError, TypeError) as exc:
                samples.append(Sample(sid, rec, error=f"{where}: {exc}"))
                continue
            samples.append(Sample(sid, rec, prompt, prompt_sha(prompt)))
    return samples, dups


# ---- one request, retried ---------------------------------------------------------------------

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


class GiveUp(Exception):
    """Transient errors outlasted the retries."""


class Labeler:
    """Sends prompts through one provider with retries, re-asks, rate and concurrency limits."""

    def __init__(self, cfg: LabelConfig, provider: Provider, secrets: list[str], seed: int | None = None) -> None:
        self.cfg = cfg
        self.provider = provider
        self.secrets = secrets
        self.limiter = RateLimiter(cfg.rpm, cfg.tpm)
        self.sem = asyncio.Semaphore(cfg.concurrency)
        self.rng = random.Random(seed)
        self.requests_sent = 0

    def backoff(self, attempt: int, hint: float | None) -> float:
        """Exponential backoff with equal jitter; the server's hint wins when it is longer."""
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_initial_s * 2 ** attempt)
        delay = cap / 2 + self.rng.uniform(0, cap / 2)
        return max(delay, hint or 0.0)

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
            delay = self.backoff(attempt, err.retry_after)
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
        while True:
            try:
                reply = await self._send(reask_messages(prompt, history), conversation, out)
            except GiveUp as exc:
                out.reason, out.error = "transient_errors", redact(str(exc), self.secrets)
                return out
            out.usage = out.usage + reply.usage
            out.text, out.finish_reason = reply.text, reply.finish_reason
            labels, error = check_reply(reply)
            if labels is not None:
                out.labels = labels
                return out
            assert error is not None
            if len(history) >= self.cfg.reasks:
                out.reason = failure_reason(reply.finish_reason)
                out.error = f"still invalid after {len(history)} re-ask(s): {error}"
                return out
            log.info("invalid reply (%s): re-ask %d/%d", error[:160], len(history) + 1, self.cfg.reasks)
            history.append((reply.text, error))
            out.reasks += 1


# ---- rows -----------------------------------------------------------------------------------------

def labeled_row(s: Sample, out: Outcome, key: RunKey, dedup_of: str | None = None) -> dict[str, Any]:
    """A result line: id, the four labels in canonical order, provenance and cost."""
    assert out.labels is not None
    labels = json.loads(canonical_json(out.labels))
    fan = dedup_of is not None
    return {"id": s.id, **labels, **key.stamp(), "source": s.record.get("source"), "topic": s.record.get("topic"),
            "usage": (Usage() if fan else out.usage).to_dict(), "attempts": 0 if fan else out.attempts,
            "reasks": out.reasks, "finish_reason": out.finish_reason, "prompt_sha": s.sha,
            "dedup_of": dedup_of, "labeled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def failed_row(s: Sample, out: Outcome, key: RunKey, dedup_of: str | None = None) -> dict[str, Any]:
    """A failure line: why, the last raw reply and what it cost."""
    fan = dedup_of is not None
    return {"id": s.id, **key.stamp(), "reason": out.reason, "error": out.error, "raw_text": out.text,
            "finish_reason": out.finish_reason, "usage": (Usage() if fan else out.usage).to_dict(),
            "attempts": 0 if fan else out.attempts, "reasks": out.reasks, "prompt_sha": s.sha,
            "dedup_of": dedup_of, "failed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True, disable=None)


# ---- one shard ----------------------------------------------------------------------------------

class Run:
    """State shared by the shards of one invocation: the labeler, the dedup cache, the key."""

    def __init__(self, cfg: LabelConfig, provider: Provider, key: RunKey, results_dir: Path,
                 secrets: list[str]) -> None:
        self.cfg = cfg
        self.key = key
        self.results_dir = results_dir
        self.labeler = Labeler(cfg, provider, secrets)
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
        samples, dups = read_samples(path)
        done = current_rows(files.results, self.key)
        current_rows(files.failed, self.key)  # repairs a torn tail before appending
        pending = [s for s in samples if s.id not in done]
        groups: dict[str, list[Sample]] = {}
        ok_journal, fail_journal = Journal(files.results), Journal(files.failed)
        bar = _progress(len(pending), files.name)
        sent_before = self.labeler.requests_sent
        try:
            for s in pending:
                if s.error:
                    fail_journal.write(failed_row(s, Outcome(None, reason="bad_input", error=s.error), self.key))
                    bar.update(1)
                else:
                    groups.setdefault(s.sha, []).append(s)

            async def one(group: list[Sample]) -> None:
                first = group[0]
                cached = self.cache.get(first.sha)
                if cached is not None:
                    out = Outcome({k: cached[k] for k in LABEL_FIELDS_ROW}, finish_reason=cached.get("finish_reason", ""))
                    for s in group:
                        ok_journal.write(labeled_row(s, out, self.key, dedup_of=cached["id"]))
                else:
                    out = await self.labeler.label(first.prompt, first.record["conversation"])
                    for i, s in enumerate(group):
                        dedup = None if i == 0 else first.id
                        if out.labels is not None:
                            row = labeled_row(s, out, self.key, dedup)
                            if i == 0:
                                self.cache[first.sha] = row
                            ok_journal.write(row)
                        else:
                            fail_journal.write(failed_row(s, out, self.key, dedup))
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
                       "distinct_prompts_now": len(groups), "requests_now": self.labeler.requests_sent - sent_before})
        log.info("%s: %s", files.name, counts)
        return counts


# ---- merge and report -----------------------------------------------------------------------------

def iter_shard_rows(shard_paths: list[Path], results_dir: Path, key: RunKey,
                    failed: bool = False) -> Iterator[dict[str, Any]]:
    for path in shard_paths:
        files = ShardFiles.of(path, results_dir)
        yield from current_rows(files.failed if failed else files.results, key).values()


def merge(shard_paths: list[Path], results_dir: Path, key: RunKey, cfg: LabelConfig) -> dict[str, Any]:
    """Write dataset.jsonl, failed.jsonl and cost.json from the shards' results."""
    from pipeline.review import apply_corrections, load_corrections

    rows = list(iter_shard_rows(shard_paths, results_dir, key))
    fails = list(iter_shard_rows(shard_paths, results_dir, key, failed=True))
    labeled_ids = {r["id"] for r in rows}
    fails = [f for f in fails if f["id"] not in labeled_ids]
    corrections = load_corrections(results_dir)
    n_rows = write_jsonl(results_dir / "dataset.jsonl", apply_corrections(rows, corrections))
    write_jsonl(results_dir / "failed.jsonl", fails)
    present = sum(1 for p in shard_paths if ShardFiles.of(p, results_dir).results.exists())
    report = CostReport.from_rows([*rows, *fails], cfg)
    cost = report.to_dict()
    cost["shards_merged"] = present
    atomic_write_json(results_dir / "cost.json", cost)
    print(report.summary())
    log.info("%s", report.summary())
    if present < len(shard_paths):
        log.warning("dataset.jsonl covers %d of %d shards (label the rest, e.g. the SLURM array)",
                    present, len(shard_paths))
    by_reason = Counter(f.get("reason", "?") for f in fails)
    return {"labeled": n_rows, "failed": len(fails), "shards_merged": present,
            "shards": len(shard_paths), "failed_by_reason": dict(by_reason.most_common())}


def failure_summary(summary: dict[str, Any], max_share: float) -> tuple[str, bool]:
    """One line of failures by reason, and whether their share is above `max_share`."""
    total = summary["labeled"] + summary["failed"]
    share = summary["failed"] / total if total else 0.0
    reasons = ", ".join(f"{r} {n}" for r, n in summary["failed_by_reason"].items()) or "none"
    line = (f"failed {summary['failed']} of {total} ({share:.1%}; "
            f"max_failed_share {max_share:.0%}), by reason: {reasons}")
    return line, share > max_share


# ---- CLI --------------------------------------------------------------------------------------------

class _Redact(logging.Filter):
    """Scrubs secrets from every log record before any handler formats it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg, self.secrets)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
            record.exc_info = None
        return True


def setup_logging(results_dir: Path, secrets: list[str], verbose: bool) -> list[logging.Handler]:
    results_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_h = logging.FileHandler(results_dir / "labeling.log", encoding="utf-8")
    file_h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for h in (file_h, console):
        h.addFilter(_Redact(secrets))
        root.addHandler(h)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "google_genai", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return [file_h, console]


def make_provider(cfg: LabelConfig) -> tuple[Provider, list[str]]:
    """The provider object and the secrets that must never be printed."""
    if cfg.provider == "rules":
        from pipeline.providers.rules import RulesProvider

        return RulesProvider(cfg.model), []
    if cfg.provider == "openai":
        from pipeline.providers.openai_compat import OpenAICompatProvider

        prov = OpenAICompatProvider(cfg)
        return prov, [prov._key] if prov._key else []
    from pipeline.providers.gemini import GeminiProvider, api_key_from_env

    key = api_key_from_env()
    return GeminiProvider(cfg, key), [key]


def run_key(cfg: LabelConfig) -> RunKey:
    return RunKey(cfg.provider, cfg.model, prompt_hash(), CONTRACT_VERSION)


async def _label_all(run: Run, shard_paths: list[Path]) -> dict[str, dict[str, int]]:
    stats = {}
    try:
        for path in shard_paths:
            stats[path.name] = await run.shard(path)
    finally:
        await run.labeler.provider.aclose()
    return stats


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m pipeline.label", description=__doc__.splitlines()[0])
    ap.add_argument("--provider", required=True, choices=PROVIDERS)
    ap.add_argument("--model", help="model name (default: the provider's model in the config)")
    ap.add_argument("--data-dir", required=True, type=Path, help="folder with labeling/input_part_NNNN.jsonl")
    ap.add_argument("--config", required=True, type=Path, help="label_config.yaml")
    ap.add_argument("--results-dir", type=Path,
                    help="where results go (default: DATA_DIR/labeling/results)")
    ap.add_argument("--shard", help="label only this shard (e.g. 0007; a SLURM array task)")
    ap.add_argument("--merge-only", action="store_true", help="only merge shard results into dataset.jsonl")
    ap.add_argument("--concurrency", type=int, help="override the config's concurrency")
    ap.add_argument("--rpm", type=float, help="override the config's requests per minute")
    ap.add_argument("-v", "--verbose", action="store_true", help="log retries and re-asks to the console")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in (("concurrency", args.concurrency), ("rpm", args.rpm)) if v is not None}
    labeling_dir = Layout(args.data_dir).labeling
    results_dir = args.results_dir or Layout(args.data_dir).results()
    secrets: list[str] = []
    handlers: list[logging.Handler] = []
    try:
        cfg = load_config(args.config, args.provider, args.model, overrides)
        all_shards = find_shards(labeling_dir, None)
        todo = find_shards(labeling_dir, args.shard)
        key = run_key(cfg)
        if args.merge_only:
            handlers = setup_logging(results_dir, secrets, args.verbose)
            merge(all_shards, results_dir, key, cfg)
            return EXIT_OK
        provider, secrets = make_provider(cfg)
        handlers = setup_logging(results_dir, secrets, args.verbose)
        atomic_write_json(results_dir / "config.json", cfg.to_dict())
        log.info("labeling %d shard(s) with %s/%s, prompt %s, contract %s", len(todo), cfg.provider, cfg.model,
                 key.prompt_version, key.contract_version)
        t0 = time.perf_counter()
        if cfg.provider == "gemini-batch":
            from pipeline.providers.gemini_batch import run_batch

            stats, pending = run_batch(cfg, key, todo, results_dir, secrets)
        else:
            run = Run(cfg, provider, key, results_dir, secrets)
            run.preload_cache()
            stats, pending = asyncio.run(_label_all(run, todo)), []
        elapsed = time.perf_counter() - t0
        _write_stats(results_dir, stats, elapsed)
        if pending:
            # No merge: dataset.jsonl must not look finished to make while jobs are still running.
            print(f"batch jobs still running for {', '.join(pending)}: re-run the same command to collect them")
            return EXIT_PENDING
        summary = merge(all_shards, results_dir, key, cfg)
        print(f"labeled {summary['labeled']}, failed {summary['failed']} "
              f"({summary['shards_merged']}/{summary['shards']} shards) in {elapsed:.1f} s -> {results_dir}")
        line, too_many = failure_summary(summary, cfg.max_failed_share)
        if summary["failed"] and not too_many:
            print(line)
        if too_many:
            # The next stage must not train on what is left: a non-zero exit stops make here.
            print(f"error: {line}: the results are kept in {results_dir} (failed.jsonl has "
                  "each error); fix the cause and re-run the same command: only the failed "
                  "samples are sent again", file=sys.stderr)
            log.error("too many failures: %s", line)
            return EXIT_FAILED
        return EXIT_OK
    except (UsageError, ConfigError, MissingKeyError) as exc:
        print(f"error: {redact(str(exc), secrets)}", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        message = redact(str(exc), secrets)
        print(f"error: {message}", file=sys.stderr)
        log.error("run stopped: %s", message)
        return EXIT_RUN
    except KeyboardInterrupt:
        print("interrupted: results written so far are kept; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()


def _write_stats(results_dir: Path, stats: dict[str, dict[str, int]], elapsed: float) -> None:
    """Per-shard counts of this run merged into `stats.json` (other shards' entries are kept)."""
    path = results_dir / "stats.json"
    try:
        old = json.loads(path.read_text("utf-8")).get("shards", {}) if path.exists() else {}
    except (OSError, ValueError):
        old = {}
    old.update(stats)
    atomic_write_json(path, {"shards": old, "last_run_seconds": round(elapsed, 2)})


if __name__ == "__main__":
    raise SystemExit(main())
