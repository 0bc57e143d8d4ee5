"""`Layout(data_dir)`: the name of every file the stages exchange under one data folder.

`make data` writes the unified JSONL, its student subset, their stats and the labeling shards;
`make label` reads the shards and writes one results folder per teacher; `make sft` writes the
SFT set; the benchmarks read all of them. Spelling each path once here means a stage and its
reader cannot disagree on a name (they did: the shard name was written out in four modules).

    data/
      processed/unified.jsonl, unified_min.jsonl, dropped.jsonl, stats.json, stats_min.json
      labeling/input_part_0001.jsonl ...          (the shards)
      labeling/results/<teacher>/input_part_0001.jsonl, dataset.jsonl, failed.jsonl, cost.json
      labeling/review/queue.jsonl ...              (the human review queue)
      datasets/sft_student_mental.jsonl
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: A labeling shard's file name, its glob and its pattern (the number is the shard's, from 1).
SHARD_NAME = "input_part_{:04d}.jsonl"
SHARD_GLOB = "input_part_*.jsonl"
SHARD_RE = re.compile(r"^input_part_(\d{4})\.jsonl$")


@dataclass(frozen=True)
class Layout:
    """Paths under `data_dir`; nothing here touches the disk except `shards()` (a listing)."""

    data_dir: Path

    @property
    def processed(self) -> Path:
        return self.data_dir / "processed"

    @property
    def unified(self) -> Path:
        return self.processed / "unified.jsonl"

    @property
    def unified_min(self) -> Path:
        """The student subset: what is labeled, trained on and benchmarked."""
        return self.processed / "unified_min.jsonl"

    @property
    def dropped(self) -> Path:
        return self.processed / "dropped.jsonl"

    @property
    def stats(self) -> Path:
        return self.processed / "stats.json"

    @property
    def stats_min(self) -> Path:
        return self.processed / "stats_min.json"

    @property
    def labeling(self) -> Path:
        """The folder of the labeling shards."""
        return self.data_dir / "labeling"

    def shard(self, number: int) -> Path:
        return self.labeling / SHARD_NAME.format(number)

    def shards(self) -> list[Path]:
        """The labeling shards present, in order."""
        if not self.labeling.is_dir():
            return []
        return sorted(p for p in self.labeling.iterdir() if SHARD_RE.match(p.name))

    @property
    def review(self) -> Path:
        """The human review queue `make review` writes (and Label Studio serves)."""
        return self.labeling / "review"

    @property
    def results_root(self) -> Path:
        """The folder holding one results folder per teacher (`pipeline.teacher` names them)."""
        return self.labeling / "results"

    def results(self, teacher: str | None = None) -> Path:
        return self.results_root / teacher if teacher else self.results_root

    def dataset(self, teacher: str | None = None) -> Path:
        """The merged labels of a teacher (human review corrections applied)."""
        return self.results(teacher) / "dataset.jsonl"

    @property
    def datasets(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def sft(self) -> Path:
        return self.datasets / "sft_student_mental.jsonl"

    @classmethod
    def of_labels(cls, labels: Path) -> Layout:
        """The layout a labels file lies in (`<data>/labeling/results[/<teacher>]/dataset.jsonl`);
        a file outside any `labeling/` folder is taken to lie two levels below its data folder."""
        path = labels.resolve()
        for parent in path.parents:
            if parent.name == "labeling":
                return cls(parent.parent)
        return cls(path.parents[2] if len(path.parents) > 2 else path.parent)
