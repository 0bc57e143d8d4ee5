"""A synthetic labelled set whose labels follow a keyword rule, for testing that training learns.

Real labels are noisy and a tiny model cannot learn them in a minute, so the training tests use
conversations where one keyword decides the answer (`RULES`). A model that reproduces the rule
on held-out conversations has learned to read the prompt and to emit the canonical JSON and EOS;
the untrained model cannot. The files have the pipeline's real formats (`unified_min.jsonl`,
`labeling/results/dataset.jsonl`), so `training.sft` and `training.train` run unchanged on them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from pipeline.io import write_jsonl
from psyedge.contract import FIELDS

#: keyword sentence -> labels. Exactly one of these sentences is in each conversation.
RULES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("我最近总是想到死，觉得活着没有意义。",
     {"depression_level": 3, "anxiety_level": 2, "risk_flag": "suicidal", "student_distress_score": 8}),
    ("期末考试快到了，我担心自己挂科，心里一直很焦虑。",
     {"depression_level": 1, "anxiety_level": 2, "risk_flag": "none", "student_distress_score": 5}),
    ("今天天气很好，我和同学去图书馆学习了。",
     {"depression_level": 0, "anxiety_level": 0, "risk_flag": "none", "student_distress_score": 1}),
)

#: Neutral sentences around the keyword sentence (they carry no label information).
FILLER: tuple[str, ...] = (
    "我是大二的学生。", "我住在学校宿舍。", "这学期课程比较多。", "我想和你聊一聊。",
    "我平时喜欢听音乐。", "我们班有三十个同学。", "周末我一般在家。", "我刚下课。",
)
COUNSELOR: tuple[str, ...] = (
    "你好，谢谢你愿意来聊一聊，最近怎么样？",
    "你能具体说说是什么让你感到这么难受吗？",
    "听起来你承受了很多压力，谢谢你愿意告诉我。",
)


def make_conversation(rng: random.Random, keyword: str) -> list[dict[str, str]]:
    """A short two-or-three-turn conversation with the keyword sentence in the student's turn."""
    parts = rng.sample(FILLER, 2)
    parts.insert(rng.randrange(3), keyword)
    conversation = [{"role": "user", "text": "".join(parts)}]
    if rng.random() < 0.5:
        conversation.insert(0, {"role": "assistant", "text": rng.choice(COUNSELOR)})
    return conversation


def write_rule_dataset(data_dir: Path, n: int, seed: int = 0, id_prefix: str = "syn") -> list[dict[str, Any]]:
    """Write `n` rule-labelled samples as unified_min.jsonl + labeling results; return the samples.

    Each sample is `{id, conversation, labels}`; classes are balanced (i-th sample gets rule i % 3).
    """
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        keyword, labels = RULES[i % len(RULES)]
        samples.append({"id": f"{id_prefix}-{i:05d}", "conversation": make_conversation(rng, keyword),
                        "labels": dict(labels)})
    write_jsonl(data_dir / "processed" / "unified_min.jsonl",
                ({"id": s["id"], "source": "synthetic", "topic": "rule", "conversation": s["conversation"],
                  "meta": {}} for s in samples))
    write_jsonl(data_dir / "labeling" / "results" / "dataset.jsonl",
                ({"id": s["id"], **{k: s["labels"][k] for k in FIELDS}, "provider": "synthetic-rule",
                  "model": "rule", "prompt_version": "test"} for s in samples))
    return samples
