"""report.md and the summary table on stdout: the numbers of summary.json as a person reads them.

Tables and plots only read the summary (`benchmarks.report` builds it, `benchmarks.figures`
names its numbers), so a summary from an earlier run renders the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import accuracy as acc
from benchmarks import machine as mach
from benchmarks.figures import Context, figures, load_row, model_label
from benchmarks.peers import PEERS

#: The sides of the latency plot: psyedge, each peer (by its name in figures), the model load's plain side.
SIDES: dict[str, str] = {"psyedge": "psyedge (jump-forward)", "json_schema": "GBNF from JSON schema",
                         "gbnf": "exact hand GBNF", "chat_json": "chat completion, json_object + schema",
                         "outlines": "Outlines (JSON schema)", "plain": "llama-cpp-python Llama()"}


def _short(machine: Mapping[str, Any]) -> str:
    return mach.short(dict(machine))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def latency_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per latency case (and the model load): each side's median ms and its ratio to psyedge."""
    parts = summary["parts"]
    load = load_row(parts.get("accuracy") or {}, summary["model"]["name"], summary["machine"].get("threads"))
    rows = [load] if load else []
    for name, rec in ((parts.get("latency") or {}).get("cases") or {}).items():
        row: dict[str, Any] = {"label": name, "model": model_label(Path(rec["model"])),
                               "threads": rec.get("threads"),
                               "prompt_tokens": rec.get("prefix_tokens", 0) + rec.get("new_tokens", 0),
                               "new_tokens": rec.get("new_tokens"),
                               "psyedge_ms": rec.get("peers_psyedge_ms") or rec.get("psyedge_assess_ms")}
        for peer in PEERS:
            if f"peer_{peer}" in rec:
                row[f"{peer}_ms"] = rec[f"peer_{peer}"]["ms"]
                row[f"{peer}_ratio"] = rec[f"peer_{peer}"]["ratio"]
                row[f"{peer}_validity"] = rec[f"peer_{peer}"]["validity"]
                if "ceiling" in rec[f"peer_{peer}"]:
                    row[f"{peer}_ceiling"] = rec[f"peer_{peer}"]["ceiling"]
        rows.append(row)
    return rows


def write_plots(summary: Mapping[str, Any], out: Path) -> dict[str, str]:
    """Draw every plot the data allows; return name -> file name (relative to `out`)."""
    from benchmarks import plots

    model = summary["model"]["name"]
    machine = _short(summary["machine"])
    files: dict[str, str] = {}
    parts = summary["parts"]
    rows = latency_rows(summary)
    if rows:
        models = sorted({r.get("model") or model for r in rows})
        files["latency"] = plots.latency_bars(rows, SIDES, ", ".join(models), machine,
                                              out / "latency.png").name
    a = parts.get("accuracy") or {}
    if "fields" in a:
        for field, block in a["fields"].items():
            if field == acc.RISK_FIELD:
                panels = [(f"safety net {k.split('_')[1]}", v["confusion"]) for k, v in block.items()]
                labels = next(iter(block.values()))["labels"]
            else:
                panels, labels = [("model", block["confusion"])], block["labels"]
            files[f"confusion_{field}"] = plots.confusion(panels, labels, field, model,
                                                          out / f"confusion_{field}.png").name
        if a.get("pr_curves"):
            files["pr_curve"] = _pr_plot(a, model, out / "pr_curve.png").name
    m = parts.get("memory") or {}
    if "peak_rss_bytes" in m:
        files["memory"] = plots.memory_bars(m, model, machine, out / "memory.png").name
    return files


#: How the accuracy PR plot names its curves and the Screener's own (argmax) answers.
_CURVE_NAMES = {"any_risk": "any risk (1 - P(none))", "suicidal": "suicidal (P(suicidal))"}
_ARGMAX_NAMES = {"lexicon_off": "argmax, safety net off", "lexicon_on": "argmax + lexicon safety net"}


