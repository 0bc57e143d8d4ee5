"""README's real run, as written in README.md: each line of its command block one `make` call.

The block is read from README.md itself, so a change there changes what runs here. Stand-ins,
each the smallest that lets it run on this machine: the real data of `PSYEDGE_DATA` for
`../shared/data`; the real `google-genai` client against the fake Gemini server on 127.0.0.1
(`GOOGLE_GEMINI_BASE_URL`, its key for `GEMINI_API_KEY=...`); `make configure PROFILE=tiny
SUBMIT=local` for the A40 configure line; the test's own config file and folders, and a label
config without the paid tier's rate limits (the fake has none).

The labeling half (up to `make sft`) runs once per module; the training half continues from it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from make_builders import (
    ROOT,
    FakeGemini,
    Make,
    expected_labels,
    fast_label_config,
    jsonl,
    prompt_key,
    teacher_dir,
)

from psyedge.contract import FIELDS, canonical_json
from psyedge.prompt import instruction_and_transcript

pytestmark = pytest.mark.slow
SECTION = "## The embedded default and the real run"
A40_STAND_IN = ["PROFILE=tiny", "SUBMIT=local"]


def readme_block() -> list[str]:
    """The first bash block of README's real-run section, continuation lines joined."""
    text = (ROOT / "README.md").read_text("utf-8")
    section = text[text.index(SECTION) :]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"README.md: no ```bash block under {SECTION!r}"
    return [line for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def make_calls(
    lines: list[str], real_data: Path, api_key: str
) -> list[tuple[dict[str, str], list[str]]]:
    """(environment, make arguments) per line, with the stand-ins of the module docstring."""
    calls = []
    a40_lines = 0
    for line in lines:
        words = shlex.split(line, comments=True)
        env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = api_key if (name, value) == ("GEMINI_API_KEY", "...") else value
        assert words and words[0] == "make", f"README real-run line is not a make call: {line!r}"
        args = [w.replace("../shared/data", str(real_data)) for w in words[1:]]
        if args[:1] == ["configure"] and "PROFILE=a40" in args:
            args, a40_lines = ["configure", *A40_STAND_IN], a40_lines + 1
        calls.append((env, args))
    assert a40_lines == 1, f"expected one A40 configure line in README's block, found {a40_lines}"
    return calls


class RealRun:
    """The state the README block builds, shared by this module's tests."""

    def __init__(self, tmp: Path, real_data: Path) -> None:
        self.fake = FakeGemini()
        self.fake.start()
        self.make = Make(tmp, GOOGLE_GEMINI_BASE_URL=self.fake.url)
        self.make.env.pop("GEMINI_API_KEY", None)
        self.make.env.pop("GOOGLE_API_KEY", None)
        self.label_config = fast_label_config(tmp / "label_config.yaml")
        self.make.folders(LABEL_CONFIG=self.label_config)
        self.calls = make_calls(readme_block(), real_data, self.fake.api_key)
        self.next = 0
        self.data = tmp / "data"

    def run_until(self, goal: str | None) -> None:
        """Run the block's next calls up to and including the first whose goals are `goal`."""
        while self.next < len(self.calls):
            env, args = self.calls[self.next]
            self.next += 1
            self.make.ok(*args, env=env)
            if goal is not None and args == [goal]:
                return

    def gemini(self) -> Path:
        return teacher_dir(self.data, "gemini", self.label_config, "gemini-2.5-flash")


@pytest.fixture(scope="module")
def real_run(real_data: Path, tmp_path_factory: pytest.TempPathFactory):
    run = RealRun(tmp_path_factory.mktemp("real-run"), real_data)
    run.run_until("sft")
    yield run
    run.fake.stop()


def _prompts(records: list[dict]) -> dict[str, str]:
    """id -> the fake's key of the prompt the teacher is sent for the record."""
    return {r["id"]: prompt_key(instruction_and_transcript(r["conversation"])) for r in records}


def _sample_prompts(tmp: Path) -> set[str]:
    """Prompt keys of the shipped sample data's student subset (cleaned here, the same way)."""
    from pipeline import clean

    samples = ROOT / "pipeline" / "samples"
    assert (
        clean.main(
            [
                "--psyqa",
                str(samples / "psyqa_sample.json"),
                "--cpsycound",
                str(samples / "CPsyCounD"),
                "--cpsycoune",
                str(samples / "CPsyCounE"),
                "--data-dir",
                str(tmp),
            ]
        )
        == 0
    )
    return set(_prompts(jsonl(tmp / "processed" / "unified_min.jsonl")).values())


def test_labels_are_gemini_for_every_real_record_each_sent_once(
    real_run: RealRun, tmp_path: Path
) -> None:
    student = jsonl(real_run.data / "processed" / "unified_min.jsonl")
    assert len(student) > 1000, "the real student subset"
    prompts = _prompts(student)
    stats = real_run.fake.stats
    # Each distinct real prompt reached the server exactly once; nothing else did.
    assert set(stats.first_requests) == set(prompts.values())
    assert set(stats.first_requests.values()) == {1}
    assert not set(stats.requests) & _sample_prompts(tmp_path / "samples"), (
        "a sample record was sent"
    )
    # The SFT set is every real student record with the Gemini answer as its output.
    sft = {r["id"]: r for r in jsonl(real_run.data / "datasets" / "sft_student_mental.jsonl")}
    assert set(sft) == set(prompts)
    for rid, key in prompts.items():
        assert sft[rid]["output"] == canonical_json(expected_labels(key)), rid
    rows = jsonl(real_run.gemini() / "dataset.jsonl")
    assert {r["provider"] for r in rows} == {"gemini"} and {r["id"] for r in rows} == set(prompts)
    assert "labels of teacher gemini__gemini-2.5-flash__" in "\n".join(real_run.make.log)


def test_the_rest_of_the_block_trains_converts_and_benches(real_run: RealRun) -> None:
    real_run.run_until(None)
    run_dir = real_run.make.tmp / "models" / "tiny"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "model-Q4_K_M.gguf").is_file()
    assert (real_run.make.tmp / "reports" / "bench" / "summary.json").is_file()


def test_switching_teacher_and_back_sends_nothing(real_run: RealRun) -> None:
    sent = sum(real_run.fake.stats.requests.values())
    sft_path = real_run.data / "datasets" / "sft_student_mental.jsonl"
    gemini_sft = sft_path.read_text("utf-8")
    real_run.make.ok("sft", "PROVIDER=rules")
    rules = teacher_dir(real_run.data, "rules", real_run.label_config)
    assert {r["provider"] for r in jsonl(rules / "dataset.jsonl")} == {"rules"}
    assert sft_path.read_text("utf-8") != gemini_sft
    again = real_run.make.ok("sft")
    assert "labels of teacher gemini__" in again.stdout and "pipeline.label" not in again.stdout
    assert sft_path.read_text("utf-8") == gemini_sft
    assert sum(real_run.fake.stats.requests.values()) == sent, "switching back re-sent a sample"
    assert len(jsonl(real_run.gemini() / "dataset.jsonl")) == len(jsonl(rules / "dataset.jsonl"))
    for row in jsonl(rules / "dataset.jsonl")[:5]:
        assert set(FIELDS) <= set(row)
