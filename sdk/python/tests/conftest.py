"""SDK test fixtures: tiny random-weight GGUF models written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import gguf_factory
from testkit.gguf_factory import TINY_KW


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> Path:
    """llama architecture, deepseek-r1 template recorded in the psyedge metadata."""
    return gguf_factory.write_model(model_dir / "tiny.gguf", template="deepseek-r1")


@pytest.fixture(scope="session")
def tiny_plain(model_dir: Path) -> Path:
    """The same weights with no psyedge metadata (a base model: the caller names the template)."""
    return gguf_factory.write_model(model_dir / "plain.gguf")


@pytest.fixture(scope="session")
def tiny_shared(model_dir: Path) -> Path:
    """qwen2 architecture whose vocabulary spells `suicidal`/`self_harm` from a shared `s`."""
    shape = gguf_factory.Shape(arch="qwen2")
    return gguf_factory.write_model(model_dir / "shared.gguf", shape, template="chatml", value_merges=False,
                                    seed=3)


@pytest.fixture(scope="session")
def screener(tiny_model: Path):  # type: ignore[no-untyped-def]
    from psyedge import Screener

    s = Screener(tiny_model, **TINY_KW)
    yield s
    s.close()
