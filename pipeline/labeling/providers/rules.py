"""The `rules` provider: an offline, deterministic teacher that needs no model (default of `make demo`).

Risk comes from the SDK's risk lexicon (`psyedge.lexicon.lexicon_risk`), the same safety net the
phone uses, run over the student's own turns only (a counselor asking "有没有想过自杀" is not the
student's risk). Depression, anxiety and distress are keyword heuristics on the user turns:

- a level counts the *distinct* cue words of its table found in the student's words:
  0 cues -> 0, 1-2 -> 1, 3-4 -> 2, 5 or more -> 3 (distinct, so one repeated word is one cue);
- a suicidal or self-harm flag lifts depression to at least 2 (ideation is a depression symptom);
- distress = depression + anxiety (0-6), +1 when intensifiers (非常, 崩溃, ...) appear twice or
  more, +3 for suicidal, +2 for self_harm, +1 for violence, capped at 9.

It is a baseline, not a clinician: its job is to make the pipeline run end to end offline with
labels that vary with the text, and to give a floor the real teacher must beat.
"""

from __future__ import annotations

from typing import Any

from pipeline.labeling.providers.base import Provider
from pipeline.labeling.records import Message, Reply, Usage
from psyedge.contract import canonical_json

#: Depression cues (low mood, anhedonia, hopelessness, guilt, fatigue), as students write them.
DEPRESSION_CUES: tuple[str, ...] = (
    "抑郁", "绝望", "没意思", "没意义", "空虚", "提不起", "没有动力", "没动力", "无望", "自责", "内疚",
    "哭", "难过", "痛苦", "失去兴趣", "不想做", "不想动", "疲惫", "很累", "好累", "麻木", "低落", "沮丧",
    "自卑", "孤独", "没用", "废物", "讨厌自己", "活着", "压抑", "伤心", "心情不好", "不开心",
)

#: Anxiety cues (worry, fear, tension, somatic arousal, sleep).
ANXIETY_CUES: tuple[str, ...] = (
    "焦虑", "紧张", "担心", "害怕", "恐惧", "心慌", "不安", "失眠", "睡不着", "压力", "烦躁", "慌",
    "坐立", "心跳", "手抖", "担忧", "恐慌", "着急", "胸闷", "喘不过气", "出汗", "强迫", "怕",
)

#: Intensifiers: strong wording raises overall distress.
INTENSIFIERS: tuple[str, ...] = ("非常", "特别", "极度", "崩溃", "受不了", "撑不下去", "太难", "每天", "总是")

_RISK_BONUS = {"suicidal": 3, "self_harm": 2, "violence": 1, "none": 0}


def _level(cues: int) -> int:
    return 0 if cues == 0 else 1 if cues <= 2 else 2 if cues <= 4 else 3


def _distinct(table: tuple[str, ...], text: str) -> int:
    return sum(1 for cue in table if cue in text)


def rule_labels(conversation: list[dict[str, Any]]) -> dict[str, Any]:
    """The four labels for a conversation of `{role, text}` turns (deterministic)."""
    from psyedge.lexicon import conversation_risk

    text = "\n".join(t["text"] for t in conversation if t.get("role") == "user")
    risk = conversation_risk(conversation)
    depression = _level(_distinct(DEPRESSION_CUES, text))
    if risk in ("suicidal", "self_harm"):
        depression = max(depression, 2)
    anxiety = _level(_distinct(ANXIETY_CUES, text))
    intense = sum(text.count(w) for w in INTENSIFIERS)
    distress = min(9, depression + anxiety + (1 if intense >= 2 else 0) + _RISK_BONUS[risk])
    return {"depression_level": depression, "anxiety_level": anxiety, "risk_flag": risk,
            "student_distress_score": distress}


class RulesProvider(Provider):
    """Answers from `rule_labels`: reads the conversation, ignores the prompt text."""

    name = "rules"

    async def generate(self, messages: list[Message], conversation: list[dict[str, Any]]) -> Reply:
        """Canonical JSON of the rule labels, finish reason STOP, no tokens billed."""
        return Reply(canonical_json(rule_labels(conversation)), "STOP", Usage())
