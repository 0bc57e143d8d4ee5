"""What an app team asks of one model file: its size, peak RSS and latency on a typical dialogue.

    python -m benchmarks.footprint --model models/gemma-cpu/model-Q4_K_M.gguf \\
        --cpsycound ../shared/data/cpsycoun/CPsyCounD --out reports/bench/gemma-cpu-footprint

"A typical student dialogue" is taken from the real data, not written for the benchmark: the
CPsyCounD dialogues that pass the student filter (`pipeline.student.select`), sorted by length,
and the `k` nearest the median. All `k` are assessed once each, in one fresh child process
(`benchmarks.memory`): a second assessment of the same text would reuse the KV cache, which is
not the latency a new conversation sees. The child's kernel-reported peak RSS covers import, load
and all `k` assessments. Writes `footprint.json` and `footprint.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_model
from benchmarks.memory import measure
from pipeline.io import atomic_write_json, atomic_write_text
from pipeline.parsers.base import Record
from pipeline.parsers.cpsycound import iter_records
from pipeline.student import select

#: Dialogues around the median length, each assessed once: enough for a stable median.
K_DIALOGUES = 9


def median_dialogues(root: Path, k: int = K_DIALOGUES) -> tuple[list[list[dict[str, str]]], dict]:
    """The `k` student dialogues of CPsyCounD nearest its median length, and what was chosen."""
    students = []
    for rec in iter_records(root):
        if not isinstance(rec, Record):
            continue
        conv = [{"role": role, "text": text} for role, text in rec.turns]
        reason, _ = select({"conversation": conv, "meta": rec.meta})
        if reason is None:
            students.append((sum(len(t["text"]) for t in conv), rec.id, conv))
    if len(students) < k:
        raise ValueError(f"{root}: {len(students)} student dialogues, need at least {k}")
    students.sort(key=lambda s: (s[0], s[1]))
    mid = len(students) // 2
    chosen = students[mid - k // 2: mid - k // 2 + k]
    info = {"students": len(students), "median_chars": students[mid][0],
            "chosen": [{"id": rid, "chars": n} for n, rid, _ in chosen]}
    return [conv for _, _, conv in chosen], info


def footprint(model: Path, root: Path, threads: int, k: int = K_DIALOGUES,
              template: str | None = None, adapter: Path | None = None) -> dict[str, Any]:
    """Size (model + adapter), peak RSS and per-dialogue latency; `template` only for a GGUF
    without psyedge metadata."""
    convs, chosen = median_dialogues(root, k)
    mem = measure(model, convs, n=len(convs), template=template, threads=threads, adapter=adapter)
    ms = mem["assess_ms"]
    return {"model": str(model), "adapter": str(adapter) if adapter else None,
            "file_bytes": mem["file_bytes"],
            "peak_rss_bytes": mem["peak_rss_bytes"], "load_s": mem["load_s"],
            "assess_ms": ms, "p50_assess_ms": statistics.median(ms), "max_assess_ms": max(ms),
            "prompt_tokens": mem["prompt_tokens"], "threads": mem["threads"] or threads,
            "cpu": cpu_model(), "dialogues": chosen}


def markdown(r: dict[str, Any]) -> str:
    toks = sorted(r["prompt_tokens"])
    return "\n".join([
        f"# Footprint of {Path(r['model']).name}"
        + (f" + {Path(r['adapter']).name}" if r.get("adapter") else ""), "",
        "| file size (+ adapter) | peak RSS | load | p50 assess | max assess | prompt tokens (median) |",
        "|---|---|---|---|---|---|",
        f"| {r['file_bytes'] / 2**20:.0f} MiB | {r['peak_rss_bytes'] / 2**20:.0f} MiB | "
        f"{r['load_s']:.1f} s | {r['p50_assess_ms']:.0f} ms | {r['max_assess_ms']:.0f} ms | "
        f"{toks[len(toks) // 2] if toks else '-'} |", "",
        f"{len(r['assess_ms'])} CPsyCounD student dialogues nearest the median length "
        f"({r['dialogues']['median_chars']} characters, of {r['dialogues']['students']}), each "
        f"assessed once; {r['threads']} threads on {r['cpu']}.", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.footprint", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cpsycound", type=Path, required=True, help="the CPsyCounD folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-k", type=int, default=K_DIALOGUES)
    ap.add_argument("--template", help="for a GGUF without psyedge metadata (e.g. raw)")
    ap.add_argument("--adapter", type=Path, help="LoRA adapter GGUF applied on --model")
    args = ap.parse_args(argv)
    try:
        result = footprint(args.model, args.cpsycound, args.threads, args.k, args.template,
                           args.adapter)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "footprint.json", result)
    text = markdown(result)
    atomic_write_text(args.out / "footprint.md", text)
    print(text)
    print(json.dumps({k: result[k] for k in ("file_bytes", "peak_rss_bytes", "p50_assess_ms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
