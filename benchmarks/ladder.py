"""`make bench-ladder`: one fine-tuned model at every hop of the chain, on held-out human labels.

    python -m benchmarks.ladder --data data/datasets/psysuicide_holdout_rows.json \
        --out reports/bench/ladder --base-gguf models/gemma-3-270m/gemma-3-270m-Q4_K_M.gguf \
        --merged models/gemma-cpu/merged --f16 models/gemma-cpu/model-f16.gguf \
        --quant Q4_K_M=models/gemma-cpu/model-Q4_K_M.gguf --quant Q8_0=models/gemma-cpu/model-Q8_0.gguf \
        [--driver mobile/android/build/arm/host/psyedge_driver --android-quant Q8_0]

Hops, in chain order: the untrained base zero-shot (the release GGUF, same prompt and plan), the
merged checkpoint in PyTorch (`training.plan_torch`: the Screener's plan, each field's allowed
values scored), the f16 GGUF and each `--quant` file through the SDK Screener, the release base GGUF with the
LoRA adapter GGUF applied at run time (`--adapter`, compared with PyTorch), and the Android
engine's C++ core (`psyedge_driver`, the code the JNI bridge runs) on the `--android-quant` file
(the first `--quant` by default), compared with the SDK on that same file. A hop whose input is
not given is reported absent, with the reason.

Per hop, on the non-synthetic and the synthetic rows apart: risk precision/recall/F1 per class with
and without the SDK lexicon (the Screener's safety net: the more severe flag wins); suicidal recall
at precision >= 0.8 from P(suicidal) (and from max(P, lexicon)); the expected calibration error of
P(suicidal); and per field the share of rows whose label equals the previous hop's. The deployed
figures are the labels' (no threshold); the recall-at-precision figure picks its threshold on the
rows it reports, so it describes the curve, not a tuned operating point.

Writes `ladder.json`, `ladder.md` (the table) and `ladder.png` into `--out`; each hop's answers are
kept in `hops/<hop>.jsonl` with the model's sha256, so a rerun scores only what changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.metrics import accuracy, expected_calibration_error, recall_at_precision
from benchmarks.risk import MIN_PRECISION
from benchmarks.risk_metrics import AMBIGUOUS, RiskRow, class_metrics, load_psysuicide
from psyedge.contract import FIELDS, most_severe

log = logging.getLogger(__name__)

LADDER_JSON, LADDER_MD, LADDER_PNG = "ladder.json", "ladder.md", "ladder.png"
#: The hop every later one is also compared with: the model as trained, before conversion.
REFERENCE_HOP = "fine-tuned (PyTorch)"
#: The base GGUF as released (Q4_K_M for Gemma) with the LoRA adapter GGUF applied at run time.
ADAPTER_HOP = "base GGUF + LoRA GGUF"
#: `--android-quant lora`: the Android hop runs ADAPTER_HOP's files.
LORA = "lora"

#: One hop's answer for one row: labels (schema values) and per-field value probabilities.
Answer = dict[str, Any]
Scorer = Callable[[Sequence[RiskRow]], list[Answer]]


@dataclass(frozen=True)
class Hop:
    """A rung of the ladder: its name, what it reads (hashed for the cache) and how it scores."""

    name: str
    source: Path
    scorer: Scorer
    previous: str | None = None  # the hop to agree with, when not the one before it
    also_reads: tuple[Path, ...] = ()  # more inputs of the answers (the driver's GGUF)


def conversation(row: RiskRow) -> list[dict[str, str]]:
    """A PsySUICIDE text as the one-turn student conversation every hop screens."""
    return [{"role": "user", "text": row.text}]


# ---- scorers ---------------------------------------------------------------------------------
def screener_scorer(gguf: Path, template: str | None, threads: int,
                    adapter: Path | None = None) -> Scorer:
    """The SDK Screener with the lexicon off (the ladder adds the lexicon itself, for every hop)."""

    def run(rows: Sequence[RiskRow]) -> list[Answer]:
        from tqdm import tqdm

        from psyedge.screener import Screener

        out = []
        name = gguf.name + (f" + {adapter.name}" if adapter else "")
        with Screener(gguf, template=template, lexicon=False, n_threads=threads, adapter=adapter) as s:
            for r in tqdm(rows, desc=f"screener {name}", unit="text"):
                a = s.assess(conversation(r))
                out.append({"labels": a.labels.to_dict(), "probabilities": a.probabilities})
        return out

    return run


def torch_scorer(merged: Path, template: str) -> Scorer:
    """The merged checkpoint in PyTorch along the same plan (training.plan_torch)."""

    def run(rows: Sequence[RiskRow]) -> list[Answer]:
        from tqdm import tqdm

        from training.plan_torch import PlanScorer

        scorer = PlanScorer.load(merged, template)
        out = []
        for r in tqdm(rows, desc=f"torch {merged.name}", unit="text"):
            res = scorer.assess(conversation(r))
            out.append({"labels": res.labels, "probabilities": res.probabilities})
        return out

    return run


def driver_scorer(driver: Path, gguf: Path, template: str, threads: int,
                  adapter: Path | None = None) -> Scorer:
    """The Android engine's C++ core (`psyedge_driver`) on the cases document the SDK writes."""

    def run(rows: Sequence[RiskRow]) -> list[Answer]:
        spec = {"path": str(gguf), "template": template, "n_ctx": 4096, "threads": threads}
        with tempfile.TemporaryDirectory() as tmp:
            cases = Path(tmp) / "cases.json"
            write_cases(spec, [{"id": str(r.row), "conversation": conversation(r)} for r in rows],
                        cases)
            extra = ["--adapter", str(adapter)] if adapter else []
            proc = subprocess.run([str(driver), "--model", str(gguf), "--cases", str(cases),
                                   "--threads", str(threads), *extra], capture_output=True, text=True)
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
        if proc.returncode != 0 or any("error" in x for x in lines):
            raise RuntimeError(f"{driver} failed ({proc.returncode}): {proc.stdout[-500:]}"
                               f"{proc.stderr[-500:]}")
        results = [x for x in lines if "labels" in x]
        if len(results) != len(rows):
            raise RuntimeError(f"{driver} answered {len(results)} of {len(rows)} cases")
        return [{"labels": schema_labels(x["labels"]), "probabilities": x["probabilities"]}
                for x in results]

    return run


