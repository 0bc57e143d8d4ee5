"""A fake Gemini API on 127.0.0.1 for the labeling tests: real HTTP, real `google-genai` client.

Serves what google-genai 3.6 calls for our use (read from its source, `models.py`/`batches.py`):
- `POST /{v1,v1beta}/models/{model}:generateContent`
- `POST /{v1,v1beta}/models/{model}:batchGenerateContent` (inline requests) -> a batch resource
- `GET  /{v1,v1beta}/batches/{id}` -> PENDING/RUNNING, then SUCCEEDED with inlined responses
It checks the `x-goog-api-key` header, answers deterministic labels derived from the prompt, and
injects faults chosen by a plan: HTTP 429 with `RetryInfo.retryDelay`, 500, 503, slow replies,
truncated JSON with `MAX_TOKENS`, an out-of-range integer and an unknown enum. With
`block_risky` it refuses the dialogues in which the SDK lexicon finds risk in the student's
lines, the three ways Gemini does (`BLOCK_KINDS`), and answers `risk_flag: none` for the rest:
the teacher the labeling safeguards are built against. It counts every
request per prompt and sums the `usageMetadata` it returned, so tests can compare the labeler's
bookkeeping with what the "service" billed. Also serves an OpenAI-style `/v1/chat/completions`
for the `openai` provider.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Fault kinds the plan may choose (HTTP-level first, then invalid answers).
HTTP_FAULTS = ("429", "500", "503", "slow")
ANSWER_FAULTS = ("truncated", "out_of_range", "unknown_enum")
#: Evidence mode only: a quote the student never wrote (must be re-asked).
EVIDENCE_FAULTS = ("fake_quote",)
FAULTS = HTTP_FAULTS + ANSWER_FAULTS

#: How a refusal looks: the prompt blocked (`promptFeedback.blockReason`, no candidate), a
#: candidate stopped for SAFETY with no text, or an empty text with finishReason STOP.
BLOCK_KINDS = ("prompt", "finish", "empty")

#: A fault plan: (prompt key, how many requests this prompt had before, is a re-ask) -> fault or None.
FaultPlan = Callable[[str, int, bool], "str | None"]

_GEN = re.compile(r"^/(v1|v1beta)/models/([^/:]+):(generateContent|batchGenerateContent)$")
_BATCH = re.compile(r"^/(v1|v1beta)/batches/([^/:?]+)$")


def _h(*parts: Any) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def prompt_key(prompt: str) -> str:
    """The key the server files a request under: a hash of the first user message (the SDK prompt)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def expected_labels(key: str) -> dict[str, Any]:
    """The labels the fake model gives a prompt (deterministic, varied)."""
    h = _h("labels", key)
    risk = ("none", "none", "none", "suicidal", "self_harm", "violence")[h % 6]
    return {"depression_level": (h >> 3) % 4, "anxiety_level": (h >> 5) % 4, "risk_flag": risk,
            "student_distress_score": (h >> 7) % 10}


def random_faults(rate: float = 0.2, seed: int = 0, always_bad_every: int = 0,
                  kinds: tuple[str, ...] = FAULTS) -> FaultPlan:
    """Each request is faulty with probability `rate` (hash of prompt, request number and seed).

    `always_bad_every=k`: one prompt in k gets an invalid answer on every request, so it must
    end in failed.jsonl after the re-asks.
    """
    def plan(key: str, n: int, reask: bool) -> str | None:
        if always_bad_every and _h("bad", seed, key) % always_bad_every == 0:
            return "unknown_enum"
        h = _h("fault", seed, key, n)
        if h % 10_000 < rate * 10_000:
            return kinds[(h >> 16) % len(kinds)]
        return None
    return plan


@dataclass
class Stats:
    """What the server saw and billed."""

    requests: Counter[str] = field(default_factory=Counter)          # prompt key -> requests (all)
    first_requests: Counter[str] = field(default_factory=Counter)    # prompt key -> non-re-ask requests
    faults: Counter[str] = field(default_factory=Counter)
    usage: Counter[str] = field(default_factory=Counter)             # delivered usageMetadata sums
    usage_undelivered: Counter[str] = field(default_factory=Counter)  # slow replies the client gave up on
    api_keys: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    batches_created: int = 0
    times: list[float] = field(default_factory=list)                 # arrival time of each generateContent
    blocked: Counter[str] = field(default_factory=Counter)           # prompt key -> refusals sent


