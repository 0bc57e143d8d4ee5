"""Which floating-point type the torch stages compute in: chosen once, from the hardware.

bfloat16 halves memory and is fast where the hardware multiplies it natively and quickly: CUDA
GPUs from Ampere on (the A40 of the real run) and CPUs with AMX tile units. On other CPUs PyTorch
emulates it, and a bf16 matmul on an AVX2-only CPU takes about 45 times as long as the same
float32 matmul (2048x256 by 256x512: 493 ms against 11 ms on a 2-core AMD EPYC), which turns a
one-minute training run into half an hour. AVX-512 BF16 without AMX is native but not faster for
these models: the tiny profile's step took 0.25 s in bf16 and 0.21 s in float32 on a 2-core Xeon
with AVX-512 BF16 (`benchmarks/bench_train.py`). So a CPU computes in bf16 only with AMX (and
PyTorch's kernels allowed to use it); every other CPU computes in float32, which also gives every
such machine the same numbers.

"Native" is decided from facts that can be read without timing anything, so the choice is the
same on every run of one machine: the CPU's feature flags (`/proc/cpuinfo`), the ISA level
ATen dispatches to (`ATEN_CPU_CAPABILITY` lowers it) and the ISA ceiling of oneDNN, which runs
the bf16 matmuls (`DNNL_MAX_CPU_ISA` / `ONEDNN_MAX_CPU_ISA` lower it). Setting
`ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2` therefore reproduces a slow-bf16 CPU on a fast
one, for checks (`make test-avx2`; `benchmarks/bench_train.py` measures the slowdown it causes).
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: What a profile's `dtype` may say; `auto` applies the rule of this module.
DTYPE_CHOICES = ("auto", "bfloat16", "float32")
#: CPU flags (Linux `/proc/cpuinfo` names) with which bf16 matmuls beat float32: x86 AMX. Not
#: `avx512_bf16` (measured slower than float32, module docstring) nor Arm's `bf16` (unmeasured).
BF16_CPU_FLAGS = {"amx_bf16"}
#: oneDNN ISA ceilings (DNNL_MAX_CPU_ISA values) under which it cannot use AMX.
ONEDNN_NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                       "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512"}
#: ATen capability levels whose vectorised kernels handle bf16 well on x86.
ATEN_BF16_LEVELS = {"AVX512"}


@dataclass(frozen=True)
class Precision:
    """The dtype a stage computes in, where, and why (logged and written to the run's outputs)."""

    dtype: str  # "bfloat16" | "float32"
    device: str  # "cuda" | "cpu"
    reason: str

    @property
    def bf16(self) -> bool:
        return self.dtype == "bfloat16"

    def torch_dtype(self):  # -> torch.dtype
        import torch

        return getattr(torch, self.dtype)

    def to_dict(self) -> dict[str, str]:
        return {"dtype": self.dtype, "device": self.device, "dtype_reason": self.reason}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU (empty where the file does not exist)."""
    try:
        text = cpuinfo.read_text("utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 | Arm
            return set(value.split())
    return set()


def native_cpu_bf16(flags: set[str], aten_level: str, env: dict[str, str]) -> tuple[bool, str]:
    """Whether this CPU multiplies bf16 faster than float32 and PyTorch may use it, and why."""
    found = sorted(flags & BF16_CPU_FLAGS)
    if not found:
        return False, "the CPU has no fast bf16 matmul (no amx_bf16 flag)"
    ceiling = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").upper()
    if ceiling in ONEDNN_NO_BF16_ISAS:
        return False, f"oneDNN is limited to {ceiling} (DNNL_MAX_CPU_ISA), below AMX"
    if platform.machine() in ("x86_64", "AMD64") and aten_level not in ATEN_BF16_LEVELS:
        return False, f"ATen dispatches to {aten_level} kernels (ATEN_CPU_CAPABILITY)"
    return True, f"fast native bf16 on this CPU ({', '.join(found)}; ATen {aten_level})"


def choose(requested: str = "auto", device: str | None = None) -> Precision:
    """Resolve a profile's `dtype` to what this process will compute in, and log it.

    An explicit `bfloat16` or `float32` is honoured (with a warning when bf16 is forced onto a
    CPU without AMX); `auto` takes bf16 on CUDA with bf16 support and on CPUs with AMX.
    `device="cpu"` asks for the CPU's answer on a machine that also has a GPU (the CPU paths:
    the greedy check, evaluations).
    """
    if requested not in DTYPE_CHOICES:
        raise ValueError(f"dtype {requested!r} is not one of {DTYPE_CHOICES}")
    import torch

    if device != "cpu" and torch.cuda.is_available():
        native = torch.cuda.is_bf16_supported()
        reason = "CUDA with bf16 support" if native else "this CUDA device has no bf16"
        device = "cuda"
    else:
        level = torch.backends.cpu.get_cpu_capability()
        native, reason = native_cpu_bf16(cpu_flags(), level, dict(os.environ))
        device = "cpu"
    if requested == "auto":
        chosen = Precision("bfloat16" if native else "float32", device, f"auto: {reason}")
    else:
        chosen = Precision(requested, device, f"set in the profile ({reason})")
        if requested == "bfloat16" and not native:
            log.warning("dtype bfloat16 was asked for, but %s: expect it to run many times slower "
                        "than float32", reason)
    log.info("compute dtype %s on %s: %s", chosen.dtype, chosen.device, chosen.reason)
    return chosen