def _pr_plot(a: Mapping[str, Any], model: str, path: Path) -> Path:
    """Risk precision/recall over the threshold sweep, with the argmax operating points."""
    from benchmarks.plots import pr_plot

    curves = {f"{_CURVE_NAMES.get(k, k)}, {c['positives']} positive{'' if c['positives'] == 1 else 's'}":
              c["points"] for k, c in a["pr_curves"].items()}
    risk = a["fields"][acc.RISK_FIELD]
    points = {f"{_ARGMAX_NAMES.get(k, k)} (any risk)": (v["any_risk_recall"], v["any_risk_precision"])
              for k, v in risk.items()}
    return pr_plot(curves, points, f"Risk detection over a probability threshold sweep\n{model}", path,
                   xlabel="recall (share of risk conversations flagged)",
                   ylabel="precision (share of flags that are risk)",
                   marked_thresholds=(0.1, 0.3, 0.5, 0.7, 0.9))


def render_markdown(summary: Mapping[str, Any], plots_: Mapping[str, str]) -> str:
    """report.md: the same numbers as summary.json, as tables a person reads."""
    m = summary["machine"]
    model = summary["model"]
    parts = summary["parts"]
    lines = [
        f"# psyedge benchmark report: {model['name']}",
        "",
        f"Mode **{summary['mode']}**, started {summary['started']}, model `{model['path']}` "
        f"({model['file_bytes'] / 2**20:.1f} MiB).",
        "",
        "## Machine",
        "",
        _table(["CPU", "cores", "threads used", "RAM", "llama-cpp-python", "SIMD"],
               [[m["cpu"], m["cores"], m.get("threads") or "SDK default",
                 f"{(m.get('ram_bytes') or 0) / 2**30:.1f} GiB", m["llama"].get("llama_cpp_python"),
                 " ".join(m["llama"].get("simd") or [])]]),
        "",
    ]
    loads = [x for x in (m.get("load_average_start"), m.get("load_average_end")) if x]
    if loads:
        busiest = max(x[0] for x in loads)
        lines += [f"1-minute load average {' -> '.join(f'{x[0]:.1f}' for x in loads)} on {m['cores']} cores"
                  + (": **the machine was busy, so latencies are inflated and noisy**; rerun on an idle "
                     "machine before comparing." if busiest > m["cores"] else "."), ""]
    lines += _latency_md(summary, plots_)
    mem = parts.get("memory") or {}
    lines += ["## Memory", ""]
    if "peak_rss_bytes" in mem:
        st = mem.get("stages", {})
        mib = 2**20
        lines += [_table(["GGUF file (MiB)", "RSS after import (MiB)", "RSS after load (MiB)",
                          f"peak RSS, load + {mem['assessed']} assessments (MiB)", "peak / file"],
                         [[mem["file_bytes"] / mib, (st.get("import") or {}).get("rss_bytes", 0) / mib,
                           (st.get("load") or {}).get("rss_bytes", 0) / mib, mem["peak_rss_bytes"] / mib,
                           mem["peak_over_file"]]]), ""]
        if "memory" in plots_:
            lines += [f"![memory]({plots_['memory']})", ""]
    else:
        lines += [f"Not measured: {mem.get('error', 'memory part not run')}", ""]
    lines += _accuracy_md(parts.get("accuracy") or {}, plots_)
    stages = parts.get("benchmarks") or {}
    if stages:
        lines += ["## Data stages", ""]
        for name, block in stages.items():
            if block.get("rows"):
                lines += [f"`{name}`:", "", _table(["benchmark", "median (s)", "rounds", "details"],
                          [[r["label"], r["median_s"], r["rounds"],
                            json.dumps(r["extra"], ensure_ascii=False)]
                           for r in block["rows"]]), ""]
            else:
                lines += [f"`{name}`: {block.get('error') or block.get('skipped')}", ""]
    lines += ["## Risk detection on human labels", "",
              "`make bench-risk` scores the lexicon, the rules teacher and the model on PsySUICIDE's human "
              "labels (this report's risk numbers are against the labels file): see `risk.json` and "
              "`risk_pr.png` in this folder once it has run.", ""]
    if summary.get("errors"):
        lines += ["## Failures", ""] + [f"- {e.splitlines()[0]}" for e in summary["errors"]] + [""]
    return "\n".join(lines)


