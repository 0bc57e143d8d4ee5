"""The footprint benchmark picks real median dialogues and measures each in a fresh process."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.footprint import footprint, markdown, median_dialogues
from pipeline.student import select


def test_the_chosen_dialogues_are_students_around_the_median(real_data: Path) -> None:
    convs, info = median_dialogues(real_data / "cpsycoun" / "CPsyCounD", k=5)
    assert len(convs) == 5 and info["students"] > 1000  # the student filter keeps ~40% of 3,084
    sizes = [c["chars"] for c in info["chosen"]]
    assert sizes == sorted(sizes) and sizes[0] <= info["median_chars"] <= sizes[-1]
    for conv in convs:
        assert select({"conversation": conv, "meta": {}})[0] is None


@pytest.mark.slow
def test_footprint_of_the_release_gguf(real_data: Path, gemma_release: Path) -> None:
    r = footprint(gemma_release, real_data / "cpsycoun" / "CPsyCounD", threads=2, k=3,
                  template="raw")
    assert r["file_bytes"] == gemma_release.stat().st_size
    assert r["peak_rss_bytes"] > 0 and len(r["assess_ms"]) == 3 == len(r["prompt_tokens"])
    assert min(r["assess_ms"]) <= r["p50_assess_ms"] <= r["max_assess_ms"]
    assert min(r["prompt_tokens"]) > 100  # a real dialogue, not an empty prompt
    assert "p50 assess" in markdown(r)
