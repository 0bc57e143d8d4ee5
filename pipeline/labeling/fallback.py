"""A second teacher for the samples the first one refused: `--fallback rules` (or PROVIDER[:MODEL]).

A refusal is final for the teacher that gave it, so without a fallback those samples wait for a
human (the review queue lists them first). With one, each refused sample is labeled once by the
fallback, journaled in `fallback.jsonl` under the fallback's own key (a re-run sends nothing
twice), and merged into dataset.jsonl with `provenance: fallback:<teacher>`, so every later
stage can count or exclude them. The offline `rules` teacher judges risk with the SDK lexicon,
which is exactly the signal the refusing teacher withheld.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pipeline.labeling.config import LabelConfig, load_config
from pipeline.labeling.interactive import Labeler
from pipeline.labeling.journal import FALLBACK_FILE, Journal, current_rows, open_failures
from pipeline.labeling.providers import make_provider
from pipeline.labeling.records import RunKey, UsageError, result_row, samples_by_id

log = logging.getLogger(__name__)


def fallback_config(spec: str, config: Path) -> LabelConfig:
    """The resolved config of a fallback named `provider` or `provider:model`."""
    provider, _, model = spec.partition(":")
    if provider == "gemini-batch":
        raise UsageError("--fallback gemini-batch: a fallback labels a few refused samples at "
                         "once; use an interactive provider (rules, gemini, openai)")
    return load_config(config, provider, model or None)


def provenance(spec: str) -> str:
    """What a fallback row's `provenance` says (`fallback:rules`, `fallback:gemini:gemini-2.5-pro`)."""
    return f"fallback:{spec}"


async def label_refused(cfg: LabelConfig, spec: str, key: RunKey, teacher: RunKey,
                        shard_paths: list[Path], results_dir: Path,
                        secrets: list[str]) -> dict[str, int]:
    """Label the samples `teacher` refused with the fallback; return what it did.

    `secrets` is the command line's list of values to scrub: the fallback's own are added
    before its first request.
    """
    refused = [f["id"] for f in open_failures(shard_paths, results_dir, teacher)
               if f.get("reason") == "blocked"]
    path = results_dir / FALLBACK_FILE
    done = current_rows(path, key)
    samples = samples_by_id(shard_paths, cfg.label_mode)
    todo = [samples[i] for i in refused if i not in done and i in samples]
    counts = {"refused": len(refused), "sent": len(todo), "labeled": 0, "failed": 0}
    if not todo:
        return counts
    provider = make_provider(cfg)
    secrets.extend(provider.secrets)
    labeler = Labeler(cfg, provider)
    journal = Journal(path)

    async def one(sample_id: str) -> None:
        s = samples[sample_id]
        out = await labeler.label(s.prompt, s.record["conversation"])
        if out.labels is None:
            counts["failed"] += 1
            log.warning("fallback %s could not label %s either: %s", spec, s.id, out.error)
            return
        counts["labeled"] += 1
        journal.write(result_row(s, out, key, provenance=provenance(spec)))

    try:
        await asyncio.gather(*(one(s.id) for s in todo))
    finally:
        journal.close()
        await provider.aclose()
    log.info("fallback %s: %s", spec, counts)
    return counts
