"""The batch executor: one Gemini Batch API job per shard (half price), resumable.

How a shard goes through the Batch API:
1. the shard's unlabeled, distinct prompts become inline requests (`metadata.key` = prompt sha;
   the API's inline limit is 20 MB, a shard of a few hundred ~2 KB prompts is far below it);
2. `client.batches.create` submits them and the job name is persisted at once in
   `results/input_part_NNNN.batch.json`, so a later run (or the same one) polls that job
   instead of paying for a second one;
3. the run polls every `poll_interval_s` until `wait_s` has passed; still running -> exit 3
   ("re-run to collect"), nothing lost;
4. a SUCCEEDED job can still hold failed rows: each inlined response's `error` is checked,
   and rows with an error, a missing row or an invalid answer go into the next round (re-asked
   with the error, like the interactive provider) until `retries` / `reasks` are spent, then to
   the failed file. A FAILED/CANCELLED/EXPIRED job sends all its rows to the next round.
Results use the same journal, rows and resume key as the interactive providers.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from pipeline.io import atomic_write_json
from pipeline.labeling.config import LabelConfig
from pipeline.labeling.journal import Journal, ShardFiles, current_rows, finalize
from pipeline.labeling.providers.gemini import (
    api_key_from_env,
    classify_error,
    generation_config,
    make_client,
    reply_from_response,
    to_contents,
)
from pipeline.labeling.records import (
    FatalError,
    Outcome,
    Reply,
    RunKey,
    Sample,
    TransientError,
    Usage,
    read_samples,
    result_row,
)
from pipeline.labeling.replies import judge, reask_messages, student_text
from pipeline.labeling.retry import backoff

log = logging.getLogger(__name__)

_RNG = random.Random()
_RUNNING = {"JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED", "JOB_STATE_UNSPECIFIED"}
_DONE_OK = "JOB_STATE_SUCCEEDED"


def _state_name(job: Any) -> str:
    state = getattr(job, "state", None)
    return str(getattr(state, "value", state) or "JOB_STATE_UNSPECIFIED")


def _call(fn: Any, cfg: LabelConfig, what: str, secrets: list[str], **kwargs: Any) -> Any:
    """A batch API call with the same transient-retry policy as interactive requests."""
    for attempt in range(cfg.retries + 1):
        try:
            return fn(**kwargs)
        except Exception as exc:  # classify: API errors, transport errors
            err = classify_error(exc, secrets)
            if isinstance(err, FatalError) or attempt == cfg.retries:
                raise (err if isinstance(err,
                                         FatalError)
                       else FatalError(f"{what}: {err} after {attempt + 1} tries")) \
                    from None
            assert isinstance(err, TransientError)
            delay = backoff(cfg, attempt, err.retry_after, _RNG)
            log.info("%s: transient %s, retry in %.2f s", what, err.reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class BatchShard:
    """One shard's journey through batch rounds; state persisted after every change."""

    def __init__(self, cfg: LabelConfig, key: RunKey, files: ShardFiles, client: Any,
                 secrets: list[str]) -> None:
        self.cfg, self.key, self.files, self.client, self.secrets = cfg, key, files, client, secrets
        self.evidence = cfg.label_mode == "evidence"
        self.samples, _ = read_samples(files.input, cfg.label_mode)
        self.state = self._load_state()

    def _load_state(self) -> dict[str, Any]:
        fresh = {"key": self.key.stamp(), "job": None, "job_keys": [], "round": 0, "errors": {},
                 "history": {}, "usage": {}, "attempts": {}}
        if not self.files.batch.exists():
            return fresh
        state = json.loads(self.files.batch.read_text("utf-8"))
        if state.get("key") != self.key.stamp():
            log.warning("%s: batch state is for %s, not this run: starting over", self.files.batch,
                        state.get("key"))
            return fresh
        return state

    def _save(self) -> None:
        atomic_write_json(self.files.batch, self.state)

    def _open_groups(self) -> dict[str, list[Sample]]:
        """Prompt sha -> samples still to label (not labeled, not given up)."""
        done = current_rows(self.files.results, self.key)
        failed = current_rows(self.files.failed, self.key)
        groups: dict[str, list[Sample]] = {}
        for s in self.samples:
            if s.id in done or s.id in failed:
                continue
            groups.setdefault(s.sha if not s.error else f"bad:{s.id}", []).append(s)
        return groups

    def _write(self, group: list[Sample], sha: str, labels: dict[str, Any] | None = None, reason: str = "",
               error: str = "", reply: Reply | None = None, evidence: list[str] | None = None) -> None:
        st = self.state
        reply = reply or Reply("", "", Usage())
        out = Outcome(labels, text=reply.text, finish_reason=reply.finish_reason,
                      usage=Usage.from_dict(st["usage"].get(sha)),
                      attempts=int(st["attempts"].get(sha, 0)), reasks=len(st["history"].get(sha, [])),
                      reason=reason, error=error, block_reason=reply.block_reason,
                      safety_ratings=reply.safety_ratings, evidence=evidence)
        journal = Journal(self.files.results if labels is not None else self.files.failed)
        try:
            for i, s in enumerate(group):
                dedup = None if i == 0 else group[0].id
                journal.write(result_row(s, out, self.key, dedup))
        finally:
            journal.close()

    def _collect(self, job: Any, groups: dict[str, list[Sample]]) -> None:
        st = self.state
        state = _state_name(job)
        responses = list(getattr(getattr(job, "dest", None), "inlined_responses", None) or []) \
            if state == _DONE_OK else []
        by_key: dict[str, Any] = {}
        for i, item in enumerate(responses):
            meta = getattr(item, "metadata", None) or {}
            k = meta.get("key") or (st["job_keys"][i] if i < len(st["job_keys"]) else None)
            if k:
                by_key[k] = item
        for sha in st["job_keys"]:
            group = groups.get(sha)
            if not group:
                continue
            item = by_key.get(sha)
            row_error = None
            if state != _DONE_OK:
                row_error = f"batch job ended {state}"
            elif item is None:
                row_error = "row missing from the batch output"
            elif getattr(item, "error", None) is not None:
                e = item.error
                row_error = f"row error {getattr(e, 'code', '')}: {getattr(e, 'message', '')}"[:300]
            if row_error is not None:
                st["errors"][sha] = int(st["errors"].get(sha, 0)) + 1
                if st["errors"][sha] > self.cfg.retries:
                    self._write(group, sha, reason="batch_row_error", error=row_error)
                continue
            reply = reply_from_response(item.response)
            st["usage"][sha] = (Usage.from_dict(st["usage"].get(sha)) + reply.usage).to_dict()
            history = st["history"].setdefault(sha, [])
            source = student_text(group[0].record["conversation"]) if self.evidence else None
            verdict = judge(reply, len(history), self.cfg.reasks, self.cfg.reask_blocked, source)
            if verdict.reask:
                history.append([reply.text, verdict.error])
            else:
                self._write(group, sha, verdict.labels, verdict.reason, verdict.error, reply,
                            verdict.evidence)

    def _submit(self, groups: dict[str, list[Sample]]) -> None:
        from google.genai import types

        st = self.state
        config = generation_config(self.cfg)
        keys = [sha for sha, g in groups.items() if not g[0].error]
        requests = []
        for sha in keys:
            history = [(h[0], h[1]) for h in st["history"].get(sha, [])]
            chat = reask_messages(groups[sha][0].prompt, history, self.evidence)
            requests.append(types.InlinedRequest(contents=to_contents(chat), metadata={"key": sha},
                                                 config=config))
        st["round"] += 1
        job = _call(self.client.batches.create, self.cfg, f"{self.files.name}: submit batch", self.secrets,
                    model=self.cfg.model, src=types.BatchJobSource(inlined_requests=requests),
                    config=types.CreateBatchJobConfig(display_name=f"psyedge-{self.files.name}-r{st['round']}"))
        for sha in keys:
            st["attempts"][sha] = int(st["attempts"].get(sha, 0)) + 1
        st["job"], st["job_keys"] = job.name, keys
        self._save()  # persisted before anything else: a later run polls this job, never re-pays it
        log.info("%s: submitted %s with %d requests (round %d)", self.files.name, job.name, len(keys),
                 st["round"])

    def run(self, deadline: float) -> bool:
        """Drive the shard until done (True) or until `deadline` with a job still running (False)."""
        while True:
            groups = self._open_groups()
            bad = [g for k, g in groups.items() if k.startswith("bad:")]
            if bad:
                j = Journal(self.files.failed)
                for g in bad:
                    j.write(result_row(g[0], Outcome(None, reason="bad_input", error=g[0].error), self.key))
                j.close()
                continue
            if self.state["job"]:
                job = _call(self.client.batches.get, self.cfg, f"{self.files.name}: poll", self.secrets,
                            name=self.state["job"])
                state = _state_name(job)
                if state in _RUNNING:
                    if time.monotonic() >= deadline:
                        log.warning("%s: %s still %s; re-run to collect", self.files.name, self.state["job"],
                                    state)
                        return False
                    time.sleep(self.cfg.poll_interval_s)
                    continue
                self._collect(job, groups)
                self.state["job"], self.state["job_keys"] = None, []
                self._save()
                continue
            if not groups:
                return True
            self._submit(groups)


def run_batch(cfg: LabelConfig, key: RunKey, shard_paths: list[Path], results_dir: Path,
              secrets: list[str]) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Label `shard_paths` through the Batch API; return per-shard counts and still-pending shards."""
    secrets = secrets or [api_key_from_env()]
    client = make_client(cfg, secrets[0])
    deadline = time.monotonic() + cfg.wait_s
    stats: dict[str, dict[str, int]] = {}
    pending: list[str] = []
    for path in shard_paths:
        files = ShardFiles.of(path, results_dir)
        shard = BatchShard(cfg, key, files, client, secrets)
        if shard.run(deadline):
            stats[path.name] = finalize(files, [s.id for s in shard.samples], key)
            stats[path.name]["batch_rounds"] = shard.state["round"]
            files.batch.unlink(missing_ok=True)
        else:
            pending.append(files.name)
    return stats, pending
