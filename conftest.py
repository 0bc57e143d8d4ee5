"""Shared pytest settings: where the real data lives (one setting: env PSYEDGE_DATA).

Outside CI a test that needs the real data skips with the reason; in CI (CI=true) the data's
absence fails the test instead, so a CI run can never go green without having read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def real_data_dir() -> Path:
    """`$PSYEDGE_DATA`, default `../shared/data` beside the checkout."""
    return Path(os.environ.get("PSYEDGE_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real data folder, or a skip (a failure in CI) naming what is missing."""
    path = real_data_dir()
    if not (path / "cpsycoun").is_dir():
        msg = f"real data not found at {path} (set PSYEDGE_DATA to the folder with cpsycoun/, psyqa/, psysuicide/)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI requires it", pytrace=False)
        pytest.skip(msg)
    return path
