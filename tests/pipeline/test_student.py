"""Student subset: cue rules, reply length, and the labeling tail (ends on a user turn, SDK trim)."""

from __future__ import annotations

from typing import Any

from pipeline import student
from psyedge.prompt import MAX_CHARS, MAX_TURNS, prepare

REPLY = ("我能理解你的压力，我们可以一起把复习计划拆成小步骤，每天留出休息时间，"
         "也练习一下睡前放松，让身体慢慢平静下来。"
         "如果一两周后还是睡不好，或者压力影响到上课和吃饭，请再来找我，我们一起想办法。")


def record(conv: list[tuple[str, str]], keywords: list[str] | None = None) -> dict[str, Any]:
    meta = {"keywords": keywords} if keywords else {}
    return {"id": "x-1", "source": "cpsycound", "topic": None,
            "conversation": [{"role": r, "text": t} for r, t in conv], "meta": meta}


def test_keeps_a_student_in_distress() -> None:
    assert len(REPLY) >= student.MIN_REPLY_CHARS
    small, reason = student.to_min(record([("user", "我是大二学生，考试前很焦虑。"), ("assistant", REPLY)]))
    assert reason is None and small is not None
    assert small["meta"]["student_cues"] == ["学生", "考试",
                                             "大二"] and "焦虑" in small["meta"]["mental_cues"]


def test_drop_reasons_in_rule_order() -> None:
    assert student.select(record([("user", "工作压力很大。"), ("assistant", REPLY)]))[0] == "not_student"
    assert student.select(record([("user", "我是学生，想问选课。"),
                                  ("assistant", REPLY)]))[0] == "no_mental_cue"
    assert student.select(record([("user", "我是学生，很焦虑。"),
                                  ("assistant", "嗯，说说看。")]))[0] == "short_reply"
    # counselor words do not make the client a student
    assert student.select(record([("user", "我很焦虑。"), ("assistant", "学习" + REPLY)]))[0] == "not_student"


def test_psyqa_keywords_count_as_cues() -> None:
    rec = record([("user", "怎么办才好？"), ("assistant", REPLY)], keywords=["考试焦虑", "学业"])
    assert student.select(rec)[0] is None


def test_tail_ends_on_the_last_user_turn_and_fits_the_sdk_trim() -> None:
    conv = []
    for i in range(20):
        conv += [("user", f"第{i}轮：我是学生，很焦虑。" + "很" * 40), ("assistant", REPLY + "再说一句" * 20)]
    small, _ = student.to_min(record(conv))
    assert small is not None
    tail = small["conversation"]
    assert tail[-1]["role"] == "user" and tail[-1]["text"].startswith("第19轮")
    assert len(tail) <= MAX_TURNS and sum(len(t["text"]) for t in tail) <= MAX_CHARS
    assert small["meta"]["trimmed"] is True and small["meta"]["turns_full"] == 40
    turns, cut = prepare(tail)  # a fixed point of the SDK's own check + trim
    assert not cut and [{"role": t.role, "text": t.text} for t in turns] == tail


def test_long_answer_does_not_push_the_user_out() -> None:
    small, _ = student.to_min(record([("user", "我是高三学生，很焦虑。"), ("assistant", "好" * 2500)]))
    assert small is not None and small["conversation"] == [{"role": "user", "text": "我是高三学生，很焦虑。"}]
    assert small["meta"]["trimmed"] is True
