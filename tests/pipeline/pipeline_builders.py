"""Builders of small inputs in the real formats (the pipeline tests write them into tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: PII of every kind the cleaner must remove; each value must not survive in any output.
PII_VALUES: dict[str, str] = {
    "mobile_plus86": "+86 139-1234-5678",
    "mobile_plain": "13800138000",
    "mobile_spaces": "186 0000 1111",
    "landline": "(021) 55667788",
    "email": "li.ming2005@example.edu.cn",
    "qq": "2876543210",
    "wechat": "lm_study2024",
    "idcard": "11010519491231002X",
}


def pii_sentence() -> str:
    """One user sentence carrying every PII value, with the cue words QQ and WeChat need."""
    v = PII_VALUES
    return (f"我的手机是{v['mobile_plus86']}，备用{v['mobile_plain']}，也可以打{v['mobile_spaces']}，"
            f"家里座机{v['landline']}，邮箱{v['email']}，QQ号：{v['qq']}，微信号是{v['wechat']}，"
            f"身份证{v['idcard']}。")


def student_dialogue(n: int, risk: str = "") -> list[tuple[str, str]]:
    """A short student dialogue (passes the student filter) as (speaker, text) lines."""
    return [
        ("来访者", f"我是大二学生，第{n}次来，最近考试压力很大，晚上失眠，很焦虑。{risk}"),
        ("心理咨询师",
         "听起来考试让你非常紧张，睡眠也受到了影响。我们可以先一起看看你的复习安排，再练习一些睡前放松的方法，"
                   "比如腹式呼吸和渐进式肌肉放松，每次十分钟。"),
        ("来访者", "好的，我想试试看。"),
        ("心理咨询师", "很好，下次来的时候告诉我效果怎么样，我们再一起调整计划。"),
    ]


def write_case(folder: Path, name: str, lines: list[tuple[str, str]], encoding: str = "utf-8",
               newline: str = "\n", bom: bool = False, colon: str = "：") -> Path:
    """Write a CPsyCounD case file: one utterance a paragraph, blank lines between."""
    folder.mkdir(parents=True, exist_ok=True)
    text = newline.join(f"{s}{colon}{t}{newline}" if s else f"{t}{newline}" for s, t in lines)
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path = folder / name
    path.write_bytes(data)
    return path


def write_e(root: Path, topic: str, name: str, items: Any) -> Path:
    """Write a CPsyCounE file (any JSON value, so tests can write bad shapes)."""
    folder = root / topic
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return path


def e_items(lines: list[tuple[str, str]]) -> list[str]:
    """CPsyCounE strings from (speaker, text) lines, mapping the CPsyCounD speaker words."""
    words = {"来访者": "求助者", "心理咨询师": "支持者"}
    return [f"{words.get(s, s)}：{t}" for s, t in lines]


def psyqa_item(qid: int, question: str, description: str, answers: list[str],
               keywords: str = "学业,焦虑情绪") -> dict[str, Any]:
    """A record in the public PsyQA schema."""
    return {"question": question, "description": description, "keywords": keywords, "questionID": qid,
            "answers": [{"answer_text": a, "has_label": False, "labels_sequence": []} for a in answers]}


LONG_ANSWER = ("你好，考试焦虑在学生中非常常见。可以从调整复习计划、练习放松方法和改变负面想法三方面入手，"
               "每天留出固定的休息时间，保证睡眠；如果焦虑持续影响生活，请及时联系学校心理中心。")