class FakeGemini:
    """Start with `start()` (returns the base URL), stop with `stop()`; or use as a context manager."""

    def __init__(self, api_key: str = "test-key-123456", latency: float = 0.0,
                 faults: FaultPlan | None = None,
                 slow_s: float = 1.0, retry_delay: str = "0.05s", batch_polls: int = 1,
                 echo_key_in_errors: bool = True, block_risky: tuple[str, ...] = ()) -> None:
        self.api_key = api_key
        self.latency = latency
        self.faults = faults
        self.slow_s = slow_s
        self.retry_delay = retry_delay
        self.batch_polls = batch_polls      # GETs answered RUNNING before a job succeeds
        self.echo_key_in_errors = echo_key_in_errors
        self.block_risky = block_risky      # refusal kinds for risky dialogues, chosen by hash
        self.stats = Stats()
        self.lock = threading.RLock()  # re-entered: the batch path answers under it
        self.jobs: dict[str, dict[str, Any]] = {}
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeGemini:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- answering -----------------------------------------------------------------------------
    def _choose(self, key: str, reask: bool) -> tuple[int, str | None]:
        with self.lock:
            return self._count(key, reask)

    def _count(self, key: str, reask: bool) -> tuple[int, str | None]:
        """Count one request for `key` and draw its fault (the caller holds `self.lock`)."""
        n = self.stats.requests[key]
        self.stats.requests[key] += 1
        if not reask:
            self.stats.first_requests[key] += 1
        fault = self.faults(key, n, reask) if self.faults else None
        if fault:
            self.stats.faults[fault] += 1
        return n, fault

    def answer(self, contents: list[dict[str, Any]], model: str, fault: str | None,
               key: str) -> dict[str, Any]:
        """A generateContent response body for `contents` (fault applied to the answer)."""
        labels = expected_labels(key)
        if self.block_risky:
            kind = self.block_risky[_h("block", key) % len(self.block_risky)]
            if student_risk(contents[0]["parts"][0]["text"]) != "none":
                with self.lock:
                    self.stats.blocked[key] += 1
                return refusal(kind, contents)
            labels["risk_flag"] = "none"
        if fault == "out_of_range":
            labels["depression_level"] = 7
        elif fault == "unknown_enum":
            labels["risk_flag"] = "maybe"
        prompt = contents[0]["parts"][0]["text"]
        if EVIDENCE_MARK in prompt:  # the evidence mode: quotes of the student's lines
            quotes = [line[:12] for line in student_lines(prompt)][:2]
            labels["evidence"] = ["我从来没有说过这句话"] if fault == "fake_quote" else quotes
        text = json.dumps(labels, ensure_ascii=False, separators=(",", ":"))
        finish = "STOP"
        if fault == "truncated":
            text, finish = text[: len(text) // 2], "MAX_TOKENS"
        prompt_chars = sum(len(p.get("text", "")) for c in contents for p in c.get("parts", []))
        usage = {"promptTokenCount": prompt_chars // 2 + 1, "candidatesTokenCount": len(text) // 3 + 1,
                 "thoughtsTokenCount": 2}
        usage["totalTokenCount"] = sum(usage.values())
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": finish,
                                "index": 0}], "usageMetadata": usage, "modelVersion": model}

    def bill(self, body: dict[str, Any], delivered: bool = True) -> None:
        u = body.get("usageMetadata", {})
        target = self.stats.usage if delivered else self.stats.usage_undelivered
        with self.lock:
            target["input"] += u.get("promptTokenCount", 0)
            target["output"] += u.get("candidatesTokenCount", 0)
            target["thinking"] += u.get("thoughtsTokenCount", 0)
            target["calls"] += 1

    def error_body(self, code: int, status: str, message: str) -> dict[str, Any]:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": self.retry_delay}] \
            if code == 429 else []
        return {"error": {"code": code, "message": message, "status": status, "details": details}}


