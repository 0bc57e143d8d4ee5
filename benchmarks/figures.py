"""The figures of a benchmark report: one record schema and one table of names and units.

Every number in `summary.json` is a `Figure`: its name, value and unit, and what is needed to
compare it with another run's (model, prompt tokens, threads, machine). `UNITS` lists every name
the report writes (a `{part}` stands for one part of the name: a case, a field, a peer) with its
unit, so a unit is written once and a figure the table does not know is an error, not a guess.

Names changed in summary version 2 (the SDK figures are measured in-process now): the latency
rows `latency.<case> e2e.psyedge|plain|plain_gbnf` and their `ratio_*_over_psyedge` became
`latency.<case>.e2e.psyedge` and `latency.<case>.e2e.peer.<peer>[.ratio_over_psyedge]` (peers:
json_schema, gbnf, chat_json, outlines, all measured interleaved with psyedge), and
`e2e.plain_<grammar>.schema_validity` became `e2e.peer.<peer>.schema_validity`; `latency.<case>
e2e, every guess wrong.psyedge` and its `ratio_plain_json_schema_over_psyedge` became
`latency.<case>.e2e.every_guess_wrong.psyedge` and `...every_guess_wrong.peer.<peer>.ratio_over_psyedge`
(the peer's interleaved median over psyedge's worst case), `latency.<case> prefill only.psyedge`
became `latency.<case>.prefill_only`, and `latency.<case> session +1 turn of N tokens (...).psyedge`
became `latency.<case>.session.reassess` (N of the headline size) and
`latency.<case>.session.turn_<N>tok.reassess` (each size), with the turn's prefill and the floor
beside them (`turn_prefill_only`, `floor`). Peers now also run at every prompt size of the model
under test (the two grammar peers beyond the first size: the others take seconds an answer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import accuracy as acc
from benchmarks import metrics

#: The unit of a stage benchmark's `extra_info` number follows from its name's suffix.
BY_SUFFIX = "by suffix"
#: Every figure name and its unit, most specific first (the first pattern that matches wins).
UNITS: dict[str, str] = {
    "accuracy.schema_validity": "fraction",
    "accuracy.{field}.accuracy": "fraction",
    "accuracy.{field}.macro_f1": "F1 (0-1)",
    "accuracy.{field}.qwk": "kappa (-1..1)",
    "accuracy.{field}.mae": "levels (0-9 scale)",
    "accuracy.{field}.within_1": "fraction",
    "accuracy.risk.{net}.any_risk_recall": "fraction",
    "accuracy.risk.{net}.suicidal_recall": "fraction",
    "accuracy.risk.{net}.suicidal_precision": "fraction",
    "accuracy.plain.schema_validity": "fraction",
    "accuracy.plain.agreement_with_psyedge": "fraction",
    "accuracy.assess_mean": "ms",
    "memory.gguf_file": "bytes",
    "memory.peak_rss": "bytes",
    "memory.peak_over_file": "ratio",
    "memory.peak_over_import_baseline": "bytes",
    "memory.rss_after_{stage}": "bytes",
    "latency.model load.psyedge": "ms",
    "latency.model load.plain": "ms",
    "latency.model load.ratio_plain_over_psyedge": "ratio",
    "latency.{case}.e2e.peer.{peer}.ratio_over_psyedge": "ratio",
    "latency.{case}.e2e.peer.{peer}.ratio_ceiling": "ratio",
    "latency.{case}.e2e.peer.{peer}.schema_validity": "fraction",
    "latency.{case}.e2e.peer.{peer}": "ms (median)",
    "latency.{case}.e2e.every_guess_wrong.peer.{peer}.ratio_over_psyedge": "ratio",
    "latency.{case}.e2e.every_guess_wrong.assess_over_prefill_only": "ratio",
    "latency.{case}.e2e.every_guess_wrong.decode_calls": "calls",
    "latency.{case}.e2e.every_guess_wrong.psyedge": "ms (median)",
    "latency.{case}.e2e.assess_over_prefill_only": "ratio",
    "latency.{case}.e2e.decode_calls": "calls",
    "latency.{case}.e2e.psyedge": "ms (median)",
    "latency.{case}.prefill_only": "ms (median)",
    "latency.{case}.prefill_tokens_per_s": "tokens/s",
    "latency.{case}.answer_decode_est": "ms",
    "latency.{case}.session.turn_{n}tok.reassess_over_turn_prefill": "ratio",
    "latency.{case}.session.turn_{n}tok.floor_over_turn_prefill": "ratio",
    "latency.{case}.session.turn_{n}tok.{what}": "ms (median)",
    "latency.{case}.session.reassess": "ms (median)",
    "latency.{case}.session.turn_prefill_only": "ms (median)",
    "latency.{case}.session.floor": "ms (median)",
    "latency.{case}.session.reassess_over_turn_prefill": "ratio",
    "latency.{case}.session.floor_over_turn_prefill": "ratio",
    "bench_{file}.{label}.{key}": BY_SUFFIX,
    "bench_{file}.{label}": "s (median)",
}
#: Name suffix -> unit, for the numbers stage benchmarks put in `extra_info`.
SUFFIX_UNITS: tuple[tuple[str, str], ...] = (
    ("_per_s", "per s"), ("_per_step", "s per step"), ("_mib", "MiB"), ("_ms", "ms"), ("_s", "s"),
    ("_bytes", "bytes"), ("_usd", "USD"), ("_rpm", "requests/min"), ("_over_limit", "ratio"))
_PATTERNS = [(re.compile("^" + re.sub(r"\\\{\w+\\\}", ".+", re.escape(k)) + "$"), v)
             for k, v in UNITS.items()]


def unit_of(name: str) -> str:
    """The unit of figure `name` from `UNITS`; KeyError names a figure the table lacks."""
    for pattern, unit in _PATTERNS:
        if pattern.match(name):
            if unit != BY_SUFFIX:
                return unit
            found = suffix_unit(name)
            if found:
                return found
    raise KeyError(f"figure {name!r} is not in benchmarks.figures.UNITS: add it with its unit")


def suffix_unit(key: str) -> str | None:
    return next((unit for suffix, unit in SUFFIX_UNITS if key.endswith(suffix)), None)


@dataclass
class Context:
    """What every figure of this run shares."""

    model: str
    threads: int | None
    machine: str


@dataclass(frozen=True)
class Figure:
    """One number of the summary with what is needed to compare it; `model=None` and
    `threads=None` say "not applicable" (e.g. a data-stage wall time)."""

    name: str
    value: float | int | None
    unit: str
    model: str | None
    prompt_tokens: float | None
    threads: int | None
    machine: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "model": self.model,
                "prompt_tokens": self.prompt_tokens, "threads": self.threads, "machine": self.machine,
                **self.extra}


def figure(ctx: Context, name: str, value: float | int | None, *, prompt_tokens: float | None,
           model: str | None = "", threads: int | None = -1, **extra: Any) -> dict[str, Any]:
    """A figure record (its unit from `UNITS`); model and threads default to the run's."""
    return Figure(name, value, unit_of(name), ctx.model if model == "" else model, prompt_tokens,
                  ctx.threads if threads == -1 else threads, ctx.machine, extra).to_dict()


