"""Peak memory of a process that loads a GGUF and assesses 20 conversations, against the file size.

Why a separate process: the peak resident set size (RSS) of the benchmark process itself would
include matplotlib, the labeled data and every earlier measurement. A fresh child that does only
what an app does (import psyedge, load the model, assess) gives the number a phone has to fit.
The parent reads the child's peak from `os.wait4` (the kernel's own max RSS for that pid), and the
child reports its RSS after import, after load and after the assessments from /proc/self/status.

llama.cpp memory-maps the GGUF, so the weights count in RSS once they are touched (file-backed
pages, which the OS can drop under pressure); the KV cache and compute buffers are anonymous.

CLI (the child): `python -m benchmarks.memory --worker --model M.gguf --conversations C.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: How many conversations the child assesses (the issue's figure: load + 20 assessments).
N_CONVERSATIONS = 20
_MARK = "PSYEDGE_MEMORY "


class MemoryBenchError(RuntimeError):
    """The child process failed: the message carries its exit code and the end of its stderr."""


def _proc_status_kib(key: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/self/status in KiB (None off Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _snapshot() -> dict[str, int | None]:
    rss, hwm = _proc_status_kib("VmRSS"), _proc_status_kib("VmHWM")
    return {"rss_bytes": None if rss is None else rss * 1024,
            "peak_bytes": None if hwm is None else hwm * 1024}


def open_screener(model: str | os.PathLike[str], template: str | None = None,
                  threads: int | None = None, adapter: str | os.PathLike[str] | None = None) -> Any:
    """A Screener with the lexicon on (the accuracy run reads the model's own flag and the
    netted one); `threads=None` leaves the SDK's default."""
    from psyedge import Screener

    return Screener(str(model), template=template, n_threads=threads or 0, lexicon=True,
                    adapter=adapter)


def worker(model: Path, conversations: Path, n: int, template: str | None,
           threads: int | None, adapter: Path | None = None) -> dict[str, Any]:
    """Run in the child: import, load, assess `n` conversations; return RSS at each stage."""
    convs = [json.loads(line) for line in conversations.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    if not convs:
        raise MemoryBenchError(f"{conversations} has no conversations to assess")
    import llama_cpp  # noqa: F401

    import psyedge  # noqa: F401  (the import itself is part of the baseline)

    stages = {"import": _snapshot()}
    t0 = time.perf_counter()
    screener = open_screener(model, template, threads, adapter)
    load_s = time.perf_counter() - t0
    stages["load"] = _snapshot()
    t0 = time.perf_counter()
    tokens, each_ms = [], []
    for i in range(n):
        t1 = time.perf_counter()
        a = screener.assess(convs[i % len(convs)])
        each_ms.append((time.perf_counter() - t1) * 1000)
        tokens.append(a.timings["prompt_tokens"])
    assess_s = time.perf_counter() - t0
    stages["assess"] = _snapshot()
    return {"stages": stages, "load_s": load_s, "assess_s": assess_s, "assessed": n,
            "assess_ms": each_ms, "prompt_tokens": tokens, "threads": screener.engine.n_threads}


def measure(model: Path, conversations: Sequence[list[dict[str, str]]], n: int = N_CONVERSATIONS,
            template: str | None = None, threads: int | None = None,
            timeout_s: float = 600, adapter: Path | None = None) -> dict[str, Any]:
    """Run the child on `model`; return its peak RSS (kernel), its stage snapshots and the file size."""
    model = Path(model)
    if not model.is_file():
        raise MemoryBenchError(f"model file {model} does not exist: pass --model <path to a .gguf>")
    with tempfile.TemporaryDirectory(prefix="psyedge-mem-") as tmp:
        conv_path = Path(tmp) / "conversations.jsonl"
        conv_path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations),
                             "utf-8")
        cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", "--model", str(model),
               "--conversations", str(conv_path), "-n", str(n)]
        if template:
            cmd += ["--template", template]
        if threads:
            cmd += ["--threads", str(threads)]
        if adapter:
            cmd += ["--adapter", str(adapter)]
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        t0 = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=root)
            deadline = time.monotonic() + timeout_s
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    raise MemoryBenchError(f"memory child ran past {timeout_s:.0f} s on {model} and was "
                                           "killed")
                time.sleep(0.02)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise MemoryBenchError(f"memory child exited {proc.returncode} on {model}: {stderr.strip()[-1500:]}")
    lines = [line for line in stdout.splitlines() if line.startswith(_MARK)]
    if not lines:
        raise MemoryBenchError(f"memory child printed no result line; stderr: {stderr.strip()[-800:]}")
    child = json.loads(lines[-1][len(_MARK):])
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    size = model.stat().st_size + (Path(adapter).stat().st_size if adapter else 0)
    return {"model": model.name, "file_bytes": size, "peak_rss_bytes": peak,
            "peak_over_file": peak / size if size else None, "wall_s": wall, **child}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the child process of the memory benchmark")
    ap.add_argument("--worker", action="store_true", required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--conversations", type=Path, required=True)
    ap.add_argument("-n", type=int, default=N_CONVERSATIONS)
    ap.add_argument("--template")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--adapter", type=Path)
    args = ap.parse_args(argv)
    result = worker(args.model, args.conversations, args.n, args.template, args.threads, args.adapter)
    print(_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
