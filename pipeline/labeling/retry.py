"""The one backoff formula, for interactive requests and Batch API calls alike.

Exponential backoff with equal jitter: attempt n waits between half and all of
min(backoff_max_s, backoff_initial_s * 2**n), so retries spread out instead of arriving in step;
a server's own hint (Gemini `RetryInfo.retryDelay`, HTTP `Retry-After`) wins when it is longer.
"""

from __future__ import annotations

import random

from pipeline.labeling.config import LabelConfig


def backoff(cfg: LabelConfig, attempt: int, hint: float | None, rng: random.Random) -> float:
    """Seconds to wait before retry `attempt` (0-based) of a transient error."""
    cap = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2**attempt)
    return max(cap / 2 + rng.uniform(0, cap / 2), hint or 0.0)
