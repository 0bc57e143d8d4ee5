"""Failed runs fail: above `max_failed_share` the run exits 4 after writing everything it got.

Also: labels are never deleted by a rebuilt input; they are retired and reused by prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import label
from psyedge.prompt import instruction_and_transcript
from testkit.fake_gemini import FakeGemini, prompt_key
from testkit.label_builders import read_jsonl, write_config, write_shards


def _run(data: Path, cfg: Path, *extra: str) -> int:
    return label.main(
        ["--provider", "gemini", "--data-dir", str(data), "--config", str(cfg), *extra]
    )


def test_failures_above_the_threshold_exit_4_and_keep_results(
    tmp_path: Path, fake: FakeGemini, gemini_env: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = write_shards(tmp_path, shards=2, per_shard=10)
    bad = set(ids[::4])  # 5 of 20 (25%) always answer an unknown risk_flag
    first_id_of = {}
    fake.faults = lambda key, n, reask: "unknown_enum" if first_id_of.get(key) in bad else None
    for shard in sorted((tmp_path / "labeling").glob("input_part_*.jsonl")):
        for line in shard.read_text("utf-8").splitlines():
            rec = json.loads(line)
            first_id_of[prompt_key(instruction_and_transcript(rec["conversation"]))] = rec["id"]
    cfg = write_config(tmp_path / "c.yaml", max_failed_share=0.05)
    assert _run(tmp_path, cfg) == label.EXIT_FAILED
    err = capsys.readouterr().err
    assert "failed 5 of 20 (25.0%; max_failed_share 5%), by reason: invalid_reply 5" in err
    res = tmp_path / "labeling/results"
    assert {r["id"] for r in read_jsonl(res / "dataset.jsonl")} == set(ids) - bad
    assert {r["id"] for r in read_jsonl(res / "failed.jsonl")} == bad
    assert json.loads((res / "cost.json").read_text())["requests"] > 0
    # A re-run sends only the failed prompts (3 requests each: the ask and two re-asks).
    sent = sum(fake.stats.requests.values())
    assert _run(tmp_path, cfg) == label.EXIT_FAILED
    assert sum(fake.stats.requests.values()) - sent == 3 * len(bad)
    # Under the threshold the same run succeeds.
    assert (
        _run(tmp_path, write_config(tmp_path / "c2.yaml", max_failed_share=0.25)) == label.EXIT_OK
    )


def test_every_sample_failed_is_an_error(
    tmp_path: Path, fake: FakeGemini, gemini_env: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.faults = lambda key, n, reask: "503"
    write_shards(tmp_path, shards=1, per_shard=3)
    assert (
        _run(tmp_path, write_config(tmp_path / "c.yaml", max_failed_share=0.05))
        == label.EXIT_FAILED
    )
    assert "by reason: transient_errors 3" in capsys.readouterr().err
    assert len(read_jsonl(tmp_path / "labeling/results/failed.jsonl")) == 3


def test_a_rebuilt_input_retires_labels_and_reuses_them(
    tmp_path: Path, fake: FakeGemini, gemini_env: dict
) -> None:
    """Input A labeled, input B (other records) labeled, A again: A's labels come back unsent."""
    cfg = write_config(tmp_path / "c.yaml")
    lab = tmp_path / "labeling"
    a = write_shards(tmp_path, shards=2, per_shard=4)
    saved = {p.name: p.read_text("utf-8") for p in lab.glob("input_part_*.jsonl")}
    assert _run(tmp_path, cfg) == 0
    assert sum(fake.stats.requests.values()) == 8
    for p in lab.glob("input_part_*.jsonl"):
        p.unlink()
    (lab / "input_part_0000.jsonl").write_text(
        saved["input_part_0001.jsonl"].replace('"t1-', '"b1-'), encoding="utf-8"
    )  # same texts, new ids
    assert _run(tmp_path, cfg) == 0
    assert sum(fake.stats.requests.values()) == 8, "a known prompt was sent again"
    res = lab / "results"
    retired = read_jsonl(res / "input_part_0000.retired.jsonl")
    assert sorted(r["id"] for r in retired) == a[:4]
    for p in lab.glob("input_part_*.jsonl"):
        p.unlink()
    for name, text in saved.items():
        (lab / name).write_text(text, encoding="utf-8")
    assert _run(tmp_path, cfg) == 0
    assert sum(fake.stats.requests.values()) == 8
    assert sorted(r["id"] for r in read_jsonl(res / "dataset.jsonl")) == sorted(a)
