"""The fixed PsySUICIDE held-out part and the SFT records built around it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.risk_metrics import AMBIGUOUS, load_psysuicide
from training.psysuicide_sft import (
    HOLDOUT_FILE,
    HoldoutError,
    build_records,
    choose_holdout,
    read_holdout,
    write_holdout,
    write_holdout_rows,
)

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def valid(real_data: Path) -> Path:
    return real_data / "psysuicide" / "valid.json"


def test_the_recorded_holdout_is_the_rule_applied_to_this_data(valid: Path) -> None:
    record = json.loads(HOLDOUT_FILE.read_text("utf-8"))
    rows = load_psysuicide(valid)
    assert record["idx"] == choose_holdout(rows)
    held = read_holdout(valid)
    n_held = sum(r.idx in held for r in rows)
    assert n_held == record["held_out_rows"] and n_held / len(rows) >= 0.30
    for stratum, counts in record["per_stratum_rows"].items():
        total = sum(counts.values())
        if stratum.startswith("real/") and total >= 10:
            assert 0.25 <= counts.get("held_out", 0) / total <= 0.5, (stratum, counts)
    real_suicidal = record["per_stratum_rows"]["real/suicidal"]
    assert real_suicidal["held_out"] >= 100 and real_suicidal["available"] >= 200


def test_no_record_comes_from_a_held_out_idx(valid: Path) -> None:
    rows = load_psysuicide(valid)
    held = read_holdout(valid)
    records, left_out = build_records(rows, held)
    assert not {r["idx"] for r in records} & held
    assert len(records) + sum(left_out.values()) == len(rows)
    assert left_out["ambiguous"] == sum(r.gold == AMBIGUOUS and r.idx not in held for r in rows)
    gold = {f"psysuicide-{r.row}": r.gold for r in rows}
    assert all(json.loads(r["output"])["risk_flag"] == gold[r["id"]] for r in records)


def test_the_holdout_is_never_redrawn_nor_read_against_other_data(valid: Path,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(HoldoutError, match="fixed once drawn"):
        write_holdout(valid, HOLDOUT_FILE)
    other = tmp_path / "valid.json"
    shutil.copy(valid, other)
    with other.open("a", encoding="utf-8") as fh:
        fh.write("\n")
    with pytest.raises(HoldoutError, match="sha256 differs"):
        read_holdout(other)


def test_holdout_rows_file_is_exactly_the_held_out_rows(valid: Path, tmp_path: Path) -> None:
    out = tmp_path / "holdout.json"
    summary = write_holdout_rows(valid, out)
    held = read_holdout(valid)
    written = load_psysuicide(out)
    expected = [r for r in load_psysuicide(valid) if r.idx in held]
    assert summary["held_out_rows"] == len(written) == len(expected) > 0
    def key(rows: list) -> list:
        return [(r.idx, r.text, r.labels) for r in rows]

    assert key(written) == key(expected)
