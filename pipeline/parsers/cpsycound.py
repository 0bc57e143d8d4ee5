"""CPsyCounD: one dialogue per `case_*.txt`, one utterance a paragraph, `来访者：` / `心理咨询师：`.

How the irregular lines of the real files are read (678 of 3,084 files have some):
- A line that opens with a speaker and a colon (ASCII `:` or full-width `：`) starts a turn.
  Counselor speakers (`心理咨询师`, `咨询师`, also `心理咨询师（扮演丈夫）` in role play: the
  counselor is still the one talking) are `assistant`. Client speakers (`来访者`, `来访者1`,
  `来访者（姚先生）`, `求助者`) are `user`.
- Any other short name before a colon (`妈妈`, `女儿`, `父母`, `A`/`B`, a given name such as `小强`)
  is a client-side voice: family members in a family session, or the client voicing two sides of
  a dilemma in a two-chair exercise. They map to `user`; their names are listed in
  `meta.other_speakers`. A name is at most 6 characters of letters/CJK (digits may follow, as in
  `来访者2`), contains no discourse word from `NOT_SPEAKERS` (`此外：`, `例如：`, `第一步：`) and has
  none of the clause characters in `NOT_NAME_CHARS` (`我觉得：`, `你可以：`), so advice headings stay text.
- A line without a speaker (numbered advice lists `1. 深呼吸：...`, `此外，...`) continues the current
  turn, joined by a newline.
- A line wholly in parentheses (`（一段时间后）`, `（对话结束）`) is a stage direction: it goes to
  `meta.stage_directions`, not into any turn. So does a parenthesis opening a turn
  (`来访者：（沉默片刻）是的` keeps `是的`). Parentheses inside a sentence (`（CBT）`, `（化名）`) are
  content and stay.
- Text before the first speaker line goes to `meta.preamble`.
Encoding: UTF-8 with or without BOM, UTF-16 with BOM, or GB18030; CRLF/CR line ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pipeline.parsers.base import Drop, Record, natural_key, read_source_file
from psyedge.prompt import normalise_text

SOURCE = "cpsycound"

#: Speaker name prefixes with a fixed role (longest first is not needed: none is a prefix of another
#: of a different role). Origin: the CPsyCounD files themselves; 求助者 is CPsyCounE's word.
ROLE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("心理咨询师", "assistant"),
    ("咨询师", "assistant"),
    ("来访者", "user"),
    ("求助者", "user"),
)

#: Words of advice headings that end in a colon (`具体步骤：`) and never occur in a speaker name.
NOT_SPEAKERS: tuple[str, ...] = (
    "此外", "例如", "比如", "注意", "总结", "建议", "步骤", "方法", "目标", "提示", "备注", "结果", "作业",
    "原因", "首先", "其次", "然后", "最后", "第", "重点", "要点", "说明", "问题", "答", "问", "练习", "任务",
    "记住", "技巧", "策略", "目的", "效果", "反馈", "内容", "主题", "时间", "地点", "背景", "要求", "结论",
    "具体", "例子", "原则", "情况", "阶段", "环节", "优点", "缺点", "好处", "坏处",
)
#: Characters that occur in clauses, not in speaker names (`我觉得：`, `你可以：`, `具体是：`).
NOT_NAME_CHARS = frozenset("我你您是了吗呢吧说觉想要就也都很可会能做如该把被在有")

_SPEAKER = re.compile(
    r"^(?P<name>(?P<base>[A-Za-z\u4e00-\u9fff]{1,6}?\d{0,2})(?:[（(][^）)\n]{0,20}[）)])?)[ \t]*[：:][ \t]*")
_DIRECTION_LINE = re.compile(r"^[（(][^\n]*[）)]$")
_LEADING_DIRECTION = re.compile(r"^[（(](?P<d>[^（()）\n]{1,40})[）)]\s*")


def speaker_role(name: str, base: str) -> str | None:
    """The role of a speaker name, or None when `name` is not a speaker (then the line is text)."""
    for prefix, role in ROLE_PREFIXES:
        if base.startswith(prefix):
            return role
    if any(word in base for word in NOT_SPEAKERS) or NOT_NAME_CHARS.intersection(base):
        return None
    return "user"


def parse_text(text: str, record_id: str, path: str) -> Record | Drop:
    """Parse one decoded case file into a `Record` (turns not yet cleaned), or `Drop(no_turns)`."""
    turns: list[list[str]] = []  # [role, text]
    directions: list[str] = []
    preamble: list[str] = []
    others: dict[str, None] = {}
    continuations = 0
    for line in normalise_text(text).split("\n"):
        if not line:
            continue
        if _DIRECTION_LINE.match(line):
            directions.append(line[1:-1].strip())
            continue
        m = _SPEAKER.match(line)
        role = speaker_role(m["name"], m["base"]) if m else None
        if m and role is not None:
            body = line[m.end():]
            lead = _LEADING_DIRECTION.match(body)
            if lead:
                directions.append(lead["d"].strip())
                body = body[lead.end():]
            if not any(m["base"].startswith(p) for p, _ in ROLE_PREFIXES):
                others[m["name"]] = None
            turns.append([role, body])
        elif turns:
            turns[-1][1] = f"{turns[-1][1]}\n{line}" if turns[-1][1] else line
            continuations += 1
        else:
            preamble.append(line)
    if not turns:
        return Drop(SOURCE, path, "no_turns", "no line starts with 来访者：/心理咨询师： or another speaker",
                    id=record_id)
    meta: dict[str, object] = {"file": Path(path).name}
    if directions:
        meta["stage_directions"] = directions
    if preamble:
        meta["preamble"] = "\n".join(preamble)
    if others:
        meta["other_speakers"] = list(others)
    if continuations:
        meta["continuation_lines"] = continuations
    return Record(record_id, SOURCE, None, [(r, t) for r, t in turns], path, meta)


def parse_file(path: Path) -> Record | Drop:
    """Read and parse one `case_*.txt`; problems come back as a `Drop`, never as an exception."""
    record_id = f"{SOURCE}-{path.stem}"
    read = read_source_file(path, SOURCE, record_id)
    if isinstance(read, Drop):
        return read
    text, encoding = read
    if not normalise_text(text):
        return Drop(SOURCE, str(path), "empty_file", "only whitespace or invisible characters", id=record_id)
    out = parse_text(text, record_id, str(path))
    if isinstance(out, Record) and encoding != "utf-8":
        out.meta["encoding"] = encoding
    return out


def list_files(root: Path) -> list[Path]:
    """The case files under `root` in natural order (`root` may also be the folder above `Data/`)."""
    files = [p for p in root.glob("case_*.txt") if p.is_file()]
    if not files and (root / "Data").is_dir():
        files = [p for p in (root / "Data").glob("case_*.txt") if p.is_file()]
    return sorted(files, key=natural_key)


def iter_records(root: Path, files: list[Path] | None = None) -> Iterator[Record | Drop]:
    """Stream every case file of `root` as a `Record` or a `Drop`, one file in memory at a time."""
    for path in list_files(root) if files is None else files:
        yield parse_file(path)
