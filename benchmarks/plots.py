"""PNG plots of a benchmark run: latency psyedge vs plain, confusion matrices, PR curve, memory.

Every plot says which model and machine it is for in its title and puts units on its axes: a
plot that leaves the file is read without the report next to it. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

log = logging.getLogger(__name__)

PSYEDGE_COLOR = "#1f77b4"
PLAIN_COLOR = "#ff7f0e"
DPI = 110


def save_figure(fig: Any, path: Path) -> Path:
    """Write the figure through a temporary name, so a crash never leaves half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


#: Bar colours per side of the latency comparison: psyedge, then the peers (benchmarks.peers).
SIDE_COLORS = {"psyedge": PSYEDGE_COLOR, "json_schema": PLAIN_COLOR, "gbnf": "#2ca02c",
               "chat_json": "#8c564b", "outlines": "#9467bd", "plain": "#7f7f7f"}


def latency_bars(rows: Sequence[Mapping[str, Any]], sides: Mapping[str, str], model: str, machine: str,
                 path: Path) -> Path:
    """Grouped bars of median latency (ms, log scale) per case and side; plain/psyedge ratios on top.

    `rows`: `{"label", "<side>_ms", "<side>_ratio"}` (ratio = side / psyedge); `sides`: side ->
    legend text. A side a case did not measure has no bar.
    """
    present = [k for k in sides if any(r.get(f"{k}_ms") for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(rows) + 2), 4.8))
    xs = list(range(len(rows)))
    width = 0.8 / max(1, len(present))
    top = 1.0
    for k, side in enumerate(present):
        values = [r.get(f"{side}_ms") or float("nan") for r in rows]
        offset = (k - (len(present) - 1) / 2) * width
        ax.bar([x + offset for x in xs], values, width, label=sides[side],
               color=SIDE_COLORS.get(side, "gray"))
        top = max([top] + [v for v in values if v == v])
        ratio_key = f"{side}_ratio"
        for x, r in zip(xs, rows, strict=True):
            if r.get(ratio_key):
                ax.annotate(f"{r[ratio_key]:.2f}x", (x + offset, r[f"{side}_ms"]), textcoords="offset points",
                            xytext=(0, 3), ha="center", fontsize=8, fontweight="bold")
    ax.set_xticks(xs, [str(r["label"]) for r in rows], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylim(top=top * 4)
    ax.set_ylabel("median latency (ms, log scale)")
    ax.set_xlabel("benchmark case (label on a peer's bar = peer / psyedge; >1 means psyedge is faster)")
    ax.set_title(f"Latency: psyedge vs its peers\n{model} on {machine}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    ax.grid(axis="y", which="both", alpha=0.3)
    return save_figure(fig, path)


def _matrix(ax: Any, matrix: Sequence[Sequence[int]], labels: Sequence[Any], title: str) -> Any:
    n = len(labels)
    im = ax.imshow(matrix, cmap="Blues", vmin=0)
    peak = max((max(row) for row in matrix), default=0) or 1
    for i in range(n):
        for j in range(n):
            v = matrix[i][j]
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8 if n > 6 else 10,
                    color="white" if v > peak / 2 else "black")
    ax.set_xticks(range(n), [str(x) for x in labels], rotation=30 if n <= 6 else 0,
                  ha="right" if n <= 6 else "center")
    ax.set_yticks(range(n), [str(x) for x in labels])
    ax.set_xlabel("model prediction")
    ax.set_ylabel("reference label")
    ax.set_title(title, fontsize=10)
    return im


def confusion(panels: Sequence[tuple[str, Sequence[Sequence[int]]]], labels: Sequence[Any], field: str,
              model: str, path: Path) -> Path:
    """One heatmap per panel (e.g. safety net off / on), counts of conversations in each cell."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    im = None
    for k, (ax, (name, matrix)) in enumerate(zip(axes[0], panels, strict=True)):
        im = _matrix(ax, matrix, labels, name)
        if k:  # the rows are the same reference labels: name them once, on the left
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelleft=False)
    if im is not None:
        bar = fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="conversations (count)")
        bar.locator = MaxNLocator(integer=True)  # counts: no 0.25 ticks
        bar.update_ticks()
    n = sum(sum(r) for r in panels[0][1])
    fig.suptitle(f"Confusion matrix: {field} (n = {n})\n{model}", fontsize=11)
    return save_figure(fig, path)


def pr_plot(curves: Mapping[str, Sequence[Mapping[str, Any]]],
            points: Mapping[str, tuple[float | None, float | None]], title: str, path: Path, *,
            xlabel: str = "recall", ylabel: str = "precision",
            marked_thresholds: Sequence[float] = (), min_precision: float | None = None) -> Path:
    """Precision vs recall: each curve from `benchmarks.metrics.pr_curve` points, each fixed
    predictor (`points`: label -> (recall, precision)) as a marker; thresholds in
    `marked_thresholds` are written on the curves, `min_precision` drawn as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, curve), color in zip(curves.items(), colors, strict=False):
        pts = [p for p in curve if p["precision"] is not None and p["recall"] is not None]
        if not pts:
            continue
        ax.plot([p["recall"] for p in pts], [p["precision"] for p in pts], marker="o", ms=3, lw=1.5,
                color=color, label=label)
        for p in pts:
            if p["threshold"] in marked_thresholds:
                ax.annotate(f"t={p['threshold']:.1f}", (p["recall"], p["precision"]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4), color=color)
    for (label, (recall, precision)), marker in zip(points.items(), "s*^ovD", strict=False):
        if recall is not None and precision is not None:
            ax.scatter([recall], [precision], marker=marker, s=110, color="black", zorder=5, label=label)
    if min_precision is not None:
        ax.axhline(min_precision, color="gray", ls=":", lw=1, label=f"precision {min_precision}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


def memory_bars(mem: Mapping[str, Any], model: str, machine: str, path: Path) -> Path:
    """GGUF file size next to the child process's RSS after import, after load and at peak (MiB)."""
    stages = mem.get("stages", {})
    mib = 2**20
    items = [
        ("GGUF file", mem["file_bytes"]),
        ("RSS after import\n(python + llama.cpp)", (stages.get("import") or {}).get("rss_bytes")),
        ("RSS after load", (stages.get("load") or {}).get("rss_bytes")),
        (f"peak RSS\n(load + {mem.get('assessed', '?')} assessments)", mem["peak_rss_bytes"]),
    ]
    items = [(k, v) for k, v in items if v is not None]
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    colors = ["#7f7f7f"] + ["#2ca02c"] * (len(items) - 2) + ["#d62728"]
    bars = ax.bar([k for k, _ in items], [v / mib for _, v in items], color=colors[: len(items)])
    for bar, (_, v) in zip(bars, items, strict=True):
        ax.annotate(f"{v / mib:.1f} MiB", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=9)
    ax.set_ylabel("memory (MiB)")
    ratio = mem.get("peak_over_file")
    ax.set_title(f"Memory: peak RSS vs GGUF size{f' (peak = {ratio:.1f}x file)' if ratio else ''}\n"
                 f"{model} on {machine}", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
