"""Fixtures of the labeling tests: a fake Gemini server on loopback and the env that points at it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from testkit.fake_gemini import FakeGemini


@pytest.fixture()
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def gemini_env(fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL for the fake (and no stray GOOGLE_API_KEY)."""
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", fake.api_key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
    return dict(os.environ)