def model_label(path: Path) -> str:
    """`<run folder>/<file>` (e.g. `tiny/model-Q4_K_M.gguf`): every run names its file the same."""
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


#: Numbers of an SDK latency record (`benchmarks.sdk_latency`) -> figure name after the case.
SDK_FIGURES: dict[str, str] = {
    "psyedge_assess_ms": "e2e.psyedge",
    "psyedge_decode_calls": "e2e.decode_calls",
    "total_over_prefill": "e2e.assess_over_prefill_only",
    "psyedge_worst_ms": "e2e.every_guess_wrong.psyedge",
    "psyedge_worst_decode_calls": "e2e.every_guess_wrong.decode_calls",
    "worst_over_prefill": "e2e.every_guess_wrong.assess_over_prefill_only",
    "prefill_only_ms": "prefill_only",
    "session_over_turn_prefill": "session.reassess_over_turn_prefill",
    "session_floor_over_turn_prefill": "session.floor_over_turn_prefill",
    "session_reassess_ms": "session.reassess",
    "turn_prefill_only_ms": "session.turn_prefill_only",
    "session_floor_ms": "session.floor",
}


def sdk_figures(ctx: Context, cases: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Figures of the SDK latency records: their numbers, the peers, prefill tokens/s, the
    answer's decode time (assess minus prefill-only: both medians, so an estimate, said in the
    name) and the session sizes."""
    out = []
    for name, rec in cases.items():
        model = model_label(Path(rec["model"])) if rec.get("model") else None
        tokens = (rec.get("prefix_tokens") or 0) + (rec.get("new_tokens") or 0) or None
        common = {"prompt_tokens": tokens, "model": model, "threads": rec.get("threads")}
        for key, fname in SDK_FIGURES.items():
            if metrics.is_number(rec.get(key)):
                out.append(figure(ctx, f"latency.{name}.{fname}", rec[key], **common))
        for key, peer in rec.items():
            if key.startswith("peer_"):
                stem = f"latency.{name}.e2e.peer.{key.removeprefix('peer_')}"
                info = {"rounds": rec.get("peers_rounds"), "psyedge_ms": rec.get("peers_psyedge_ms")}
                out.append(figure(ctx, stem, peer["ms"], **common, **info))
                out.append(figure(ctx, f"{stem}.ratio_over_psyedge", peer["ratio"], **common, **info,
                                  min_round_ratio=peer["min_round_ratio"]))
                out.append(figure(ctx, f"{stem}.schema_validity", peer["validity"], **common))
                if metrics.is_number(peer.get("ceiling")):
                    out.append(figure(ctx, f"{stem}.ratio_ceiling", peer["ceiling"], **common,
                                      prefill_only_ms=rec.get("prefill_only_ms")))
                worst = rec.get("psyedge_worst_ms")
                if metrics.is_number(worst) and worst:
                    # The peer's median does not depend on psyedge's guesses: against the worst case.
                    wname = f"latency.{name}.e2e.every_guess_wrong.peer.{key.removeprefix('peer_')}"
                    out.append(figure(ctx, f"{wname}.ratio_over_psyedge", peer["ms"] / worst, **common,
                                      rounds=rec.get("peers_rounds")))
        if metrics.is_number(rec.get("prefill_only_ms")) and rec.get("new_tokens"):
            out.append(figure(ctx, f"latency.{name}.prefill_tokens_per_s",
                              rec["new_tokens"] / rec["prefill_only_ms"] * 1000, **common,
                              new_tokens=rec["new_tokens"]))
            if metrics.is_number(rec.get("psyedge_assess_ms")):
                out.append(figure(ctx, f"latency.{name}.answer_decode_est",
                                  rec["psyedge_assess_ms"] - rec["prefill_only_ms"], **common,
                                  decode_calls=rec.get("psyedge_decode_calls")))
        sizes = rec.get("session_by_turn") or {}
        rows = [r for r in sizes.values() if metrics.is_number(r.get("reassess_ms"))]
        for row in sorted(rows if len(sizes) > 1 else [], key=lambda r: r["turn_tokens"]):
            # One size is the headline figure above already; several get one figure each.
            for key in ("reassess_over_turn_prefill", "floor_over_turn_prefill", "reassess_ms",
                        "turn_ms", "floor_ms"):
                if metrics.is_number(row.get(key)):
                    out.append(figure(ctx, f"latency.{name}.session.turn_{row['turn_tokens']}tok."
                                      f"{key.removesuffix('_ms')}", row[key], **common,
                                      turn_tokens=row["turn_tokens"], decode_calls=row.get("decode_calls")))
    return out


def load_row(accuracy: Mapping[str, Any], model: str, threads: int | None) -> dict[str, Any] | None:
    """The model-load comparison, from the accuracy run: `Screener(...)` (which also decodes the
    instruction prefix once) against `Llama(...)`, in one process, one after the other (the
    file is in the page cache for both)."""
    plain = accuracy.get("plain_path") or {}
    if not metrics.is_number(accuracy.get("load_s")):
        return None
    row: dict[str, Any] = {"label": "model load (warm page cache)", "model": model, "threads": threads,
                           "psyedge_ms": accuracy["load_s"] * 1000}
    if metrics.is_number(plain.get("load_s")):
        row.update(plain_ms=plain["load_s"] * 1000, plain_ratio=plain["load_s"] / accuracy["load_s"])
    return row


def figures(summary: Mapping[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """Flatten every measured number into self-describing figure records."""
    out: list[dict[str, Any]] = []
    parts = summary["parts"]
    a = parts.get("accuracy") or {}
    if "fields" in a:
        tokens = (a.get("prompt_tokens") or {}).get("mean")
        split = (a.get("split") or {}).get("name")
        for name, value in acc.headline(a).items():
            out.append(figure(ctx, f"accuracy.{name}", value, prompt_tokens=tokens, n=a["scored"],
                              split=split))
        plain = a.get("plain_path") or {}
        for key in ("schema_validity", "agreement_with_psyedge"):
            if key in plain:
                out.append(figure(ctx, f"accuracy.plain.{key}", plain[key], prompt_tokens=tokens,
                                  n=plain["n"], split=split))
        if a.get("assess_ms"):
            out.append(figure(ctx, "accuracy.assess_mean", a["assess_ms"]["mean"], prompt_tokens=tokens,
                              n=a["scored"], split=split))
    out += _memory_figures(ctx, parts.get("memory") or {})
    load = load_row(a, ctx.model, ctx.threads) if "fields" in a else None
    if load:
        common = {"prompt_tokens": None, "threads": ctx.threads, "rounds": 1}
        out.append(figure(ctx, "latency.model load.psyedge", load["psyedge_ms"], **common))
        if "plain_ms" in load:
            out.append(figure(ctx, "latency.model load.plain", load["plain_ms"], **common))
            out.append(figure(ctx, "latency.model load.ratio_plain_over_psyedge", load["plain_ratio"],
                              **common))
    out += sdk_figures(ctx, (parts.get("latency") or {}).get("cases") or {})
    for fname, block in (parts.get("benchmarks") or {}).items():
        for row in block.get("rows", []):
            extra = row.get("extra", {})
            common = {"prompt_tokens": extra.get("prompt_tokens"), "model": extra.get("model"),
                      "threads": extra.get("threads", extra.get("workers"))}
            stem = f"{Path(fname).stem}.{row['label']}"
            out.append(figure(ctx, stem, row["median_s"], **common, rounds=row.get("rounds"),
                              details={k: v for k, v in extra.items() if k not in common}))
            for key, value in extra.items():  # numeric extras whose name says their unit
                if suffix_unit(key) and metrics.is_number(value):
                    out.append(figure(ctx, f"{stem}.{key}", value, **common, source="extra_info"))
    return out


def _memory_figures(ctx: Context, m: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "peak_rss_bytes" not in m:
        return []
    toks = m.get("prompt_tokens") or []
    tokens = sum(toks) / len(toks) if toks else None
    threads = m.get("threads") or ctx.threads
    out = [figure(ctx, "memory.gguf_file", m["file_bytes"], prompt_tokens=None, threads=None),
           figure(ctx, "memory.peak_rss", m["peak_rss_bytes"], prompt_tokens=tokens, threads=threads,
                  assessed=m.get("assessed")),
           figure(ctx, "memory.peak_over_file", m["peak_over_file"], prompt_tokens=tokens, threads=threads)]
    base = ((m.get("stages") or {}).get("import") or {}).get("rss_bytes")
    if base is not None:  # what the model adds on top of Python + llama.cpp loaded with no model
        out.append(figure(ctx, "memory.peak_over_import_baseline", m["peak_rss_bytes"] - base,
                          prompt_tokens=tokens, threads=threads))
    for stage, snap in (m.get("stages") or {}).items():
        if snap.get("rss_bytes") is not None:
            out.append(figure(ctx, f"memory.rss_after_{stage}", snap["rss_bytes"],
                              prompt_tokens=tokens if stage == "assess" else None, threads=threads))
    return out
