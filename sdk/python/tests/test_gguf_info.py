"""Reading GGUF headers without llama.cpp: values, long arrays, and broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from psyedge.errors import ModelError
from psyedge.gguf_info import ArrayInfo, read_info
from testkit import gguf_factory


def test_reads_the_keys_the_factory_wrote(tiny_model: Path) -> None:
    info = read_info(tiny_model)
    tokens, _, merges = gguf_factory.build_vocab()
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.get("llama.block_count") == 2
    assert info.get("llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert info.get("tokenizer.ggml.add_bos_token") is True
    assert info.n_vocab == len(tokens)
    assert info.get("tokenizer.ggml.merges") == ArrayInfo(8, len(merges))
    assert info.get("psyedge.contract_version") == "1.0"
    assert info.n_tensors == 3 + 2 * 9


@pytest.mark.parametrize(("data", "needle"), [
    (b"GGML" + b"\0" * 40, "not a GGUF file"),
    (b"GGUF" + (9).to_bytes(4, "little") + b"\0" * 16, "version 9"),
    (b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (5).to_bytes(8, "little") + b"\1\0",
     "truncated"),
], ids=["bad-magic", "bad-version", "truncated"])
def test_broken_files_name_the_problem(tmp_path: Path, data: bytes, needle: str) -> None:
    p = tmp_path / "bad.gguf"
    p.write_bytes(data)
    with pytest.raises(ModelError, match=needle):
        read_info(p)
