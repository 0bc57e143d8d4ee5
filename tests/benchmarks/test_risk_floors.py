"""Floors under today's lexicon figures on the real data: an edit that lowers recall fails here.

Today (sdk/python/LEXICON.md, `make bench-risk`): non-synthetic suicidal P 0.979 R 0.961; self_harm
P 0.727 R 1.0 (8); violence P 0.938 R 0.682 (22); synthetic suicidal P 0.857 R 0.889. The floors
sit a little below so that one relabelled row does not fail the build, and well above the issue's
acceptance line (suicidal R >= 0.90 at P >= 0.80). CPsyCoun has no risk labels, so there the
test caps how many user turns are flagged (a broad new entry shows up as a jump) and keeps a floor
(the corpus does contain ideation). Runtime about 5 s, most of it reading 3,084 CPsyCounD files.
"""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path

import pytest

from benchmarks import risk
from benchmarks.risk_metrics import load_psysuicide, score
from psyedge.lexicon import lexicon_risk

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def valid_json(real_data: Path) -> Path:
    path = real_data / "psysuicide" / "valid.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing from the real data folder", pytrace=False)
    return path


def test_gold_counts_match_the_data_readme(valid_json: Path) -> None:
    rows = load_psysuicide(valid_json)
    ns = [r for r in rows if not r.synthetic]
    counts = {g: sum(r.gold == g for r in ns) for g in ("suicidal", "self_harm", "violence", "none",
                                                        "ambiguous")}
    # README: 1,088 non-synthetic; 740 none, 267 suicidal + 17 with another flag, 22 violence, 34 ambiguous.
    # self_harm is 8 here (README says 7): one text is both 自伤行为 and 用户攻击行为
    # -> self_harm by severity.
    assert len(rows) == 1480 and len(ns) == 1088
    assert counts == {"suicidal": 284, "self_harm": 8, "violence": 22, "none": 740, "ambiguous": 34}


def test_lexicon_floors_on_non_synthetic_rows(valid_json: Path) -> None:
    ns = [r for r in load_psysuicide(valid_json) if not r.synthetic]
    m, _ = score(ns, lexicon_risk)
    assert m["suicidal"]["recall"] >= 0.95, m["suicidal"]
    assert m["suicidal"]["precision"] >= 0.96, m["suicidal"]
    assert m["self_harm"]["support"] == 8 and m["self_harm"]["recall"] >= 0.85, m["self_harm"]
    assert m["self_harm"]["precision"] >= 0.6, m["self_harm"]
    assert m["violence"]["support"] == 22 and m["violence"]["recall"] >= 0.6, m["violence"]
    assert m["violence"]["precision"] >= 0.85, m["violence"]
    assert m["none"]["recall"] >= 0.975, m["none"]  # few false alarms on unrelated text


@pytest.mark.parametrize("parity", [0, 1])
def test_lexicon_floors_on_each_idx_half(valid_json: Path, parity: int) -> None:
    half = [r for r in load_psysuicide(valid_json) if not r.synthetic and r.idx % 2 == parity]
    m, _ = score(half, lexicon_risk)
    assert m["suicidal"]["recall"] >= 0.94 and m["suicidal"]["precision"] >= 0.95, m["suicidal"]


def test_lexicon_floors_on_synthetic_rows(valid_json: Path) -> None:
    syn = [r for r in load_psysuicide(valid_json) if r.synthetic]
    m, _ = score(syn, lexicon_risk)
    assert m["suicidal"]["support"] == 27
    assert m["suicidal"]["recall"] >= 0.85 and m["suicidal"]["precision"] >= 0.8, m["suicidal"]


def test_bench_risk_meets_the_issue_in_under_a_minute(valid_json: Path, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    assert risk.main(["--data", str(valid_json), "--out", str(tmp_path)]) == 0
    wall = time.perf_counter() - t0
    assert wall < 60, f"bench-risk took {wall:.0f} s without a model"
    report = json.loads((tmp_path / "risk.json").read_text(encoding="utf-8"))
    sui = report["lexicon"]["suicidal"]
    assert sui["recall"] >= 0.90 and sui["precision"] >= 0.80  # the issue's acceptance line
    for cls, n in (("self_harm", 8), ("violence", 22)):
        assert report["lexicon"][cls]["support"] == n and report["lexicon"][cls]["recall"] is not None


def _user_turns(real_data: Path) -> tuple[list[str], list[str]]:
    d_turns = []
    for f in glob.glob(str(real_data / "cpsycoun" / "CPsyCounD" / "Data" / "case_*.txt")):
        d_turns += [p[4:] for p in Path(f).read_text("utf-8").split("\n") if p.startswith("来访者：")]
    e_turns = []
    for f in glob.glob(str(real_data / "cpsycoun" / "CPsyCounE" / "*" / "*.json")):
        e_turns += [t[4:] for t in json.loads(Path(f).read_text("utf-8")) if t.startswith("求助者：")]
    return d_turns, e_turns


def test_cpsycoun_flag_counts_stay_in_band(real_data: Path) -> None:
    d_turns, e_turns = _user_turns(real_data)
    assert len(d_turns) > 20000 and len(e_turns) > 250
    counts = {f: 0 for f in ("suicidal", "self_harm", "violence")}
    for t in d_turns:
        flag = lexicon_risk(t)
        if flag != "none":
            counts[flag] += 1
    # Today: 80 suicidal, 14 self_harm, 17 violence of 24,974 user turns.
    assert 65 <= counts["suicidal"] <= 95, counts
    assert 10 <= counts["self_harm"] <= 22, counts
    assert 10 <= counts["violence"] <= 25, counts
    assert sum(lexicon_risk(t) == "suicidal" for t in e_turns) >= 4  # 想死 / 活着很累 in Family Relationship