#: Figures of the derived-latency table (name suffixes): what the SDK's own notes quote.
DERIVED = ("prefill_tokens_per_s", "answer_decode_est", "assess_over_prefill_only", "decode_calls",
           "reassess_over_turn_prefill", "floor_over_turn_prefill")


def _latency_md(summary: Mapping[str, Any], plots_: Mapping[str, str]) -> list[str]:
    """The peer table (validity and latency, interleaved), the load row, the derived figures."""
    lat = summary["parts"].get("latency") or {}
    lines = ["## Latency: psyedge and its peers", ""]
    rows = latency_rows(summary)
    if not rows:
        return lines + [f"Not measured: {lat.get('error') or 'latency part not run'}", ""]
    peers = [p for p in PEERS if any(f"{p}_ms" in r for r in rows)]
    lines += ["Each round assesses one conversation with psyedge and then answers it with every peer, "
              "same GGUF, same prompt, greedy (`benchmarks.peers`); medians over the rounds after one "
              "warm-up; ratio = peer / psyedge (>1: psyedge is faster); validity = share of the peer's "
              "outputs the label schema accepts (psyedge's is 1 by construction); in brackets the "
              "ceiling = peer / psyedge's prefill-only time, the most any decoder that prefills the "
              "same new tokens could be ahead.", "",
              _table(["case", "model", "prompt tokens", "threads", "psyedge (ms)"]
                     + [f"{SIDES[p]}: validity / ms / ratio" for p in peers],
                     [[r["label"], r.get("model"), r.get("prompt_tokens"), r.get("threads"),
                       r.get("psyedge_ms")]
                      + [_peer_cell(r, p) for p in peers] for r in rows if "prompt_tokens" in r]), ""]
    load = next((r for r in rows if "prompt_tokens" not in r), None)
    if load:
        lines += [f"Model load (warm page cache): psyedge `Screener()` {_fmt(load['psyedge_ms'], 1)} ms "
                  f"(includes decoding the instruction prefix once), llama-cpp-python `Llama()` "
                  f"{_fmt(load.get('plain_ms'), 1)} ms.", ""]
    derived = [f for f in figures(summary, Context(summary["model"]["name"], None, ""))
               if f["name"].startswith("latency.") and f["name"].endswith(DERIVED)]
    if derived:
        lines += ["Derived: prefill speed, the answer's decode (assess minus prefill-only, an estimate), "
                  "decode calls, overheads over the prefill:", "",
                  _table(["figure", "value", "unit", "threads"],
                         [[f["name"].removeprefix("latency."), f["value"], f["unit"], f["threads"]]
                          for f in derived]),
                  ""]
    if "latency" in plots_:
        lines += [f"![latency]({plots_['latency']})", ""]
    return lines


def _peer_cell(row: Mapping[str, Any], peer: str) -> str:
    if f"{peer}_ms" not in row:
        return "n/a"
    ceiling = f" (<= {_fmt(row[f'{peer}_ceiling'], 2)}x)" if f"{peer}_ceiling" in row else ""
    return (f"{_fmt(row[f'{peer}_validity'], 2)} / {_fmt(row[f'{peer}_ms'], 1)} / "
            f"{_fmt(row[f'{peer}_ratio'], 2)}x{ceiling}")


