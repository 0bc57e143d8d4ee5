"""The configured run through make: configure once, teachers side by side, guarded rebuilds, and a
labeling run that fails stopping the chain. Small inputs cut from the shipped samples; the paid
teacher is the real `google-genai` client against the fake Gemini server on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from make_builders import ROOT, FakeGemini, Make, fast_label_config, jsonl, teacher_dir

from pipeline import guard
from pipeline.io import file_sha256

SAMPLES = ROOT / "pipeline" / "samples"


def _inputs(dst: Path, cases: tuple[int, ...]) -> dict[str, str]:
    """PsyQA sample, a few CPsyCounD cases, one CPsyCounE topic: a data set of a few records."""
    cpsyd = dst / "CPsyCounD"
    cpsyd.mkdir(parents=True)
    for n in cases:
        shutil.copy(SAMPLES / "CPsyCounD" / f"case_synth_{n}.txt", cpsyd)
    cpsye = dst / "CPsyCounE"
    shutil.copytree(SAMPLES / "CPsyCounE" / "Emotion&Stress", cpsye / "Emotion&Stress")
    shutil.copy(SAMPLES / "psyqa_sample.json", dst / "psyqa.json")
    return {"PSYQA": str(dst / "psyqa.json"), "CPSYCOUND": str(cpsyd), "CPSYCOUNE": str(cpsye)}


@pytest.fixture()
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini()
    server.start()
    yield server
    server.stop()


def _make(tmp: Path, fake: FakeGemini, **settings: str) -> Make:
    make = Make(tmp, GEMINI_API_KEY=fake.api_key, GOOGLE_GEMINI_BASE_URL=fake.url)
    make.folders(LABEL_CONFIG=str(fast_label_config(tmp / "label_config.yaml")), **settings)
    return make


def _sent(fake: FakeGemini) -> int:
    return sum(fake.stats.requests.values())


def test_configure_config_and_command_line_overrides(tmp_path: Path, fake: FakeGemini) -> None:
    make = _make(tmp_path, fake, PROVIDER="gemini", MODEL="gemini-2.5-flash")
    config = tmp_path / "config.mk"
    assert (
        "PROVIDER := gemini" in config.read_text()
        and "MODEL := gemini-2.5-flash" in config.read_text()
    )
    shown = make.ok("config").stdout
    assert "PROVIDER     = gemini" in shown and f"({config})" in shown
    assert "PSYQA        = pipeline/samples/psyqa_sample.json" in shown and "(default)" in shown
    assert "gemini__gemini-2.5-flash__prompt-" in shown
    # A provider on the command line wins for this call and brings its own model.
    once = make.ok("config", "PROVIDER=rules").stdout
    assert (
        "PROVIDER     = rules" in once
        and "(command line)" in once
        and "rules__rules-v1__prompt-" in once
    )
    assert "gemini-2.5-flash" not in once
    assert "PROVIDER := gemini" in config.read_text(), "a command-line value must not be remembered"
    before = config.read_text()
    bad = make.run("configure", "PROVDER=gemini")
    assert bad.returncode != 0 and "PROVDER is not a setting make configure knows" in bad.stderr
    missing = make.run("configure", "PSYQA=/no/such/psyqa.json")
    assert missing.returncode != 0 and "PSYQA=/no/such/psyqa.json does not exist" in missing.stderr
    assert config.read_text() == before
    make.ok("configure", "MODEL=")
    assert "MODEL :=" not in config.read_text() and "PROVIDER := gemini" in config.read_text()


def test_changed_input_with_paid_labels_stops_until_confirmed(
    tmp_path: Path, fake: FakeGemini
) -> None:
    a = _inputs(tmp_path / "a", (1, 3, 5, 6))
    b = _inputs(tmp_path / "b", (5, 6, 9, 12))
    make = _make(tmp_path, fake, PROVIDER="gemini", **a)
    make.ok("label")
    labeled = _sent(fake)
    gemini = teacher_dir(tmp_path / "data", "gemini", tmp_path / "label_config.yaml")
    a_ids = {r["id"] for r in jsonl(gemini / "dataset.jsonl")}
    assert labeled and a_ids
    unified = tmp_path / "data" / "processed" / "unified_min.jsonl"
    built = unified.stat().st_mtime_ns

    stopped = make.run("label", f"CPSYCOUND={b['CPSYCOUND']}")
    assert stopped.returncode != 0
    assert "REBUILD=1" in stopped.stderr and f"CPSYCOUND={a['CPSYCOUND']}" in stopped.stderr
    assert (
        str(gemini) in stopped.stderr and "labels of the current data by gemini" in stopped.stderr
    )
    assert unified.stat().st_mtime_ns == built and _sent(fake) == labeled

    make.ok("label", f"CPSYCOUND={b['CPSYCOUND']}", "REBUILD=1")
    b_ids = {r["id"] for r in jsonl(gemini / "dataset.jsonl")}
    assert b_ids != a_ids and _sent(fake) > labeled
    kept = {
        r["id"]
        for p in gemini.glob("input_part_*.jsonl")
        if ".failed" not in p.name
        for r in jsonl(p)
    }
    assert a_ids <= kept, "labels of the old input left the teacher's folder"

    # Back to the configured input: confirmed again, and every label comes from disk.
    sent = _sent(fake)
    assert make.run("label").returncode != 0
    make.ok("label", "REBUILD=1")
    assert {r["id"] for r in jsonl(gemini / "dataset.jsonl")} == a_ids and _sent(fake) == sent


def test_a_data_variable_left_off_a_paid_labeling_call_stops_it(tmp_path: Path,
                                                                 fake: FakeGemini) -> None:
    """The issue's step 2: data built from real inputs, then `make label` without them."""
    a = _inputs(tmp_path / "a", (1, 3, 5))
    make = _make(tmp_path, fake, PROVIDER="gemini")
    make.ok("data", *(f"{k}={v}" for k, v in a.items()))
    stopped = make.run("label")
    assert stopped.returncode != 0 and "labels the new data with the paid teacher gemini" in stopped.stderr
    assert _sent(fake) == 0
    make.ok("data")  # rebuilding the data alone is allowed
    make.ok("label")
    assert _sent(fake) > 0


