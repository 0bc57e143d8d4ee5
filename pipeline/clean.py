"""`make data`: clean PsyQA, CPsyCounD and CPsyCounE into one JSONL, its student subset and shards.

    python -m pipeline.clean --psyqa FILE --cpsycound DIR --cpsycoune DIR --data-dir DIR [--strict]

Writes, under `DATA_DIR`:
- `processed/unified.jsonl`: `{id, source, topic, conversation: [{role, text}], meta}`, sources in
  the order cpsycound, cpsycoune, psyqa, files in natural order (case_2 before case_10);
- `processed/dropped.jsonl`: every file or question not kept, with its path and reason;
- `processed/stats.json` + `processed/topic_hist.png`: counts, drops, average turns, topics, PII;
- `processed/unified_min.jsonl` + `stats_min.json`: the student subset (`pipeline.student`);
- `labeling/input_part_0001.jsonl`, ...: the student subset in shards of 300 lines (stale shards
  from an earlier, longer run are removed).

Cleaning, for every source after its parser stripped the speaker prefixes: text normalised with the
SDK's `psyedge.prompt.normalise_text` (full-width spaces, zero-width characters, blank lines: the
same function inference applies), PII replaced by placeholders (`pipeline.pii`), filler counselor
replies ("嗯。", "好的") removed, consecutive turns of one role merged, and a dialogue left with one
side only dropped (`one_speaker`). Everything streams: one record in memory at a time.

Omitting an input option reads the shipped sample under `pipeline/samples/`; an empty value
(`--psyqa ""`) skips that source. Bad inputs never stop the run: they land in `dropped.jsonl` and
the summary; `--strict` turns any drop into exit code 1. A missing input path is exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from pipeline import pii, student
from pipeline.io import atomic_open, atomic_write_json, dumps_line
from pipeline.layout import SHARD_GLOB, SHARD_NAME, Layout
from pipeline.parsers import SOURCES, Drop, Record, count_inputs, iter_source
from pipeline.parsers.base import is_filler
from psyedge.prompt import normalise_text

log = logging.getLogger(__name__)

SAMPLES = Path(__file__).resolve().parent / "samples"
#: The embedded default input of each source (the real formats, synthetic text).
DEFAULT_INPUTS: dict[str, Path] = {
    "psyqa": SAMPLES / "psyqa_sample.json",
    "cpsycound": SAMPLES / "CPsyCounD",
    "cpsycoune": SAMPLES / "CPsyCounE",
}
SHARD_LINES = 300
SHARD_PATTERN = SHARD_NAME
NO_TOPIC = "(no topic)"


def clean_text(text: str, pii_counts: Counter[str] | None = None) -> str:
    """Normalise and scrub one piece of text. Idempotent: clean_text(clean_text(x)) == clean_text(x)."""
    return pii.scrub(normalise_text(text), pii_counts)


def _clean_meta(value: Any, pii_counts: Counter[str]) -> Any:
    """Scrub PII from the free text parsers put in meta (stage directions, preambles)."""
    if isinstance(value, str):
        return clean_text(value, pii_counts)
    if isinstance(value, list):
        return [_clean_meta(v, pii_counts) for v in value]
    if isinstance(value, dict):
        return {k: _clean_meta(v, pii_counts) for k, v in value.items()}
    return value


def clean_record(rec: Record, removed: Counter[str], pii_counts: Counter[str]) -> dict[str, Any] | Drop:
    """A parsed record -> a unified record, or `Drop(one_speaker)` when one side has no text left."""
    turns: list[tuple[str, str]] = []
    for role, raw in rec.turns:
        text = clean_text(raw, pii_counts)
        if not text:
            removed["empty"] += 1
            continue
        if role == "assistant" and is_filler(text):
            removed["filler_reply"] += 1
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, f"{turns[-1][1]}\n{text}")
            removed["merged"] += 1
            continue
        turns.append((role, text))
    roles = {role for role, _ in turns}
    if roles != {"user", "assistant"}:
        side = "no turn has text" if not roles else f"only {next(iter(roles))} turns have text"
        return Drop(rec.source, rec.path, "one_speaker", side, id=rec.id)
    return {"id": rec.id, "source": rec.source, "topic": rec.topic,
            "conversation": [{"role": r, "text": t} for r, t in turns],
            "meta": _clean_meta(rec.meta, pii_counts)}


class Tally:
    """Streaming counters for one output (unified or the student subset): no record is kept."""

    def __init__(self) -> None:
        self.inputs: Counter[str] = Counter()
        self.kept: Counter[str] = Counter()
        self.turns: Counter[str] = Counter()
        self.chars: Counter[str] = Counter()
        self.dropped: dict[str, Counter[str]] = defaultdict(Counter)
        self.topics: dict[str, Counter[str]] = defaultdict(Counter)

    def keep(self, record: dict[str, Any]) -> None:
        src = record["source"]
        self.inputs[src] += 1
        self.kept[src] += 1
        self.turns[src] += len(record["conversation"])
        self.chars[src] += sum(len(t["text"]) for t in record["conversation"])
        self.topics[src][record["topic"] or NO_TOPIC] += 1

    def drop(self, source: str, reason: str) -> None:
        self.inputs[source] += 1
        self.dropped[source][reason] += 1

    def to_dict(self, sources: list[str]) -> dict[str, Any]:
        reasons: Counter[str] = Counter()
        for c in self.dropped.values():
            reasons.update(c)
        return {
            "total": sum(self.kept.values()),
            "by_source": {s: self.kept[s] for s in sources},
            "inputs": {s: self.inputs[s] for s in sources},
            "dropped": dict(sorted(reasons.items())),
            "dropped_by_source": {s: dict(sorted(self.dropped[s].items())) for s in sources},
            "avg_turns": {s: round(self.turns[s] / self.kept[s], 3) if self.kept[s] else 0.0
                          for s in sources},
            "avg_chars": {s: round(self.chars[s] / self.kept[s], 1) if self.kept[s] else 0.0
                          for s in sources},
            "topic_hist": {s: dict(self.topics[s].most_common()) for s in sources},
            "balanced": all(self.inputs[s] == self.kept[s] + sum(self.dropped[s].values()) for s in sources),
        }


class ShardWriter:
    """Writes the student subset in shards of `size` lines into a temporary folder; `commit` moves
    them into `labeling/` together and deletes stale shards of an earlier, longer run."""

    def __init__(self, folder: Path, size: int = SHARD_LINES) -> None:
        self.folder, self.size = folder, size
        self.tmp = folder / ".input_parts.tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.count = 0
        self.lines = 0
        self.fh: IO[str] | None = None

    def write(self, line: str) -> None:
        if self.fh is None or self.lines == self.size:
            if self.fh is not None:
                self.fh.close()
            self.count += 1
            self.lines = 0
            # Kept open across write() calls; closed on rotation, commit() or abort().
            self.fh = open(self.tmp / SHARD_PATTERN.format(self.count), "w", encoding="utf-8")  # noqa: SIM115
        self.fh.write(line)
        self.lines += 1

    def commit(self) -> list[Path]:
        if self.fh is not None:
            self.fh.close()
        names = [SHARD_PATTERN.format(i) for i in range(1, self.count + 1)]
        for name in names:
            os.replace(self.tmp / name, self.folder / name)
        for stale in self.folder.glob(SHARD_GLOB):
            if stale.name not in names:
                stale.unlink()
        self.tmp.rmdir()
        return [self.folder / n for n in names]

    def abort(self) -> None:
        if self.fh is not None:
            self.fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _progress(source: str, path: Path, show: bool) -> Iterator[Record | Drop]:
    total = count_inputs(source, path)
    unit = "file" if total is not None else "question"
    return tqdm(iter_source(source, path), total=total, desc=source, unit=unit,
                disable=None if show else True, leave=False)


def run(inputs: dict[str, Path | None], data_dir: Path, progress: bool = True,
        shard_lines: int = SHARD_LINES) -> dict[str, Any]:
    """Clean every given source into `data_dir`; return the stats (also written to stats.json)."""
    t0 = time.perf_counter()
    layout = Layout(data_dir)
    processed, labeling = layout.processed, layout.labeling
    processed.mkdir(parents=True, exist_ok=True)
    labeling.mkdir(parents=True, exist_ok=True)
    sources = [s for s in SOURCES if inputs.get(s) is not None]
    full, sub = Tally(), Tally()
    removed: Counter[str] = Counter()
    pii_counts: Counter[str] = Counter()
    seen: set[str] = set()
    trimmed = 0
    shards = ShardWriter(labeling, shard_lines)
    try:
        with contextlib.ExitStack() as stack:
            unified = stack.enter_context(atomic_open(layout.unified))
            unified_min = stack.enter_context(atomic_open(layout.unified_min))
            dropped = stack.enter_context(atomic_open(layout.dropped))
            for source in sources:
                path = inputs[source]
                assert path is not None
                for item in _progress(source, path, progress):
                    out = clean_record(item, removed, pii_counts) if isinstance(item, Record) else item
                    if isinstance(out, dict) and out["id"] in seen:
                        out = Drop(source, str(item.path) if isinstance(item, Record) else "", "duplicate",
                                   f"id {out['id']} was already written", id=out["id"])
                    if isinstance(out, Drop):
                        full.drop(source, out.reason)
                        dropped.write(dumps_line(out.to_dict()))
                        continue
                    seen.add(out["id"])
                    full.keep(out)
                    unified.write(dumps_line(out))
                    small, reason = student.to_min(out)
                    if small is None:
                        sub.drop(source, reason or "not_student")
                        continue
                    sub.keep(small)
                    trimmed += small["meta"]["trimmed"]
                    line = dumps_line(small)
                    unified_min.write(line)
                    shards.write(line)
        shard_paths = shards.commit()
    except BaseException:
        shards.abort()
        raise
    stats = full.to_dict(sources)
    stats.update({
        "inputs_paths": {s: str(inputs[s]) for s in sources},
        "removed_turns": dict(sorted(removed.items())),
        "pii_replaced": dict(sorted(pii_counts.items())),
        "seconds": round(time.perf_counter() - t0, 2),
    })
    stats_min = sub.to_dict(sources)
    stats_min.update({"trimmed": trimmed, "shards": len(shard_paths), "shard_lines": shard_lines,
                      "rules": {"min_reply_chars": student.MIN_REPLY_CHARS, "tail_ends_on": "user",
                                "reasons": student.REASONS}})
    atomic_write_json(layout.stats, stats)
    atomic_write_json(layout.stats_min, stats_min)
    plot_topics(stats["topic_hist"], processed / "topic_hist.png")
    if not (stats["balanced"] and stats_min["balanced"]):  # an invariant of this module, not a user error
        log.error("accounting mismatch: inputs != kept + dropped (stats.json "
                  "inputs/by_source/dropped_by_source)")
    return {"stats": stats, "stats_min": stats_min}


#: Fonts with Chinese glyphs, by family name and by file name (matplotlib's font cache may predate
#: a font installed later, so files are looked up too).
CJK_FONTS: tuple[str, ...] = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                              "Source Han Sans SC", "SimHei", "Microsoft YaHei", "PingFang SC",
                              "Droid Sans Fallback")
CJK_FONT_FILES: tuple[str, ...] = ("wqy-microhei", "wqy-zenhei", "notosanscjk", "sourcehansans", "simhei",
                                   "droidsansfallback")


def _cjk_font() -> str | None:
    """A font family with Chinese glyphs if one is installed (PsyQA topics are Chinese keywords)."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    found = next((w for w in CJK_FONTS if w in names), None)
    if found:
        return found
    for path in font_manager.findSystemFonts():
        if any(key in Path(path).name.lower().replace("-", "").replace("_", "") for key in
               (k.replace("-", "") for k in CJK_FONT_FILES)):
            try:
                font_manager.fontManager.addfont(path)
                return font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
    return None