def _accuracy_md(a: Mapping[str, Any], plots_: Mapping[str, str]) -> list[str]:
    lines = ["## Accuracy", ""]
    if "fields" not in a:
        return lines + [f"Not measured: {a.get('error', 'accuracy part not run')}", ""]
    f = a["fields"]
    led = a["ledger"]
    split = a.get("split", {}).get("note", "")
    lines += [f"Evaluated on {split}.", "",
              f"{a['scored']} of {a['n']} conversations scored (label rows {led['label_rows']}, "
              f"invalid labels {led['invalid_label']}, without conversation {led['no_conversation']}, "
              f"outside the split {led.get('not_in_split', 0)}); schema validity "
              f"{_fmt(a['schema_validity'])}; mean prompt "
              f"{_fmt((a.get('prompt_tokens') or {}).get('mean'), 1)} tokens. "
              "References are the labels file's labels (teacher or human).", ""]
    plain = a.get("plain_path")
    if plain:
        lines += [f"Plain llama-cpp-python path on the same {plain['n']} prompts (`create_completion` + "
                  f"`LlamaGrammar.from_json_schema`, greedy, at most {plain['max_tokens']} tokens): schema "
                  f"validity {_fmt(plain['schema_validity'])}, same labels as psyedge (net off) on "
                  f"{_fmt(plain['agreement_with_psyedge'])} of its valid answers.", ""]
    lines += [_table(["field", "accuracy", "macro-F1", "quadratic weighted kappa"],
                     [[k, f[k]["accuracy"], f[k]["macro_f1"], f[k]["qwk"]] for k in acc.LEVEL_FIELDS]), ""]
    s = f[acc.SCORE_FIELD]
    lines += [_table(["field", "MAE (levels)", "within-1 accuracy", "exact accuracy", "QWK"],
                     [[acc.SCORE_FIELD, s["mae"], s["within_1"], s["accuracy"], s["qwk"]]]), ""]
    rows = []
    for net, block in f[acc.RISK_FIELD].items():
        for c in block["per_class"]:
            rows.append([net.replace("_", " "), c["label"], c["precision"], c["recall"], c["f1"],
                         c["support"], c["predicted"]])
    lines += ["`risk_flag` per class, safety net off (model alone) and on (lexicon may raise the flag):", "",
              _table(["safety net", "class", "precision", "recall", "F1", "support", "predicted"], rows), ""]
    for net, block in f[acc.RISK_FIELD].items():
        lines.append(f"- {net.replace('_', ' ')}: any-risk recall {_fmt(block['any_risk_recall'])}, any-risk "
                     f"precision {_fmt(block['any_risk_precision'])}"
                     + (f", raised by the lexicon {block['raised_by_lexicon']}"
                        if "raised_by_lexicon" in block else ""))
    lines.append("")
    if a.get("pr_curves"):
        curves = a["pr_curves"]
        lines += ["Risk recall over a probability threshold sweep (model probabilities, safety net off):", ""]
        head = ["threshold"] + [f"{k} {m}" for k in curves for m in ("recall", "precision")]
        by_t = zip(*[c["points"] for c in curves.values()], strict=True)
        # Every 0.1 here; summary.json has the full 0.05 grid.
        rows = [[pts[0]["threshold"]] + [v for p in pts for v in (p["recall"], p["precision"])]
                for pts in by_t if round(pts[0]["threshold"] * 10, 6).is_integer()]
        lines += [_table(head, rows), ""]
    for key, name in plots_.items():
        if key.startswith("confusion_") or key == "pr_curve":
            lines += [f"![{key}]({name})", ""]
    return lines


def print_table(summary: Mapping[str, Any]) -> None:
    """The summary table on stdout: the figures a reader looks at first."""
    keep = ("latency.", "memory.peak", "memory.gguf", "accuracy.schema", "accuracy.plain.",
            "accuracy.depression_level.qwk", "accuracy.anxiety_level.qwk",
            "accuracy.student_distress_score.mae", "accuracy.risk.", "bench_")
    rows = [f for f in summary["figures"] if f["name"].startswith(keep)]
    width = max((len(f["name"]) for f in rows), default=10)
    print(f"\npsyedge bench ({summary['mode']}): {summary['model']['name']} on {_short(summary['machine'])}")
    for f in rows:
        v = f["value"]
        if f["unit"] == "bytes" and v is not None:
            text = f"{v / 2**20:10.1f} MiB"
        else:
            text = f"{v:10.3f} {f['unit']}" if isinstance(v, float) else f"{_fmt(v):>10} {f['unit']}"
        tokens = f.get("prompt_tokens")
        extra = f"  ({tokens:.0f} prompt tokens)" if isinstance(tokens, (int, float)) else ""
        print(f"  {f['name']:<{width}} {text}{extra}")


