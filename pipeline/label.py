"""`make label`: label every shard with a teacher, resumably, within rate limits, and price it.

    python -m pipeline.label --provider P [--model M] --data-dir DIR --config pipeline/label_config.yaml \
        [--shard 0007] [--fallback rules]

Reads `DIR/labeling/input_part_NNNN.jsonl`; writes, under `DIR/labeling/results/`:
- `input_part_NNNN.jsonl`: one line per labeled sample (id, the four labels, provider, model,
  prompt version, contract version, provenance, token usage, attempts, re-asks, finish reason,
  dedup source);
- `input_part_NNNN.failed.jsonl`: samples that could not be labeled, with reason and raw text
  (`blocked`: the teacher refused, with its block reason, finish reason and safety ratings);
- `dataset.jsonl` / `failed.jsonl` / `blocked.jsonl`: all shards merged (human review
  corrections applied, fallback labels of refused samples included);
- `cost.json` (token totals and price), `stats.json` (per shard counts and the report per
  lexicon class), `config.json` (the resolved config), and appends to `labeling.log`.
`--results-dir` puts these elsewhere: the Makefile gives each teacher its own folder
(`pipeline.teacher`), so one teacher's run never rewrites another's labels.

This module is the command line only. The work lives in `pipeline.labeling`, bottom to top:
`records` (sample, outcome, result row), `config`, `journal`, `replies`, `retry`, `providers`,
the executors `interactive` and `batch` (picked from `EXECUTORS` by provider), `fallback`, and
`report` (merge, cost, the per-class report).
Exit codes: 0 done, 1 a run error (service refused, bug), 2 a usage error, 3 batch jobs pending,
4 more than `max_failed_share` of the samples failed (everything labeled is written first;
refused samples are counted apart: `make sft` stops on a risk class left without labels).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.io import atomic_write_json
from pipeline.labeling.batch import run_batch
from pipeline.labeling.config import LABEL_MODES, PROVIDERS, ConfigError, LabelConfig, load_config, run_key
from pipeline.labeling.fallback import fallback_config, label_refused
from pipeline.labeling.interactive import Run, label_all
from pipeline.labeling.journal import find_shards
from pipeline.labeling.providers import make_provider
from pipeline.labeling.providers.gemini import MissingKeyError, api_key_from_env
from pipeline.labeling.records import FatalError, RunKey, UsageError, redact
from pipeline.labeling.report import failure_summary, merge, read_stats, update_stats
from pipeline.layout import Layout

log = logging.getLogger(__name__)

EXIT_OK, EXIT_RUN, EXIT_USAGE, EXIT_PENDING, EXIT_FAILED = 0, 1, 2, 3, 4

#: What an executor returns: per-shard counts, and the shards whose batch jobs still run.
ShardStats = dict[str, dict[str, int]]
Executor = Callable[[LabelConfig, RunKey, list[Path], Path, list[str]], tuple[ShardStats, list[str]]]


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


def interactive(cfg: LabelConfig, key: RunKey, shards: list[Path], results_dir: Path,
                secrets: list[str]) -> tuple[ShardStats, list[str]]:
    """One request per distinct prompt, now; nothing is ever pending."""
    provider = make_provider(cfg)
    secrets.extend(provider.secrets)
    run = Run(cfg, provider, key, results_dir)
    run.preload_cache()
    return asyncio.run(label_all(run, shards)), []


def batch(cfg: LabelConfig, key: RunKey, shards: list[Path], results_dir: Path,
          secrets: list[str]) -> tuple[ShardStats, list[str]]:
    """Batch API jobs: needs only the key, no interactive provider."""
    secrets.append(api_key_from_env())
    return run_batch(cfg, key, shards, results_dir, secrets)


#: Provider name -> the executor that labels with it.
EXECUTORS: dict[str, Executor] = {
    "rules": interactive,
    "gemini": interactive,
    "openai": interactive,
    "gemini-batch": batch,
}


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
    ap.add_argument("--fallback", metavar="PROVIDER[:MODEL]",
                    help="label the samples the teacher refused with this second teacher (e.g. rules)")
    ap.add_argument("--mode", choices=LABEL_MODES,
                    help="labels, or evidence: labels plus literal quotes (default: the config's)")
    ap.add_argument("--concurrency", type=int, help="override the config's concurrency")
    ap.add_argument("--rpm", type=float, help="override the config's requests per minute")
    ap.add_argument("-v", "--verbose", action="store_true", help="log retries and re-asks to the console")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pairs = (("concurrency", args.concurrency), ("rpm", args.rpm), ("label_mode", args.mode))
    overrides = {k: v for k, v in pairs if v is not None}
    labeling_dir = Layout(args.data_dir).labeling
    results_dir = args.results_dir or Layout(args.data_dir).results()
    secrets: list[str] = []  # filled by the executors before their first request
    handlers: list[logging.Handler] = []
    try:
        cfg = load_config(args.config, args.provider, args.model, overrides)
        fb_cfg = fallback_config(args.fallback, args.config) if args.fallback else None
        fb_key = run_key(fb_cfg) if fb_cfg else None
        all_shards = find_shards(labeling_dir, None)
        todo = find_shards(labeling_dir, args.shard)
        key = run_key(cfg)
        handlers = setup_logging(results_dir, secrets, args.verbose)
        if args.merge_only:
            merge(all_shards, results_dir, key, cfg, fb_key)
            return EXIT_OK
        atomic_write_json(results_dir / "config.json",
                          {**cfg.to_dict(), "fallback": fb_cfg.to_dict() if fb_cfg else None})
        log.info("labeling %d shard(s) with %s/%s, prompt %s, contract %s", len(todo), cfg.provider,
                 cfg.model, key.prompt_version, key.contract_version)
        t0 = time.perf_counter()
        stats, pending = EXECUTORS[cfg.provider](cfg, key, todo, results_dir, secrets)
        elapsed = time.perf_counter() - t0
        _write_stats(results_dir, stats, elapsed)
        if pending:
            # No merge: dataset.jsonl must not look finished to make while jobs are still running.
            print(f"batch jobs still running for {', '.join(pending)}: re-run the same command to collect "
                  "them")
            return EXIT_PENDING
        if fb_cfg and fb_key:
            fb = asyncio.run(label_refused(fb_cfg, args.fallback, fb_key, key, all_shards,
                                           results_dir, secrets))
            update_stats(results_dir, fallback={"teacher": args.fallback, **fb})
        summary = merge(all_shards, results_dir, key, cfg, fb_key)
        return _verdict(summary, cfg, results_dir, elapsed)
    except (UsageError, ConfigError, MissingKeyError) as exc:
        print(f"error: {redact(str(exc), secrets)}", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        message = redact(str(exc), secrets)
        print(f"error: {message}", file=sys.stderr)
        log.error("run stopped: %s", message)
        return EXIT_RUN
    except KeyboardInterrupt:
        print("interrupted: results written so far are kept; re-run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()


def _verdict(summary: dict[str, Any], cfg: LabelConfig, results_dir: Path, elapsed: float) -> int:
    """Print the outcome of a run and pick its exit code."""
    print(f"labeled {summary['labeled']}, failed {summary['failed']}, refused {summary['blocked']}"
          f" (+{summary['fallback']} labeled by the fallback) "
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


def _write_stats(results_dir: Path, stats: ShardStats, elapsed: float) -> None:
    """Per-shard counts of this run merged into `stats.json` (other shards' entries are kept)."""
    old = read_stats(results_dir).get("shards", {})
    update_stats(results_dir, shards={**old, **stats}, last_run_seconds=round(elapsed, 2))


if __name__ == "__main__":
    raise SystemExit(main())
