"""`psyedge` CLI: assess JSONL end to end, export the contract files, inspect a GGUF, user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from psyedge.cli import main
from psyedge.contract import LABEL_SCHEMA, validate
from psyedge.plan import gbnf, plan_document
from psyedge.prompt import prompt_hash

GOLDEN = Path(__file__).parent / "golden"


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_assess_writes_one_valid_row_per_conversation(tiny_model: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": "a", "conversation": [{"role": "user", "text": "我最近压力很大"}]},
            {"id": "b",
             "turns": [{"role": "user", "text": "我想自杀"}, {"role": "assistant", "text": "你现在安全吗"}]},
            [{"role": "user", "text": "x" * 3000}]]
    inp = _write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out" / "assess.jsonl"
    rc = main(["assess", "--model", str(tiny_model), "--input", str(inp), "--output", str(out), "--show",
               "--threads", "1", "--n-ctx", "8192"])
    assert rc == 0
    got = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert [g["id"] for g in got] == ["a", "b", 3]
    for g in got:
        validate(g["labels"])
        assert set(g) == {"id", "labels", "probabilities", "risk_source", "timings", "trimmed"}
    assert got[1]["labels"]["risk_flag"] == "suicidal"
    assert got[2]["trimmed"] is True
    shown = capsys.readouterr().out
    assert "dep=" in shown and shown.count("\n") == 3


@pytest.mark.parametrize(("content", "needle"), [
    ("{not json\n", "in.jsonl:1: not valid JSON"),
    ('{"id": 1, "text": "hi"}\n', "in.jsonl:1: no conversation"),
    ('{"conversation": [{"role": "user", "text": "ok"}]}\n[{"role": "bot", "text": "hi"}]\n',
     "in.jsonl:2: turn 0: role"),
    ('[{"role": "user", "text": 3}]\n', "text must be a string"),
    ("\n", "holds no conversations"),
])
def test_assess_rejects_bad_input_lines_with_file_and_line(tiny_model: Path, tmp_path: Path, content: str,
                                                           needle: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(content, "utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["assess", "--model", str(tiny_model), "--input", str(inp), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_assess_model_errors_exit_1(tiny_plain: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    inp = _write_jsonl(tmp_path / "in.jsonl", [[{"role": "user", "text": "hi"}]])
    assert main(["assess", "--model", str(tiny_plain), "--input", str(inp), "--output",
                 str(tmp_path / "o")]) == 1
    assert "template=" in capsys.readouterr().err
    assert main(["assess", "--model", str(tmp_path / "none.gguf"), "--input", str(inp),
                 "--output", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["assess", "--model", str(tiny_plain), "--input", str(tmp_path / "missing.jsonl"),
                 "--output", str(tmp_path / "o")]) == 2


def test_exports_match_the_contract_and_the_goldens(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grammar"]) == 0
    assert capsys.readouterr().out == gbnf() == (GOLDEN / "labels.gbnf").read_text("utf-8")
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == LABEL_SCHEMA
    assert main(["plan", "--out", str(tmp_path / "plan.json")]) == 0
    assert json.loads((tmp_path / "plan.json").read_text("utf-8")) == plan_document() == \
        json.loads((GOLDEN / "decode_plan.json").read_text("utf-8"))


def test_info_reads_metadata_without_llama_cpp(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny_model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "llama" and info["n_layer"] == 2 and info["n_embd"] == 256
    assert info["psyedge"]["psyedge.template"] == "deepseek-r1"
    assert info["psyedge"]["psyedge.prompt_hash"] == prompt_hash()
    assert info["tokenizer"] == "gpt2" and info["n_vocab"] > 256


def test_console_script_runs_as_a_module(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "psyedge.cli", "info", str(tmp_path / "nope.gguf")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "model file not found" in proc.stderr and "Traceback" not in proc.stderr