def write_cases(spec: dict[str, Any], rows: list[dict[str, Any]], out: Path) -> None:
    """The driver's input for `rows`, written by the Android tools' own `arm_cases.py`.

    It runs as the script the Android Makefile runs, so the cases the ladder feeds the driver are
    made by the same code as the ARM test's.
    """
    tool = Path(__file__).resolve().parents[1] / "mobile" / "android" / "tools" / "arm_cases.py"
    spec_file, conv_file = out.with_name("spec.json"), out.with_name("conversations.jsonl")
    spec_file.write_text(json.dumps(spec), "utf-8")
    conv_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    proc = subprocess.run([sys.executable, str(tool), "--spec", str(spec_file), "--conversations",
                           str(conv_file), "--out", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool.name} failed ({proc.returncode}): {proc.stderr[-800:]}")


def schema_labels(texts: dict[str, str]) -> dict[str, Any]:
    """The driver's value texts ("2", "none") as the schema's values (2, "none")."""
    from psyedge.contract import allowed_values
    from psyedge.plan import PLAN

    values = {s.field: s.values for s in PLAN if s.forced is None}
    return {f: allowed_values(f)[values[f].index(t)] for f, t in texts.items()}


# ---- cache -----------------------------------------------------------------------------------
def _fingerprint(sources: Sequence[Path], rows: Sequence[RiskRow]) -> str:
    """The inputs' sha256 (a folder: its weights') with the rows' texts: what the answers depend on."""
    import hashlib

    from pipeline.io import file_sha256

    files = [f for s in sources for f in (sorted(s.glob("*.safetensors")) if s.is_dir() else [s])]
    h = hashlib.sha256("".join(file_sha256(f) for f in files).encode())
    for r in rows:
        h.update(r.text.encode("utf-8"))
    return h.hexdigest()[:16]


def answers_of(hop: Hop, rows: Sequence[RiskRow], cache_dir: Path) -> list[Answer]:
    """The hop's answers, from its cache file when the model and rows are unchanged."""
    from pipeline.io import write_jsonl

    key = _fingerprint([hop.source, *hop.also_reads], rows)
    path = cache_dir / f"{hop.name}.jsonl"
    if path.is_file():
        cached = [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
        if cached and cached[0].get("fingerprint") == key and len(cached) == len(rows) + 1:
            log.info("%s: %d answers reused from %s", hop.name, len(rows), path)
            return cached[1:]
    t0 = time.perf_counter()
    answers = hop.scorer(rows)
    log.info("%s: %d rows in %.1f s", hop.name, len(rows), time.perf_counter() - t0)
    write_jsonl(path, [{"fingerprint": key, "source": str(hop.source)}, *answers])
    return answers


# ---- metrics (the formulas are benchmarks.metrics') -------------------------------------------
def hop_metrics(rows: Sequence[RiskRow], answers: Sequence[Answer],
                lexicon: Sequence[str]) -> dict[str, Any]:
    """One subset's figures for one hop (see the module docstring)."""
    gold = [r.gold for r in rows]
    model = [str(a["labels"]["risk_flag"]) for a in answers]
    combined = [most_severe([m, x]) for m, x in zip(model, lexicon, strict=True)]
    keep = [i for i, g in enumerate(gold) if g != AMBIGUOUS]
    pos = [gold[i] == "suicidal" for i in keep]
    p = [float(answers[i]["probabilities"]["risk_flag"]["suicidal"]) for i in keep]
    p_lex = [max(p[j], 1.0 if lexicon[i] == "suicidal" else 0.0) for j, i in enumerate(keep)]
    return {
        "model": class_metrics(gold, model),
        "model+lexicon": class_metrics(gold, combined),
        f"suicidal_recall_at_precision_{MIN_PRECISION}": {
            "model": recall_at_precision(pos, p, MIN_PRECISION),
            "model+lexicon": recall_at_precision(pos, p_lex, MIN_PRECISION),
        },
        "ece_p_suicidal": expected_calibration_error(pos, p),
        "rows": len(rows),
    }


def agreement(a: Sequence[Answer], b: Sequence[Answer]) -> dict[str, float]:
    """Per field, the share of rows with the same label in both hops."""
    return {f: round(accuracy([x["labels"][f] for x in a], [y["labels"][f] for y in b]) or 0.0, 4)
            for f in FIELDS}


def run(data: Path, out: Path, hops: Sequence[Hop], absent: dict[str, str]) -> dict[str, Any]:
    """Score every hop on `data`, write the JSON, the Markdown table and the plot."""
    from pipeline.io import atomic_write_json, atomic_write_text
    from psyedge.lexicon import load_lexicon

    t0 = time.perf_counter()
    rows = load_psysuicide(data)
    lex = load_lexicon()
    lexicon = [lex.risk(r.text) for r in rows]
    subsets = {"non_synthetic": [i for i, r in enumerate(rows) if not r.synthetic],
               "synthetic": [i for i, r in enumerate(rows) if r.synthetic]}
    report: dict[str, Any] = {"hops": {}, "absent": dict(absent)}
    lexicon_only = [{"labels": {"risk_flag": x}, "probabilities": {
        "risk_flag": {"suicidal": 1.0 if x == "suicidal" else 0.0}}} for x in lexicon]
    report["lexicon"] = {s: hop_metrics([rows[i] for i in idx], [lexicon_only[i] for i in idx],
                                        ["none"] * len(idx))["model"] for s, idx in subsets.items()}
    previous: list[Answer] | None = None
    reference: list[Answer] | None = None  # the fine-tuned model in PyTorch, once scored
    scored: dict[str, list[Answer]] = {}
    for hop in hops:
        if hop.previous is not None:
            previous = scored[hop.previous]
        answers = answers_of(hop, rows, out / "hops")
        block: dict[str, Any] = {"source": str(hop.source)}
        for s, idx in subsets.items():
            block[s] = hop_metrics([rows[i] for i in idx], [answers[i] for i in idx],
                                   [lexicon[i] for i in idx])
        if previous is not None:
            block["agreement_with_previous"] = agreement(answers, previous)
        if reference is not None:
            # What the deployed file loses against the model that was trained: the acceptance
            # is per field and on the suicidal recall, not only hop by hop.
            block["agreement_with_pytorch"] = agreement(answers, reference)
        if hop.name == REFERENCE_HOP:
            reference = answers
        report["hops"][hop.name] = block
        previous = scored[hop.name] = answers
    report["meta"] = {"data": str(data), "rows": len(rows),
                      "non_synthetic": len(subsets["non_synthetic"]),
                      "synthetic": len(subsets["synthetic"]),
                      "seconds": round(time.perf_counter() - t0, 1)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / LADDER_JSON, report)
    atomic_write_text(out / LADDER_MD, markdown(report))
    plot(report, out / LADDER_PNG)
    return report


# ---- output ----------------------------------------------------------------------------------
def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The table a README or note quotes: one line per hop, non-synthetic rows."""
    head = ("| hop | suicidal P / R (model) | suicidal P / R (+lexicon) | "
            f"R at P>={MIN_PRECISION} (+lexicon) | ECE P(suicidal) | agreement with previous |")
    lines = [head, "|---|---|---|---|---|---|"]
    lex = report["lexicon"]["non_synthetic"]["suicidal"]
    lines.append(f"| lexicon alone | {_f(lex['precision'])} / {_f(lex['recall'])} | | | | |")
    key = f"suicidal_recall_at_precision_{MIN_PRECISION}"
    for name, block in report["hops"].items():
        ns = block["non_synthetic"]
        m, c = ns["model"]["suicidal"], ns["model+lexicon"]["suicidal"]
        rap = ns[key]
        agree = block.get("agreement_with_previous")
        agree_s = ", ".join(f"{k.split('_')[0]} {v:.3f}" for k, v in agree.items()) if agree else ""
        lines.append(f"| {name} | {_f(m['precision'])} / {_f(m['recall'])} | "
                     f"{_f(c['precision'])} / {_f(c['recall'])} | "
                     f"{_f(rap['model']['recall'])} ({_f(rap['model+lexicon']['recall'])}) | "
                     f"{_f(ns['ece_p_suicidal'])} | {agree_s} |")
    for name, why in report["absent"].items():
        lines.append(f"| {name} | absent: {why} | | | | |")
    ref = report["hops"].get(REFERENCE_HOP)
    for name, block in report["hops"].items():
        agree = block.get("agreement_with_pytorch")
        if agree and ref:
            delta = (block["non_synthetic"]["model"]["suicidal"]["recall"]
                     - ref["non_synthetic"]["model"]["suicidal"]["recall"])
            lines.append(f"\n{name} vs {REFERENCE_HOP}: "
                         + ", ".join(f"{k.split('_')[0]} {v:.3f}" for k, v in agree.items())
                         + f" of rows agree; suicidal recall (model) {delta:+.3f}.")
    meta = report["meta"]
    lines.append("")
    lines.append(f"{meta['non_synthetic']} non-synthetic rows of {meta['data']} "
                 f"({report['lexicon']['non_synthetic']['suicidal']['support']} suicidal).")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> Path:
    """Suicidal recall and precision per hop, with and without the lexicon, and the lexicon's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.plots import save_figure

    names = list(report["hops"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.2
    series = [("model", "recall"), ("model", "precision"),
              ("model+lexicon", "recall"), ("model+lexicon", "precision")]
    for k, (who, what) in enumerate(series):
        ys = [report["hops"][n]["non_synthetic"][who]["suicidal"][what] or 0.0 for n in names]
        ax.bar([i + (k - 1.5) * width for i in range(len(names))], ys, width, label=f"{who} {what}")
    lex = report["lexicon"]["non_synthetic"]["suicidal"]
    ax.axhline(lex["recall"] or 0.0, color="black", ls="--", lw=1, label="lexicon alone recall")
    ax.axhline(0.9, color="gray", ls=":", lw=1, label="recall goal 0.90")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("suicidal, non-synthetic held-out rows")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def build_hops(args: argparse.Namespace) -> tuple[list[Hop], dict[str, str]]:
    """The hops the arguments make available, and why the others are absent."""
    hops: list[Hop] = []
    absent: dict[str, str] = {}

    def want(name: str, path: Path | None, make: Callable[[Path], Scorer]) -> None:
        if path is None:
            absent[name] = "not given"
        elif not path.exists():
            absent[name] = f"{path} does not exist"
        else:
            hops.append(Hop(name, path, make(path)))

    want("base zero-shot", args.base_gguf, lambda p: screener_scorer(p, args.template, args.threads))
    want(REFERENCE_HOP, args.merged, lambda p: torch_scorer(p, args.template))
    want("f16 GGUF", args.f16, lambda p: screener_scorer(p, args.template, args.threads))
    quants = dict(parse_quant(q) for q in args.quant)
    for qtype, path in quants.items():
        want(f"{qtype} GGUF", path, lambda p: screener_scorer(p, args.template, args.threads))
        if hops and hops[-1].name == f"{qtype} GGUF" and args.f16 is not None and args.f16.exists():
            # Each quant type is made from the f16 file: compare with it, not with another type.
            hops[-1] = Hop(hops[-1].name, hops[-1].source, hops[-1].scorer, previous="f16 GGUF")
    if args.adapter is not None and args.base_gguf is not None:
        # The fine-tune unquantized on the base file it was trained against (convert.lora_gguf).
        base = args.base_gguf
        want(ADAPTER_HOP, args.adapter,
             lambda p: screener_scorer(base, args.template, args.threads, adapter=p))
        if hops[-1].name == ADAPTER_HOP:
            ref = REFERENCE_HOP if any(h.name == REFERENCE_HOP for h in hops) else None
            hops[-1] = Hop(ADAPTER_HOP, args.adapter, hops[-1].scorer, previous=ref, also_reads=(base,))
    elif args.adapter is not None:
        absent[ADAPTER_HOP] = "--adapter needs --base-gguf (the base it is applied on)"
    ship = args.android_quant or next(iter(quants), None)
    # What the Android hop runs: a --quant file, or (`lora`) the base GGUF with the adapter.
    target = (ADAPTER_HOP, args.base_gguf, args.adapter) if ship == LORA else (
        f"{ship} GGUF", quants.get(ship or ""), None)
    if args.driver is None or ship is None:
        absent["Android engine"] = "no --driver (or no --quant) given"
    elif target[0] not in {h.name for h in hops} or target[1] is None:
        absent["Android engine"] = (f"--android-quant {ship}: no adapter hop (needs --adapter and "
                                    "--base-gguf)" if ship == LORA else
                                    f"--android-quant {ship}: no such --quant hop")
    else:
        name, gguf, adapter = target
        assert gguf is not None
        want("Android engine", args.driver,
             lambda p: driver_scorer(p, gguf, args.template, args.threads, adapter))
        if hops[-1].name == "Android engine":
            reads = (gguf, adapter) if adapter else (gguf,)
            hops[-1] = Hop(hops[-1].name, hops[-1].source, hops[-1].scorer, previous=name,
                           also_reads=reads)
    return hops, absent


def parse_quant(spec: str) -> tuple[str, Path]:
    """`TYPE=PATH` (e.g. `Q8_0=models/gemma-cpu/model-Q8_0.gguf`) -> (TYPE, PATH)."""
    qtype, sep, path = spec.partition("=")
    if not sep or not qtype or not path:
        raise SystemExit(f"--quant {spec!r}: expected TYPE=PATH, e.g. Q8_0=models/run/model-Q8_0.gguf")
    return qtype, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ladder",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="PsySUICIDE-format held-out rows")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--base-gguf", type=Path, help="the untrained base as a GGUF")
    ap.add_argument("--merged", type=Path, help="the merged fine-tuned checkpoint folder")
    ap.add_argument("--f16", type=Path)
    ap.add_argument("--quant", action="append", default=[], metavar="TYPE=PATH",
                    help="a quantized GGUF of the merged model (repeatable)")
    ap.add_argument("--adapter", type=Path,
                    help="the LoRA adapter GGUF (make lora-gguf), scored on --base-gguf")
    ap.add_argument("--driver", type=Path, help="psyedge_driver built for this machine")
    ap.add_argument("--android-quant", metavar="TYPE",
                    help="the --quant file the Android hop runs (default: the first; "
                         "`lora`: --base-gguf with --adapter)")
    ap.add_argument("--template", default="raw", help="chat template of the model (default raw)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("psyedge").setLevel(logging.WARNING)
    hops, absent = build_hops(args)
    report = run(args.data, args.out, hops, absent)
    print(markdown(report))
    print(f"wrote {args.out / LADDER_JSON}, {args.out / LADDER_MD}, {args.out / LADDER_PNG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
