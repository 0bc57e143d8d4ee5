"""Describe the machine a benchmark ran on, so every number can be traced to its hardware.

A latency figure without the CPU, the thread count and the llama.cpp build is not comparable
with anything: the same model runs ~20x slower on a portable (no AVX2) build. This module reads
what the OS and llama.cpp say about themselves; it never guesses.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's marketing name (`/proc/cpuinfo` on Linux, `platform.processor()` elsewhere)."""
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask: a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1


def ram_bytes() -> int | None:
    """Total physical memory in bytes (`/proc/meminfo` MemTotal), None when unknown."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@lru_cache(maxsize=1)
def llama_build() -> dict[str, Any]:
    """llama-cpp-python's version and llama.cpp's `system_info` line (SIMD flags of the build)."""
    try:
        import llama_cpp
    except ImportError as exc:  # the report still describes the machine without it
        return {"llama_cpp_python": None, "system_info": None, "error": str(exc)}
    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    flags = sorted(part.split("=")[0].split(":")[-1].strip() for part in text.split("|")
                   if part.strip().endswith("= 1"))
    return {
        "llama_cpp_python": getattr(llama_cpp, "__version__", None),
        "system_info": text.strip(),
        "simd": flags,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: above the core count, other work competed for the CPU and
    latencies are inflated (a shared 2-core machine can make one llama.cpp call 100x slower)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe(threads: int | None = None) -> dict[str, Any]:
    """The machine block of `summary.json`: hardware, OS, Python, llama.cpp build, threads used."""
    cores = usable_cores()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "ram_bytes": ram_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "llama": llama_build(),
        "load_average_start": load_average(),
    }


def short(machine: dict[str, Any]) -> str:
    """One line for tables and plot titles: 'Intel Xeon ... (2 cores, 23 GiB, AVX2)'."""
    ram = machine.get("ram_bytes")
    gib = f", {ram / 2**30:.0f} GiB" if ram else ""
    simd = machine.get("llama", {}).get("simd") or []
    best = next((f for f in ("AVX512", "AVX2", "AVX", "NEON", "SSE3") if f in simd), "")
    return f"{machine['cpu']} ({machine['cores']} cores{gib}{', ' + best if best else ''})"
