"""The torch-free safetensors reader: exact values per dtype, shard indexes, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from convert.errors import ConvertError
from convert.safetensors_io import index_tensors, load_f32, load_raw, read_header, weight_files


def test_bf16_f16_f32_read_back_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tensors = {"a": torch.randn(3, 5, dtype=torch.bfloat16), "b": torch.randn(7, dtype=torch.float16),
               "c": torch.randn(2, 2, 2)}
    save_file(tensors, tmp_path / "model.safetensors")
    refs = index_tensors(tmp_path)
    assert {n: r.dtype for n, r in refs.items()} == {"a": "BF16", "b": "F16", "c": "F32"}
    for name, t in tensors.items():
        got = load_f32(refs[name])
        assert got.dtype == np.float32 and got.shape == tuple(t.shape)
        np.testing.assert_array_equal(got, t.float().numpy())
    # bf16 raw bits are the torch bits (the bf16 GGUF copies them unchanged)
    np.testing.assert_array_equal(load_raw(refs["a"]), tensors["a"].view(torch.int16).numpy().view(np.uint16))


def test_sharded_index(tmp_path: Path) -> None:
    save_file({"x": torch.ones(2)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"y": torch.zeros(3)}, tmp_path / "model-00002-of-00002.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}))
    refs = index_tensors(tmp_path)
    assert sorted(refs) == ["x", "y"]
    assert load_f32(refs["y"]).tolist() == [0.0, 0.0, 0.0]


def test_index_naming_a_missing_shard(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    with pytest.raises(ConvertError, match="gone.safetensors"):
        weight_files(tmp_path)


def test_no_weights_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ConvertError, match=r"no weights.*pytorch_model\.bin.*safe_serialization"):
        weight_files(tmp_path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    save_file({"w": torch.randn(64, 64)}, tmp_path / "model.safetensors")
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(ConvertError, match="truncated"):
        read_header(tmp_path / "model.safetensors")


def test_integer_tensor_is_refused(tmp_path: Path) -> None:
    save_file({"ids": torch.arange(4)}, tmp_path / "model.safetensors")
    with pytest.raises(ConvertError, match="'ids' has dtype I64"):
        read_header(tmp_path / "model.safetensors")
