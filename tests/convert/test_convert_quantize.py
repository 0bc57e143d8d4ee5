"""`convert.quantize`: llama.cpp's quantizer, the report read back from the file, fallbacks, imatrix,
and the Q4_K_M file in the SDK."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from convert import quantize as q
from convert.errors import ConvertError
from convert.gguf_types import read_summary
from convert.to_gguf import convert
from psyedge.contract import validate
from psyedge.prompt import get_template


def test_q4_k_m_file(gguf_files: dict[str, Path]) -> None:
    summary = read_summary(gguf_files["Q4_K_M"])
    assert summary["file_type"] == "MOSTLY_Q4_K_M"
    assert summary["chat_template"] == get_template("deepseek-r1").jinja
    assert summary["psyedge"]["psyedge.template"] == "deepseek-r1"
    assert summary["tokenizer_pre"] == "deepseek-r1-qwen"
    types = {t.type for t in summary["tensors"] if len(t.shape) == 2}
    assert types == {"Q4_K", "Q6_K"}  # every width is a multiple of 256: no fallback
    assert q.find_fallbacks(summary["tensors"], "Q4_K_M") == []


def test_report_and_cli(gguf_files: dict[str, Path], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model-Q8_0.gguf"
    assert q.main(["--src", str(gguf_files["f16"]), "--qtype", "Q8_0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "model-Q8_0.gguf.json").read_text())
    assert report["file_type"] == "MOSTLY_Q8_0" and report["fallbacks"] == []
    assert report["size_before"] == gguf_files["f16"].stat().st_size
    assert report["size_after"] == out.stat().st_size
    assert 0.5 < report["ratio"] < 0.6  # 8.5 bits per weight vs 16, plus f32 norms and header
    assert "no fallback types" in printed and "MiB ->" in printed


def test_fallback_types_are_reported(tiny_dir: Path, tmp_path: Path) -> None:
    """An FFN width of 320 is not a multiple of 256: llama.cpp stores ffn_down in a legacy type."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model_dir = tmp_path / "odd"
    model_dir.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "psyedge.json"):
        shutil.copy(tiny_dir / f, model_dir / f)
    base = json.loads((tiny_dir / "config.json").read_text())
    cfg = Qwen2Config(vocab_size=base["vocab_size"], hidden_size=256, intermediate_size=320,
                      num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(model_dir)
    f16 = convert(model_dir, tmp_path / "odd-f16.gguf", "f16").path
    rep = q.quantize(f16, tmp_path / "odd-Q4_K_M.gguf", "Q4_K_M")
    fallen = {fb["tensor"]: fb["type"] for fb in rep.fallbacks}
    assert list(fallen) == ["blk.0.ffn_down.weight"], rep.fallbacks
    assert fallen["blk.0.ffn_down.weight"] not in {"Q4_K", "Q6_K", "F16"}


def _write_imatrix(path: Path, src: Path) -> None:
    """A GGUF imatrix in llama.cpp's layout (<tensor>.in_sum2 / <tensor>.counts) weighting a few
    input columns of every 2-D weight 1000x more than the rest."""
    writer = GGUFWriter(path, "imatrix")
    rng = np.random.default_rng(0)
    for t in GGUFReader(src).tensors:
        if len(t.shape) == 2 and t.name != "token_embd.weight":
            n_per_row = int(t.shape[0])
            sums = np.ones(n_per_row, dtype=np.float32)
            sums[rng.choice(n_per_row, 8, replace=False)] = 1000.0
            writer.add_tensor(f"{t.name}.in_sum2", sums * 10)
            writer.add_tensor(f"{t.name}.counts", np.array([10.0], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_imatrix_file_changes_the_quantization(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    imatrix = tmp_path / "imatrix.gguf"
    _write_imatrix(imatrix, gguf_files["f16"])
    values = q.read_imatrix(imatrix)
    assert values["blk.0.ffn_down.weight"].shape == (512,) and values["blk.0.ffn_down.weight"].max() == 1000.0
    rep = q.quantize(gguf_files["f16"], tmp_path / "imat.gguf", "Q4_K_M", imatrix_file=imatrix,
                     use_binary=False)
    assert rep.file_type == "MOSTLY_Q4_K_M" and rep.imatrix == str(imatrix)

    def blk(path: Path) -> bytes:
        return bytes(next(t for t in GGUFReader(path).tensors
                          if t.name == "blk.0.ffn_up.weight").data.tobytes())

    assert blk(tmp_path / "imat.gguf") != blk(gguf_files["Q4_K_M"])


def test_imatrix_without_binary_is_a_clear_error(gguf_files: dict[str, Path], tmp_path: Path,
                                                 conversations: list[list[dict[str, str]]]) -> None:
    if shutil.which("llama-imatrix"):
        pytest.skip("llama-imatrix is on PATH here: the error path does not apply")
    calib = tmp_path / "calib.jsonl"
    calib.write_text("".join(json.dumps({"conversation": c}, ensure_ascii=False) + "\n"
                             for c in conversations), "utf-8")
    assert "来访者：" in q.calibration_text(calib)
    out = tmp_path / "x.gguf"
    with pytest.raises(ConvertError, match="needs the llama-imatrix binary on PATH"):
        q.quantize(gguf_files["f16"], out, "Q4_K_M", calibration=calib)
    assert not out.exists() and list(tmp_path.iterdir()) == [calib]


def test_bad_inputs(gguf_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConvertError, match="not a float GGUF"):
        q.quantize(gguf_files["Q4_K_M"], tmp_path / "again.gguf", "Q4_K_M")
    assert q.main(["--src", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "o.gguf")]) == 2
    assert "no such GGUF file" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists() and not (tmp_path / "again.gguf").exists()


def test_q4_k_m_screens_in_the_sdk(gguf_files: dict[str, Path],
                                   conversations: list[list[dict[str, str]]]) -> None:
    """The quantized file loads in psyedge.Screener, which picks the template from the file."""
    from psyedge import Screener

    with Screener(gguf_files["Q4_K_M"], n_ctx=2048, n_threads=2) as screener:
        assert screener.template.name == "deepseek-r1"
        result = screener.assess(conversations[0])
    validate(result.labels.to_dict())
    assert set(result.probabilities) == {"depression_level", "anxiety_level", "risk_flag",
                                         "student_distress_score"}