def test_a_failed_labeling_run_stops_make_and_keeps_its_results(
    tmp_path: Path, fake: FakeGemini
) -> None:
    make = _make(tmp_path, fake, PROVIDER="gemini", **_inputs(tmp_path / "in", (1, 3)))
    fake.faults = lambda key, n, reask: "503"
    failed = make.run("sft")
    assert failed.returncode != 0 and "by reason: transient_errors" in failed.stderr
    gemini = teacher_dir(tmp_path / "data", "gemini", tmp_path / "label_config.yaml")
    fails = jsonl(gemini / "failed.jsonl")
    assert fails and {f["reason"] for f in fails} == {"transient_errors"}
    assert not (tmp_path / "data" / "datasets" / "sft_student_mental.jsonl").exists()
    fake.faults = None
    make.ok("sft")
    assert len(jsonl(gemini / "dataset.jsonl")) == len(fails)
    assert not jsonl(gemini / "failed.jsonl")


def test_a_new_prompt_for_a_paid_teacher_asks_first(tmp_path: Path) -> None:
    root = tmp_path / "results"
    old = root / "gemini__gemini-2.5-flash__prompt-00000000000000aa__contract-1.0"
    new = root / "gemini__gemini-2.5-flash__prompt-00000000000000bb__contract-1.0"
    old.mkdir(parents=True)
    new.mkdir()
    (old / "input_part_0000.jsonl").write_text(json.dumps({"id": "x1"}) + "\n")
    with pytest.raises(guard.Stop, match="prompt 00000000000000aa"):
        guard.check_label(root, new.name, rebuild=False)
    guard.check_label(root, new.name, rebuild=True)
    (new / "input_part_0000.jsonl").write_text(json.dumps({"id": "x1"}) + "\n")
    guard.check_label(root, new.name, rebuild=False)  # labels under the new prompt: a resume


def test_a_real_profile_adapter_is_not_retrained_silently(tmp_path: Path) -> None:
    run, sft = tmp_path / "a40", tmp_path / "sft.jsonl"
    sft.write_text('{"id": "a"}\n')
    (run / "adapter").mkdir(parents=True)
    (run / guard.ADAPTER_WEIGHTS).write_bytes(b"weights")
    (run / guard.TRAIN_MANIFEST).write_text(
        json.dumps({"profile": "a40", "sft_sha256": file_sha256(sft)})
    )
    assert guard.check_adapter(run, "a40", sft, [str(sft)], rebuild=False) == guard.EXIT_UP_TO_DATE
    with pytest.raises(guard.Stop, match="training/train.py"):
        guard.check_adapter(run, "a40", sft, ["training/train.py"], rebuild=False)
    sft.write_text('{"id": "b"}\n')
    with pytest.raises(guard.Stop, match="REBUILD=1"):
        guard.check_adapter(run, "a40", sft, [str(sft)], rebuild=False)
    assert guard.check_adapter(run, "a40", sft, [str(sft)], rebuild=True) == guard.EXIT_GO
    assert guard.check_adapter(run, "tiny", sft, [str(sft)], rebuild=False) == guard.EXIT_GO


def test_labels_of_the_shared_layout_are_adopted_by_their_teacher(tmp_path: Path) -> None:
    """Journals from before per-teacher folders: each teacher takes its own rows, once."""
    root = tmp_path / "results"
    me = root / "gemini__gemini-2.5-flash__prompt-00000000000000aa__contract-1.0"
    me.mkdir(parents=True)
    stamp = {"model": "gemini-2.5-flash", "prompt_version": "00000000000000aa", "contract_version": "1.0"}
    rows = [{"id": "a", "provider": "gemini", **stamp}, {"id": "b", "provider": "rules", **stamp}]
    (root / "input_part_0000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    guard.check_label(root, me.name, rebuild=False)
    adopted = me / "input_part_0000.shared.retired.jsonl"
    assert [r["id"] for r in jsonl(adopted)] == ["a"]
    guard.check_label(root, me.name, rebuild=False)
    assert [r["id"] for r in jsonl(adopted)] == ["a"]
    assert (root / "input_part_0000.jsonl").is_file(), "the shared journal is left as it was"
