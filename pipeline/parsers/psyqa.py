"""PsyQA: one JSON array of questions, each with several answers; one record per question.

Two shapes are read (field aliases in `FIELDS`):
- the public release: `{questionID, question, description, keywords: "a,b", answers: [{answer_text,
  has_label, labels_sequence}]}`;
- a scraped variant: `{title, content, answers: [{text, likes}]}` (no id, keywords optional).

The user turn is the question (title) and the description (content) on a new line; a description
that merely repeats the question is not doubled. The assistant turn is the best usable answer:
most likes first (absent likes count as 0), then the longest. An answer is noise (`noise_reason`)
when it is empty, a filler (`同问`, `顶`, `谢谢`), shorter than `MIN_ANSWER_CHARS` letters, a short
advertisement (a link, 公众号, 加我微信...), or a copy of the question. A question with no usable
answer is dropped (`no_usable_answer`). Ids: `psyqa-<questionID>`, else `psyqa-h<hash of the
question>`; both are stable across runs. A repeated id is dropped as `duplicate`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.parsers.base import Drop, Record, is_filler
from pipeline.parsers.jsonstream import JsonStreamError, iter_json_items, sniff_encoding
from psyedge.prompt import normalise_text

SOURCE = "psyqa"

#: Field -> the names it has in the two known shapes (public release first).
FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("questionID", "question_id", "id"),
    "question": ("question", "title"),
    "description": ("description", "content"),
    "keywords": ("keywords", "tags"),
    "answers": ("answers",),
    "answer_text": ("answer_text", "text", "content"),
    "likes": ("likes", "like", "votes"),
}
MIN_ANSWER_CHARS = 20
#: Marks of an advertisement or a redirect; only short answers containing one are noise.
AD_MARKERS: tuple[str,
                  ...] = ("http://", "https://", "www.", "公众号", "加我微信", "加微信", "私信我", "扫码",
                               "关注我", "点击链接", "课程优惠", "免费咨询请")
AD_MAX_CHARS = 120
_LETTERS = re.compile(r"[0-9A-Za-z\u4e00-\u9fff]")


def _get(obj: dict[str, Any], field: str) -> Any:
    for name in FIELDS[field]:
        if name in obj and obj[name] is not None:
            return obj[name]
    return None


def noise_reason(text: str, question: str) -> str | None:
    """Why an (already normalised) answer is unusable, or None when it is fine."""
    if not text:
        return "empty"
    if is_filler(text):
        return "filler"
    if len(_LETTERS.findall(text)) < MIN_ANSWER_CHARS:
        return "too_short"
    if len(text) <= AD_MAX_CHARS and any(m in text for m in AD_MARKERS):
        return "advertisement"
    if question and text == question:
        return "copies_question"
    return None


def _likes(answer: dict[str, Any]) -> int:
    value = _get(answer, "likes")
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


def _keywords(value: Any) -> list[str]:
    if isinstance(value, str):
        parts = re.split(r"[,，、;；\s]+", value)
    elif isinstance(value, list):
        parts = [str(v) for v in value]
    else:
        parts = []
    return [p.strip() for p in parts if p.strip()]


def record_id(obj: dict[str, Any], question: str, description: str) -> str:
    """`psyqa-<questionID>` when the record has one, else a hash of its question text."""
    qid = _get(obj, "id")
    if isinstance(qid, (int, str)) and not isinstance(qid, bool) and str(qid).strip():
        return f"{SOURCE}-{str(qid).strip()}"
    digest = hashlib.sha1(f"{question}\n{description}".encode()).hexdigest()[:12]
    return f"{SOURCE}-h{digest}"


def parse_item(obj: Any, index: int, path: str) -> Record | Drop:
    """One question object -> a `Record` with the user question and the best answer, or a `Drop`."""
    if not isinstance(obj, dict):
        return Drop(SOURCE, path, "bad_schema", f"expected an object, got {type(obj).__name__}", index=index)
    question = normalise_text(str(_get(obj, "question") or ""))
    description = normalise_text(str(_get(obj, "description") or ""))
    rid = record_id(obj, question, description)
    if not question and not description:
        return Drop(SOURCE, path, "no_question", "question/title and description/content are empty",
                    id=rid, index=index)
    answers = _get(obj, "answers")
    if not isinstance(answers, list):
        return Drop(SOURCE, path, "bad_schema", f"answers must be a list, got {type(answers).__name__}",
                    id=rid, index=index)
    if not question or description.startswith(question):
        user = description
    elif not description:
        user = question
    else:
        user = f"{question}\n{description}"
    usable: list[tuple[int, int, int, str]] = []  # (likes, length, -position, text)
    noise: dict[str, int] = {}
    for pos, answer in enumerate(answers):
        raw = _get(answer,
                   "answer_text") if isinstance(answer, dict) else answer if isinstance(answer, str) else None
        text = normalise_text(raw) if isinstance(raw, str) else ""
        why = noise_reason(text, question)
        if why:
            noise[why] = noise.get(why, 0) + 1
            continue
        likes = _likes(answer) if isinstance(answer, dict) else 0
        usable.append((likes, len(text), -pos, text))
    if not usable:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(noise.items())) or "no answers"
        return Drop(SOURCE, path, "no_usable_answer", f"{len(answers)} answers: {detail}", id=rid,
                    index=index)
    likes, _, neg_pos, best = max(usable)
    keywords = _keywords(_get(obj, "keywords"))
    meta: dict[str, Any] = {"index": index, "keywords": keywords, "answers_total": len(answers),
                            "answers_usable": len(usable), "answer_position": -neg_pos}
    if any(_get(a, "likes") is not None for a in answers if isinstance(a, dict)):
        meta["answer_likes"] = likes
    if noise:
        meta["noise_answers"] = noise
    return Record(rid, SOURCE, keywords[0] if keywords else None, [("user", user), ("assistant", best)], path,
                  meta)


def iter_records(path: Path) -> Iterator[Record | Drop]:
    """Stream the questions of one PsyQA file; a syntax or encoding error ends the file with a Drop.

    Questions before the error are kept; the rest of the file is one `Drop` (`bad_json` or
    `undecodable`) that names the line and column, so one broken byte never stops the run.
    """
    index = 0
    try:
        if path.stat().st_size == 0:
            yield Drop(SOURCE, str(path), "empty_file", "0 bytes")
            return
        with open(path, encoding=sniff_encoding(path)) as fh:
            for item in iter_json_items(fh):
                yield parse_item(item, index, str(path))
                index += 1
        if index == 0:
            yield Drop(SOURCE, str(path), "empty_file", "no JSON items (empty array or only whitespace)")
    except JsonStreamError as exc:
        reason = "empty_file" if index == 0 and exc.line == 1 and exc.column == 1 else "bad_json"
        yield Drop(SOURCE, str(path), reason, f"{exc}; the rest of the file is skipped", index=index)
    except UnicodeDecodeError as exc:
        yield Drop(SOURCE, str(path), "undecodable",
                   f"{exc.encoding} cannot decode byte 0x{exc.object[exc.start]:02x} after item {index}; "
                   "the rest of the file is skipped", index=index)