def plot_topics(topic_hist: dict[str, dict[str, int]], out: Path, top: int = 20) -> None:
    """Horizontal bars of the `top` topics per source, one panel per source, written atomically."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, h) for s, h in topic_hist.items() if h] or [("(no data)", {})]
    font = _cjk_font()
    heights = [max(1.5, 0.3 * min(len(h), top) + 1) for _, h in panels]
    with warnings.catch_warnings(), plt.rc_context(
            {"font.sans-serif": [font, "DejaVu Sans"]} if font else {}):
        warnings.simplefilter("ignore")  # missing CJK glyphs: logged once below instead
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, sum(heights)),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        for ax, (source, hist) in zip(axes[:, 0], panels, strict=True):
            items = sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))[:top][::-1]
            ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
            more = f" (top {top} of {len(hist)})" if len(hist) > top else ""
            ax.set_title(f"{source}: {sum(hist.values())} records by topic{more}", fontsize=10)
            for i, (_, v) in enumerate(items):
                ax.text(v, i, f" {v}", va="center", fontsize=8)
        fig.tight_layout()
        with atomic_open(out, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
    if not font:
        log.warning("no CJK font found: Chinese topic names in %s show as boxes (install fonts-wqy-microhei)",
                    out)


def resolve_inputs(args: argparse.Namespace) -> dict[str, Path | None]:
    """Explicit path > shipped sample; "" skips the source. Raises FileNotFoundError for a missing path."""
    out: dict[str, Path | None] = {}
    for source in SOURCES:
        value = getattr(args, source)
        if value == "":
            out[source] = None
            continue
        path = Path(value) if value is not None else DEFAULT_INPUTS[source]
        want_dir = source != "psyqa"
        if not path.exists():
            wanted = ("folder of " + ("case_*.txt" if source == "cpsycound" else "topic folders") if want_dir
                      else "PsyQA JSON file")
            raise FileNotFoundError(f"--{source} {path}: no such {'folder' if want_dir else 'file'}; "
                                    f"pass the {wanted} or \"\" to skip this source")
        if want_dir != path.is_dir():
            raise FileNotFoundError(f"--{source} {path}: expected a {'folder' if want_dir else 'file'}, "
                                    f"got a {'file' if want_dir else 'folder'}")
        out[source] = path
    return out


def summary(result: dict[str, Any], data_dir: Path) -> str:
    """The short report printed at the end of a run."""
    stats, small = result["stats"], result["stats_min"]
    lines = [f"{'source':<10} {'inputs':>7} {'kept':>6} {'dropped':>8} {'avg turns':>9} {'student':>8}  drop "
             "reasons"]
    for s in stats["by_source"]:
        reasons = ", ".join(f"{k}={v}" for k, v in stats["dropped_by_source"][s].items()) or "-"
        lines.append(f"{s:<10} {stats['inputs'][s]:>7} {stats['by_source'][s]:>6} "
                     f"{sum(stats['dropped_by_source'][s].values()):>8} {stats['avg_turns'][s]:>9} "
                     f"{small['by_source'][s]:>8}  {reasons}")
    lines.append(f"total kept {stats['total']}, student subset {small['total']} in {small['shards']} "
                 f"shard(s); PII replaced: {sum(stats['pii_replaced'].values())}; {stats['seconds']} s")
    lines.append(f"outputs: {data_dir / 'processed'} and {data_dir / 'labeling'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.clean", description=__doc__.splitlines()[0])
    ap.add_argument("--psyqa", help="PsyQA JSON file (default: the shipped sample; \"\" skips)")
    ap.add_argument("--cpsycound", help="folder of CPsyCounD case_*.txt (default: the sample; \"\" skips)")
    ap.add_argument("--cpsycoune", help="folder of CPsyCounE topic folders (default: the sample; \"\" skips)")
    ap.add_argument("--data-dir", type=Path, default=Path("data"), help="output root (default: data)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any input was dropped")
    ap.add_argument("--shard-lines", type=int, default=SHARD_LINES, help=argparse.SUPPRESS)
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.shard_lines < 1:
        ap.error(f"--shard-lines must be at least 1, got {args.shard_lines}")
    try:
        inputs = resolve_inputs(args)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not any(inputs.values()):
        print("error: every source was skipped (all three options are \"\"): nothing to clean",
              file=sys.stderr)
        return 2
    try:
        result = run(inputs, args.data_dir, progress=not args.no_progress, shard_lines=args.shard_lines)
    except OSError as exc:
        print(f"error: cannot write under {args.data_dir}: {exc}; check the folder exists and is writable",
              file=sys.stderr)
        return 1
    print(summary(result, args.data_dir))
    n_dropped = sum(result["stats"]["dropped"].values())
    if args.strict and n_dropped:
        print(f"strict: {n_dropped} input(s) dropped, see {args.data_dir / 'processed' / 'dropped.jsonl'}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
