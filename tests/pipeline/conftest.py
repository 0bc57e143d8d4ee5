"""Fixtures of the pipeline tests: a small clean input tree in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_builders import LONG_ANSWER, e_items, psyqa_item, student_dialogue, write_case, write_e


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A clean little input tree: 3 CPsyCounD cases, 2 CPsyCounE files, 2 PsyQA questions."""
    d, e, q = tmp_path / "in" / "D", tmp_path / "in" / "E", tmp_path / "in" / "psyqa.json"
    for i in (0, 1, 10):
        write_case(d, f"case_{i}.txt", student_dialogue(i))
    write_e(e, "Education", "1.json", e_items(student_dialogue(20)))
    write_e(e, "Family Relationship", "2.json", e_items(student_dialogue(21)))
    q.write_text(json.dumps([psyqa_item(1, "考试前很焦虑怎么办？", "我是高三学生，一考试就紧张失眠。",
                                        [LONG_ANSWER]),
                             psyqa_item(2, "室友关系紧张", "大学宿舍里总是被室友排挤，很孤独。",
                                        [LONG_ANSWER, "顶"])],
                            ensure_ascii=False), encoding="utf-8")
    return {"cpsycound": d, "cpsycoune": e, "psyqa": q}
