"""Shared fixtures for the converter tests: the tiny model, built once per session, and its GGUFs.

The tiny base (`training.tiny.build_tiny_base`) is a 2-layer Qwen2ForCausalLM with a byte-level
BPE and DeepSeek-R1 special tokens, built in about 5 s; converting and quantising it takes about
a second each. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convert.quantize import quantize
from convert.to_gguf import convert
from psyedge.metadata import make_manifest

CONVERSATIONS_FOR_PARITY: list[list[dict[str, str]]] = [
    [{"role": "user", "text": "最近考试压力很大，我每天晚上都睡不着。"},
     {"role": "assistant", "text": "你能具体说说是什么让你感到这么难受吗？"},
     {"role": "user", "text": "我觉得自己什么都做不好，有时候会想，如果我不在了，大家会不会更轻松。"}],
    [{"role": "user", "text": "室友总在背后说我坏话，我真想打他一顿。Is that OK? 123 ... ！！"}],
    [{"role": "user", "text": "期末考试快到了，我担心自己挂科。\n\n  心里一直很焦虑，	心跳很快。"},
     {"role": "assistant", "text": "听起来你承受了很多压力，谢谢你愿意告诉我。"}],
    [{"role": "user", "text": "我已经写好了遗书，准备了安眠药。😢 don't worry about me"}],
]


@pytest.fixture(scope="session")
def conversations() -> list[list[dict[str, str]]]:
    """Conversations the tests render: Chinese, mixed scripts, digits, blank lines, tabs, emoji."""
    return CONVERSATIONS_FOR_PARITY


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base model folder with a `psyedge.json` manifest, as the merge stage leaves it."""
    from training.tiny import build_tiny_base

    out = build_tiny_base(tmp_path_factory.mktemp("models") / "merged", seed=0)
    manifest = make_manifest("deepseek-r1", "tiny-base", adapter_hash="")
    (out / "psyedge.json").write_text(json.dumps(manifest), "utf-8")
    return out


@pytest.fixture(scope="session")
def gguf_files(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """f32, f16, bf16 and Q4_K_M (from f16) GGUFs of the tiny model."""
    out = tmp_path_factory.mktemp("gguf")
    files = {t: convert(tiny_dir, out / f"model-{t}.gguf", t).path for t in ("f32", "f16", "bf16")}
    quantize(files["f16"], out / "model-Q4_K_M.gguf", "Q4_K_M")
    files["Q4_K_M"] = out / "model-Q4_K_M.gguf"
    return files
