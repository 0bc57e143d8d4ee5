"""Fixtures for the training tests: one tiny base model per session, synthetic rule data."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base model of training.tiny, built once (about 5 s)."""
    from training.tiny import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("tiny") / "tiny-base", seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_base: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base)
