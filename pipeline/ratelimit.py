"""Async rate limits for the labeler: requests per minute and tokens per minute, plus server pauses.

Why this shape:
- requests are *spaced* (one every 60/rpm seconds, GCRA-style) rather than sent in a burst at
  the start of each minute: the service's per-minute window then never sees more than rpm,
  and throughput still converges on rpm (the benchmark checks >= 90%);
- tokens use a bucket that holds one minute of `tpm` and refills continuously; a request
  reserves its estimated tokens up front and `settle` corrects the bucket with the real usage;
- a 429 with `retryDelay` means the quota is spent for everyone: `pause(seconds)` holds every
  caller, not just the one that got the 429.
Time comes from `loop.time()` (monotonic) so tests can reason about it.
"""

from __future__ import annotations

import asyncio

#: Share of an interval a late request may borrow from the schedule (absorbs timer overshoot).
SLACK = 0.1


class RateLimiter:
    """`await acquire(tokens)` before each request; 0 for rpm or tpm means no limit."""

    def __init__(self, rpm: float = 0, tpm: float = 0) -> None:
        self.interval = 60.0 / rpm if rpm > 0 else 0.0
        self.tpm = float(tpm)
        self._next = 0.0            # earliest start of the next request
        self._tokens = float(tpm)   # bucket content; starts full (one minute's allowance)
        self._stamp: float | None = None
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        if self._stamp is not None and self.tpm:
            self._tokens = min(self.tpm, self._tokens + (now - self._stamp) * self.tpm / 60.0)
        self._stamp = now

    async def acquire(self, tokens: int = 0) -> None:
        """Wait until a request of about `tokens` tokens may start, then reserve it."""
        loop = asyncio.get_running_loop()
        async with self._lock:  # one waiter at a time keeps the order fair (first come, first sent)
            while True:
                now = loop.time()
                wait = max(self._paused_until - now, self._next - now, 0.0)
                if self.tpm:
                    self._refill(now)
                    # a request larger than the bucket waits for a full one
                    need = min(float(tokens), self.tpm)
                    if self._tokens < need:
                        wait = max(wait, (need - self._tokens) * 60.0 / self.tpm)
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            start = loop.time()
            # Theoretical arrival time: a late wake-up (sleep overshoot, a few ms) does not push
            # the schedule back, up to SLACK of an interval, so the achieved rate stays at rpm;
            # after an idle spell the schedule restarts from now (no burst).
            if self.interval:
                self._next = max(self._next, start - SLACK * self.interval) + self.interval
            if self.tpm:
                self._tokens -= min(float(tokens), self.tpm)

    def settle(self, reserved: int, used: int) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        if self.tpm:
            self._tokens = min(self.tpm, self._tokens + reserved - used)

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (a server said the quota is spent)."""
        loop = asyncio.get_running_loop()
        self._paused_until = max(self._paused_until, loop.time() + seconds)