#: How the fake tells an evidence-mode prompt (the SDK's request for quotes names the field).
EVIDENCE_MARK = '"evidence"'


def student_lines(prompt: str) -> list[str]:
    """The student's turns in the transcript of an SDK prompt."""
    from psyedge.prompt import ROLE_NAMES

    mark = ROLE_NAMES["user"] + "："
    return [line[len(mark):] for line in prompt.splitlines() if line.startswith(mark)]


def student_risk(prompt: str) -> str:
    """The lexicon's flag for the student's lines of an SDK prompt (the instruction itself names
    the risk classes, so only transcript lines of the student count)."""
    from psyedge.contract import most_severe
    from psyedge.lexicon import lexicon_risk

    return most_severe({lexicon_risk(line) for line in student_lines(prompt)})


_RATINGS = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]


def refusal(kind: str, contents: list[dict[str, Any]]) -> dict[str, Any]:
    """A generateContent body refusing the prompt in one of the `BLOCK_KINDS`."""
    prompt_chars = sum(len(p.get("text", "")) for c in contents for p in c.get("parts", []))
    usage = {"promptTokenCount": prompt_chars // 2 + 1, "totalTokenCount": prompt_chars // 2 + 1}
    if kind == "prompt":
        return {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _RATINGS},
                "usageMetadata": usage}
    parts = [{"text": ""}] if kind == "empty" else []
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts},
                            "finishReason": "STOP" if kind == "empty" else "SAFETY", "index": 0}
    if kind == "finish":
        cand["safetyRatings"] = _RATINGS
    return {"candidates": [cand], "usageMetadata": usage}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeGemini

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _auth(self) -> bool:
        fake = self.server_fake
        key = self.headers.get("x-goog-api-key", "")
        with fake.lock:
            fake.stats.api_keys.add(key)
        if key != fake.api_key:
            msg = "API key not valid" + (f": {key}" if fake.echo_key_in_errors else "")
            self._send(400, {"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT"}})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        fake = self.server_fake
        with fake.lock:
            fake.stats.paths.append(self.path)
        if not self._auth():
            return
        m = _BATCH.match(self.path.split("?")[0])
        if not m or m.group(2) not in fake.jobs:
            self._send(404,
                       {"error": {"code": 404, "message": f"no such batch {self.path}",
                                  "status": "NOT_FOUND"}})
            return
        job = fake.jobs[m.group(2)]
        with fake.lock:
            job["polls"] += 1
            if job["polls"] > fake.batch_polls and job["state"] != "BATCH_STATE_SUCCEEDED":
                job["state"] = "BATCH_STATE_SUCCEEDED"
                job["output"] = _run_batch(fake, job)
            elif job["state"] == "BATCH_STATE_PENDING":
                job["state"] = "BATCH_STATE_RUNNING"
        self._send(200, _batch_resource(job))

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server_fake
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        with fake.lock:
            fake.stats.paths.append(self.path)
            fake.stats.bodies.append(body)
        if self.path.endswith("/chat/completions"):  # OpenAI style: bearer token, any value
            with fake.lock:
                fake.stats.api_keys.add(self.headers.get("Authorization", ""))
            self._chat(body)
            return
        if not self._auth():
            return
        m = _GEN.match(self.path.split("?")[0])
        if m and m.group(3) == "batchGenerateContent":
            with fake.lock:
                fake.stats.batches_created += 1
                job_id = f"job{fake.stats.batches_created:04d}"
                reqs = body["batch"]["inputConfig"]["requests"]["requests"]
                fake.jobs[job_id] = {"id": job_id, "model": m.group(2), "requests": reqs, "polls": 0,
                                     "state": "BATCH_STATE_PENDING",
                                     "display": body["batch"].get("displayName")}
            self._send(200, _batch_resource(fake.jobs[job_id]))
            return
        if m and m.group(3) == "generateContent":
            self._generate(body, m.group(2))
            return
        self._send(404,
                   {"error": {"code": 404, "message": f"unknown path {self.path}", "status": "NOT_FOUND"}})

    def _generate(self, body: dict[str, Any], model: str) -> None:
        fake = self.server_fake
        with fake.lock:
            fake.stats.times.append(time.monotonic())
        contents = body.get("contents", [])
        key = prompt_key(contents[0]["parts"][0]["text"])
        _, fault = fake._choose(key, reask=len(contents) > 1)
        if fake.latency:
            time.sleep(fake.latency)
        if fault in ("429", "500", "503"):
            status = {"429": "RESOURCE_EXHAUSTED", "500": "INTERNAL", "503": "UNAVAILABLE"}[fault]
            self._send(int(fault), fake.error_body(int(fault), status, f"injected {fault}"))
            return
        reply = fake.answer(contents, model, fault, key)
        if fault == "blocked":  # the prompt itself was blocked: no candidates, only feedback
            reply = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {
                "promptTokenCount": reply["usageMetadata"]["promptTokenCount"], "totalTokenCount": 0}}
        if fault == "slow":
            time.sleep(fake.slow_s)
            fake.bill(reply, delivered=False)
        else:
            fake.bill(reply)
        self._send(200, reply)

    def _chat(self, body: dict[str, Any]) -> None:
        fake = self.server_fake
        msgs = body.get("messages", [])
        key = prompt_key(msgs[0]["content"])
        _, fault = fake._choose(key, reask=len(msgs) > 1)
        if fake.latency:
            time.sleep(fake.latency)
        if fault in ("429", "500", "503"):
            self._send(int(fault), {"error": {"message": f"injected {fault}"}})
            return
        reply = fake.answer([{"parts": [{"text": m["content"]}]} for m in msgs], body.get("model", ""), fault,
                            key)
        u = reply["usageMetadata"]
        cand = reply["candidates"][0]
        fake.bill(reply)
        self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                              "content": cand["content"]["parts"][0]["text"]},
                                      "finish_reason": ("length" if cand["finishReason"] == "MAX_TOKENS"
                                                        else "stop")}],
                         "usage": {"prompt_tokens": u["promptTokenCount"],
                                   "completion_tokens": u["candidatesTokenCount"] + u["thoughtsTokenCount"],
                                   "completion_tokens_details":
                                       {"reasoning_tokens": u["thoughtsTokenCount"]}}})


