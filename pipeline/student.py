"""The student subset: which unified records the labeler sees, and the tail it sees of each.

A record is kept when, in this order (the first failing rule is its drop reason):
1. `not_student`: the student's own words (user turns) or PsyQA keywords contain a `STUDENT_CUES`
   word. Counselor turns are not searched: a counselor saying 学习 does not make the client a student.
2. `no_mental_cue`: the user turns or keywords contain a `MENTAL_CUES` word (distress, mood,
   anxiety, sleep, risk words), so the labels have something to measure.
3. `short_reply`: the counselor's replies hold at least `MIN_REPLY_CHARS` (80) characters in total
   (for PsyQA: the chosen answer). The rule is on the whole dialogue because CPsyCounD replies are
   short turns (median ~50 characters): a per-reply minimum would keep almost nothing, while the
   total rules out dialogues whose counselor side is a few acknowledgements.

The kept tail (`trim_for_labeling`) ends on the last user turn: the labeler rates the student's
state, which the student's latest words show and counselor advice after them does not; it is also
the moment the app screens (right after the student speaks). Counselor turns after the last user
turn are dropped, then the SDK's `psyedge.prompt.trim` keeps the tail of at most 12 turns / 2,000
characters at turn boundaries. Ending on a user turn guarantees the tail has a user turn even when
the last answer is long (PsyQA answers reach 2,000 characters), and the stored tail is a fixed
point of `psyedge.prompt.prepare`, so the labeler, the SFT set and inference see the same text.
"""

from __future__ import annotations

from typing import Any

from psyedge.prompt import Turn, trim

MIN_REPLY_CHARS = 80

#: Campus life, study and exams (one table; extend it here). Origin: the issue's list plus words
#: that CPsyCounD clients use for school (班主任, 辅导员, 挂科) and PsyQA's study keywords (学业).
STUDENT_CUES: tuple[str, ...] = (
    "学生", "大学", "考试", "宿舍", "室友", "舍友", "寝室", "老师", "作业", "高考", "考研", "中考", "期末",
    "同学", "学校", "校园", "班主任", "辅导员", "导师", "上课", "课堂", "逃课", "挂科", "成绩", "学习",
    "学业",
    "高中", "初中", "研究生", "本科", "毕业", "论文", "专业课", "考公", "保研", "留学", "复读", "补课",
    "升学", "备考", "军训", "社团", "实习", "排名", "分数", "模考", "月考", "晚自习", "新生", "上学", "放学",
    "初一", "初二", "初三", "高一", "高二", "高三", "大一", "大二", "大三", "大四", "研一", "研二", "研三",
)

#: Mood, anxiety, stress, sleep and risk words (the labels' subject matter).
MENTAL_CUES: tuple[str, ...] = (
    "焦虑", "抑郁", "压力", "紧张", "失眠", "睡不着", "难过", "痛苦", "崩溃", "绝望", "无助", "害怕", "恐惧",
    "担心", "烦躁", "烦恼", "困扰", "自卑", "孤独", "迷茫", "沮丧", "情绪", "心情", "哭", "累", "疲惫",
    "自杀", "想死", "不想活", "轻生", "自残", "自伤", "割腕", "伤害", "活着没意思", "没意义", "空虚",
    "心慌", "不安", "内疚", "自责", "委屈", "生气", "愤怒", "厌学", "讨厌自己", "抑郁症", "焦虑症", "强迫",
    "低落", "灰暗", "没胃口", "噩梦", "消失", "没用", "废物", "失败者", "一无是处", "撑不下去", "不想去学校",
)

#: Drop reasons of the student filter, in the order the rules run.
REASONS: dict[str, str] = {
    "not_student": "no student cue in the user turns or keywords",
    "no_mental_cue": "no mental-health cue in the user turns or keywords",
    "short_reply": f"the counselor replies hold fewer than {MIN_REPLY_CHARS} characters in total",
    "no_user_turn": "no user turn left to end the tail on",
}


def _cues(table: tuple[str, ...], text: str) -> list[str]:
    return [cue for cue in table if cue in text]


def select(record: dict[str, Any]) -> tuple[str | None, dict[str, list[str]]]:
    """(drop reason or None, matched cues) for one unified record."""
    conv = record["conversation"]
    haystack = "\n".join(t["text"] for t in conv if t["role"] == "user")
    haystack += "\n" + " ".join(record.get("meta", {}).get("keywords", []))
    cues = {"student": _cues(STUDENT_CUES, haystack), "mental": _cues(MENTAL_CUES, haystack)}
    if not cues["student"]:
        return "not_student", cues
    if not cues["mental"]:
        return "no_mental_cue", cues
    if sum(len(t["text"]) for t in conv if t["role"] == "assistant") < MIN_REPLY_CHARS:
        return "short_reply", cues
    return None, cues


def trim_for_labeling(conversation: list[dict[str, str]]) -> tuple[list[dict[str, str]], bool]:
    """The tail the labeler sees: up to the last user turn, then the SDK's trim. Also: was it cut?"""
    last_user = max((i for i, t in enumerate(conversation) if t["role"] == "user"), default=-1)
    if last_user < 0:
        return [], True
    head = [Turn(t["role"], t["text"]) for t in conversation[: last_user + 1]]
    kept, cut = trim(head)
    return [{"role": t.role, "text": t.text} for t in kept], cut or last_user + 1 < len(conversation)


def to_min(record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The student-subset form of a unified record, or (None, drop reason)."""
    reason, cues = select(record)
    if reason:
        return None, reason
    tail, cut = trim_for_labeling(record["conversation"])
    if not tail:
        return None, "no_user_turn"
    meta = dict(record.get("meta", {}))
    meta.update({"turns_full": len(record["conversation"]), "trimmed": cut,
                 "student_cues": cues["student"], "mental_cues": cues["mental"]})
    return {"id": record["id"], "source": record["source"], "topic": record["topic"],
            "conversation": tail, "meta": meta}, None
