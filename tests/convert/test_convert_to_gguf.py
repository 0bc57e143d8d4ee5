"""`convert.to_gguf` on the tiny model: what the file holds, bad input, interrupted writes, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from convert import to_gguf
from convert.errors import ConvertError
from convert.gguf_types import read_summary
from convert.safetensors_io import index_tensors, load_raw
from psyedge.contract import CONTRACT_VERSION
from psyedge.metadata import manifest_from_gguf
from psyedge.prompt import get_template, prompt_hash


def _kv(path: Path) -> dict:
    reader = GGUFReader(path)
    return {f.name: f.contents() for f in reader.fields.values() if not f.name.startswith("tokenizer.ggml.")
            or f.name in ("tokenizer.ggml.pre", "tokenizer.ggml.model", "tokenizer.ggml.bos_token_id",
                          "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
                          "tokenizer.ggml.add_bos_token")}


def test_metadata_of_the_f16_file(gguf_files: dict[str, Path], tiny_dir: Path) -> None:
    kv = _kv(gguf_files["f16"])
    config = json.loads((tiny_dir / "config.json").read_text())
    assert kv["general.architecture"] == "qwen2"
    assert kv["general.file_type"] == 1  # MOSTLY_F16
    assert kv["qwen2.block_count"] == config["num_hidden_layers"] == 2
    assert kv["qwen2.embedding_length"] == 256 and kv["qwen2.feed_forward_length"] == 512
    assert kv["qwen2.attention.head_count"] == 4 and kv["qwen2.attention.head_count_kv"] == 2
    assert kv["qwen2.rope.freq_base"] == pytest.approx(10000.0)
    assert kv["qwen2.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "deepseek-r1-qwen"
    assert kv["tokenizer.ggml.bos_token_id"] == config["bos_token_id"]
    assert kv["tokenizer.ggml.eos_token_id"] == config["eos_token_id"]
    assert kv["tokenizer.ggml.padding_token_id"] == config["pad_token_id"]
    assert kv["tokenizer.ggml.add_bos_token"] is True
    assert kv["tokenizer.chat_template"] == get_template("deepseek-r1").jinja
    manifest = manifest_from_gguf(kv)
    assert manifest == {"contract_version": CONTRACT_VERSION, "prompt_hash": prompt_hash(),
                        "template": "deepseek-r1", "base_model": "tiny-base", "adapter_hash": ""}


def test_tensor_types_per_outtype(gguf_files: dict[str, Path]) -> None:
    for outtype, weight_type in (("f32", "F32"), ("f16", "F16"), ("bf16", "BF16")):
        tensors = read_summary(gguf_files[outtype])["tensors"]
        assert len(tensors) == 2 * 12 + 3  # 12 per Qwen2 layer (q/k/v biases) + embd, norm, output
        for t in tensors:
            assert t.type == (weight_type if len(t.shape) == 2 else "F32"), t


def test_bf16_is_bit_exact(gguf_files: dict[str, Path], tiny_dir: Path) -> None:
    """The tiny model is stored in bf16: the bf16 GGUF must hold the very same bits."""
    src = index_tensors(tiny_dir)["model.layers.1.mlp.down_proj.weight"]
    reader = GGUFReader(gguf_files["bf16"])
    t = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight")
    assert np.array_equal(np.asarray(t.data).view(np.uint16).reshape(src.shape), load_raw(src))


def test_manifest_missing_gives_no_psyedge_keys(tiny_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_dir, model)
    (model / "psyedge.json").unlink()
    res = to_gguf.convert(model, tmp_path / "x.gguf", "f32")
    assert not res.has_manifest
    assert manifest_from_gguf(_kv(res.path)) is None
    assert _kv(res.path)["tokenizer.chat_template"] == get_template("deepseek-r1").jinja


@pytest.mark.parametrize("breakage, message", [
    ("weights", r"no weights: expected model\.safetensors"),
    ("arch", r"architectures \['GPTNeoXForCausalLM'\] are not supported"),
    ("tokenizer", r"tokenizer file\(s\) missing: \['tokenizer\.json'\]"),
    ("template", r"psyedge\.json: unknown chat template 'vicuna'"),
    ("layers", r"lacks tensors \['blk\.2\.attn_q\.weight'\]"),
])
def test_bad_input_fails_before_writing(tiny_dir: Path, tmp_path: Path, breakage: str, message: str) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_dir, model)
    config = json.loads((model / "config.json").read_text())
    if breakage == "weights":
        (model / "model.safetensors").unlink()
    elif breakage == "arch":
        config["architectures"] = ["GPTNeoXForCausalLM"]
    elif breakage == "tokenizer":
        (model / "tokenizer.json").unlink()
    elif breakage == "template":
        (model / "psyedge.json").write_text(json.dumps({"template": "vicuna"}))
    elif breakage == "layers":
        config["num_hidden_layers"] = 3
    (model / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(ConvertError, match=message):
        to_gguf.convert(model, out, "f16")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_interrupted_conversion_leaves_no_gguf(gguf_files: dict[str, Path], tiny_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model-f16.gguf"
    out.write_bytes(b"previous complete file")
    calls = {"n": 0}
    real = to_gguf.PlannedTensor.stored_bytes

    def interrupt_on_third(self: to_gguf.PlannedTensor) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(to_gguf.PlannedTensor, "stored_bytes", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        to_gguf.convert(tiny_dir, out, "f16")
    assert out.read_bytes() == b"previous complete file"   # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model-f16.gguf"]  # no temp file left behind


def test_cli_success_and_user_errors(tiny_dir: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.gguf"
    assert to_gguf.main(["--model", str(tiny_dir), "--outtype", "f32", "--out", str(out)]) == 0
    assert "pre-tokenizer deepseek-r1-qwen" in capsys.readouterr().out and out.is_file()
    assert to_gguf.main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x.gguf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such model folder" in err and "Traceback" not in err
