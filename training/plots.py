"""Loss curves from the Trainer's log history (the PNGs a person opens after a run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def _series(history: Iterable[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in history:
        if key in entry and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


def plot_losses(history: list[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write `training_loss.png` and (when evaluated) `training_eval_loss.png`; return the paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt

    written = []
    for key, name, title in (("loss", "training_loss.png", "training loss"),
                             ("eval_loss", "training_eval_loss.png", "validation loss")):
        steps, values = _series(history, key)
        if not steps:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(key)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
        plt.close(fig)
        tmp.replace(path)
        written.append(path)
    return written