def _run_batch(fake: FakeGemini, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer every inline request of a job; HTTP-level faults become per-row errors (called under lock)."""
    out = []
    for item in job["requests"]:
        req = item["request"]
        contents = req.get("contents", [])
        key = prompt_key(contents[0]["parts"][0]["text"])
        _, fault = fake._count(key, len(contents) > 1)
        if fault in HTTP_FAULTS:
            out.append({"error": {"code": 13, "message": f"injected row fault {fault}"},
                        "metadata": item.get("metadata")})
            continue
        reply = fake.answer(contents, job["model"], fault, key)
        u = reply["usageMetadata"]
        fake.stats.usage["input"] += u.get("promptTokenCount", 0)
        fake.stats.usage["output"] += u.get("candidatesTokenCount", 0)
        fake.stats.usage["thinking"] += u.get("thoughtsTokenCount", 0)
        fake.stats.usage["calls"] += 1
        out.append({"response": reply, "metadata": item.get("metadata")})
    return out


def _batch_resource(job: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "model": f"models/{job['model']}", "displayName": job.get("display"),
        "state": job["state"], "name": f"batches/{job['id']}"}
    if job.get("output") is not None:
        meta["output"] = {"inlinedResponses": {"inlinedResponses": job["output"]}}
    res: dict[str, Any] = {"name": f"batches/{job['id']}", "metadata": meta}
    if job["state"] == "BATCH_STATE_SUCCEEDED":
        res["done"] = True
    return res


def serve_forever(port: int = 0, **kwargs: Any) -> None:
    """`python -m testkit.fake_gemini`: run a fake server by hand (prints its URL)."""
    fake = FakeGemini(**kwargs)
    url = fake.start()
    print(url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    serve_forever()
