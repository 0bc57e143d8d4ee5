"""The compute dtype rule: bf16 only where the hardware runs it natively, float32 elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import ConfigError, load_config
from training.precision import choose, cpu_flags, native_cpu_bf16

SPR = {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}  # a Sapphire Rapids Xeon
COOPER = {"avx2", "fma", "avx512f", "avx512_bf16"}  # AVX-512 BF16 without AMX
EPYC_ZEN3 = {"avx2", "fma", "f16c"}  # AVX2 only: bf16 is emulated


def test_cpus_without_amx_get_float32() -> None:
    for flags in (EPYC_ZEN3, COOPER):
        native, why = native_cpu_bf16(flags, "AVX512", {})
        assert not native and "amx_bf16" in why


def test_native_bf16_cpu_gets_bf16_unless_the_kernels_are_limited() -> None:
    assert native_cpu_bf16(SPR, "AVX512", {})[0]
    native, why = native_cpu_bf16(SPR, "AVX512", {"DNNL_MAX_CPU_ISA": "AVX2"})
    assert not native and "DNNL_MAX_CPU_ISA" in why
    assert not native_cpu_bf16(SPR, "AVX512", {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"})[0]
    if os.uname().machine == "x86_64":
        native, why = native_cpu_bf16(SPR, "AVX2", {})
        assert not native and "ATEN_CPU_CAPABILITY" in why


def test_cpu_flags_reads_the_first_cpu(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_explicit_dtype_is_honoured_and_bad_ones_fail() -> None:
    assert choose("float32", device="cpu").dtype == "float32"
    assert choose("bfloat16", device="cpu").dtype == "bfloat16"
    with pytest.raises(ValueError, match="float16"):
        choose("float16")


def test_the_avx2_reproduction_switches_auto_to_float32() -> None:
    """`ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2` must give the slow-bf16 CPU's answer."""
    code = ("import json; from training.precision import choose; "
            "print(json.dumps(choose('auto', 'cpu').to_dict()))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["dtype"] == "float32", got


def test_the_old_bf16_key_names_its_replacement(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("bf16: true\n")
    with pytest.raises(ConfigError, match="dtype: auto"):
        load_config(old)
    old.write_text("dtype: float16\n")
    with pytest.raises(ConfigError, match="dtype 'float16'"):
        load_config(old)
