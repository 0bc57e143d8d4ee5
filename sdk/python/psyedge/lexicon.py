"""The risk lexicon: a small, auditable safety net that finds suicide, self-harm and violence talk.

Why a lexicon next to a model: a missed suicide risk is the worst failure psyedge can have, and a
1.5B model quantized to 4 bits will miss some. The Screener raises `risk_flag` when this lexicon
finds risk the model did not (never lowers it), and the offline `rules` labeling teacher uses it
as its risk judgement. It must be cheap (stdlib `re` only; about 0.15 ms for a 30-character text
and 2 ms for a full 2,000-character transcript on one desktop core), explainable (every hit names
its entry and span) and editable without code: all phrases, patterns and context rules live in
`data/risk_lexicon.json`; their reasoning is in LEXICON.md.

Matching, in order:
1. fold: a 1:1 character table (full-width ASCII, a few traditional characters) so that spans
   stay valid offsets into the caller's text;
2. entries: each a literal `phrase` (at most `max_phrase_chars` characters: a lexicon must stay a
   list of general expressions, not a list of a dataset's sentences) or a regex `pattern`;
3. context rules, each applying to some classes: `before` (a regex that must match at the end of
   the clause text preceding the hit: negation, others wishing the writer dead), `after` (a regex
   at the start of the text following it: generic "自杀的人"), and `subject` (the nearest subject
   before the hit in its clause is another person: "我朋友想自杀" is not the writer's risk).
   A hit that a rule matches is suppressed; `explain` shows it with the rule's name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from psyedge.contract import RISK_SEVERITY, most_severe
from psyedge.errors import PsyedgeError

#: Classes an entry may carry: every risk flag except "none".
RISK_CLASSES: tuple[str, ...] = tuple(f for f in RISK_SEVERITY if f != "none")
_RULE_KINDS = ("before", "after", "subject")
_ENTRY_KEYS = {"id", "class", "group", "phrase", "pattern", "note"}
_RULE_KEYS = {"name", "kind", "applies_to", "pattern", "object_markers", "self_pattern", "window", "note"}


class LexiconError(PsyedgeError, ValueError):
    """The lexicon file is malformed: the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Hit:
    """One risk expression found in a text: its class, the lexicon entry id and the span."""

    risk_flag: str
    entry: str
    span: tuple[int, int]


@dataclass(frozen=True)
class Candidate:
    """A match before context rules: `suppressed_by` names the rule that cancelled it, if any."""

    hit: Hit
    group: str
    suppressed_by: str | None


@dataclass(frozen=True)
class Entry:
    id: str
    risk_flag: str
    group: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    applies_to: frozenset[str]
    regex: re.Pattern[str]
    #: `subject` rules: a subject right after one of these characters is an object, not a subject.
    object_markers: str = ""
    #: `subject` rules: what refers to the writer (a later match wins over an earlier other-person).
    self_regex: re.Pattern[str] | None = None
    #: How many characters before the hit the rule looks at (within the clause).
    window: int = 12


class Lexicon:
    """A compiled lexicon. Use the module functions (`scan`, `lexicon_risk`) for the packaged one."""

    def __init__(self, source: str, entries: list[Entry], rules: list[Rule], clause_break: re.Pattern[str],
                 fold: dict[int, str], version: str) -> None:
        self.source = source
        self.entries = entries
        self.rules = rules
        self.clause_break = clause_break
        self.fold = fold
        self.version = version

    def explain(self, text: str) -> list[Candidate]:
        """Every entry match in `text` with the context rule that suppressed it (or None)."""
        folded = text.translate(self.fold)
        out: list[Candidate] = []
        for entry in self.entries:
            for m in entry.regex.finditer(folded):
                if m.end() == m.start():
                    continue
                rule = self._suppressing_rule(folded, m.start(), m.end(), entry)
                out.append(Candidate(Hit(entry.risk_flag, entry.id, (m.start(), m.end())), entry.group, rule))
        out.sort(key=lambda c: (c.hit.span, RISK_SEVERITY.index(c.hit.risk_flag)))
        return out

    def scan(self, text: str) -> list[Hit]:
        """Risk hits that survive the context rules, in text order.

        A hit strictly inside a longer surviving hit is dropped, whatever its class: the longer
        match is the more specific reading ("你们全部去死" is violence, not the "去死" inside it;
        "不想活下去" is one hit, not two).
        """
        hits = [c.hit for c in self.explain(text) if c.suppressed_by is None]
        kept: list[Hit] = []
        for h in hits:
            inside = any(o.span[0] <= h.span[0] and h.span[1] <= o.span[1]
                         and (o.span[1] - o.span[0]) > (h.span[1] - h.span[0]) for o in hits)
            if not inside:
                kept.append(h)
        return kept

    def risk(self, text: str) -> str:
        """The most severe flag among the surviving hits, "none" if there are none."""
        return most_severe({h.risk_flag for h in self.scan(text)})

    def _clause_start(self, text: str, pos: int) -> int:
        start = 0
        for m in self.clause_break.finditer(text, 0, pos):
            start = m.end()
        return start

    def _suppressing_rule(self, text: str, start: int, end: int, entry: Entry) -> str | None:
        clause_start = self._clause_start(text, start)
        for rule in self.rules:
            if entry.risk_flag not in rule.applies_to:
                continue
            if rule.kind == "after":
                if rule.regex.match(text, end):
                    return rule.name
                continue
            before = text[max(clause_start, start - rule.window):start]
            if rule.kind == "before":
                if rule.regex.search(before):
                    return rule.name
            elif _other_subject(before, rule):
                return rule.name
        return None


def _other_subject(before: str, rule: Rule) -> bool:
    """True when the nearest subject-like word before the hit is another person.

    The last other-person noun that is not an object (not right after 和/跟/被/给 ...) is compared
    with the last self-reference (我/自己): whichever comes later is taken as the subject. A
    clause with no subject at all is the writer's (Chinese drops the first-person subject).
    """
    last_other = -1
    for m in rule.regex.finditer(before):
        marker = before[m.start() - 1] if m.start() > 0 else ""
        if marker and marker in rule.object_markers:
            continue
        last_other = m.end()
    if last_other < 0:
        return False
    last_self = -1
    if rule.self_regex is not None:
        for m in rule.self_regex.finditer(before):
            last_self = m.end()
    return last_other > last_self


def _fail(source: str, where: str, problem: str, fix: str) -> LexiconError:
    return LexiconError(f"{source}: {where}: {problem}; {fix}")


def _compile(source: str, where: str, pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise _fail(source, where, f"pattern must be a non-empty string, got {pattern!r}", "write a regex")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _fail(source, where, f"pattern {pattern!r} is not a valid regex ({exc})",
                    "fix the regex (Python `re` syntax)") from None


def parse_lexicon(obj: Any, source: str = "<lexicon>") -> Lexicon:
    """Check and compile a lexicon document (the JSON object); errors name the entry and the fix."""
    if not isinstance(obj, dict) or not isinstance(obj.get("entries"), list):
        raise _fail(source, "<root>", "expected an object with an 'entries' list", "see risk_lexicon.json")
    max_len = obj.get("max_phrase_chars", 12)
    entries: list[Entry] = []
    seen: set[str] = set()
    for i, raw in enumerate(obj["entries"]):
        where = f"entries[{i}]"
        if not isinstance(raw, dict):
            raise _fail(source, where, f"expected an object, got {type(raw).__name__}",
                        "write {id, class, ...}")
        unknown = set(raw) - _ENTRY_KEYS
        if unknown:
            raise _fail(source, where, f"unknown keys {sorted(unknown)}", f"use only {sorted(_ENTRY_KEYS)}")
        eid = raw.get("id")
        if not isinstance(eid, str) or not eid or eid in seen:
            raise _fail(source, where, f"id {eid!r} is missing or duplicated", "give each entry a unique id")
        seen.add(eid)
        where = f"entry {eid!r}"
        if raw.get("class") not in RISK_CLASSES:
            raise _fail(source, where, f"class {raw.get('class')!r} is not a risk class",
                        f"use one of {list(RISK_CLASSES)}")
        if not isinstance(raw.get("group"), str) or not raw["group"]:
            raise _fail(source, where, "group is missing", "name the group (e.g. 'passive ideation')")
        if ("phrase" in raw) == ("pattern" in raw):
            raise _fail(source, where, "needs exactly one of 'phrase' or 'pattern'", "keep one of them")
        if "phrase" in raw:
            phrase = raw["phrase"]
            if not isinstance(phrase, str) or not phrase.strip():
                raise _fail(source, where, f"phrase {phrase!r} is empty", "write the expression")
            if len(phrase) > max_len:
                raise _fail(source, where, f"phrase {phrase!r} has {len(phrase)} characters (max {max_len})",
                            "shorten it to the general expression, or write a pattern")
            regex = re.compile(re.escape(phrase))
        else:
            regex = _compile(source, where, raw["pattern"])
        entries.append(Entry(eid, raw["class"], raw["group"], regex))
    rules: list[Rule] = []
    for i, raw in enumerate(obj.get("rules", [])):
        where = f"rules[{i}]"
        if not isinstance(raw, dict):
            raise _fail(source, where, f"expected an object, got {type(raw).__name__}",
                        "write {name, kind, ...}")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise _fail(source, where, f"unknown keys {sorted(unknown)}", f"use only {sorted(_RULE_KEYS)}")
        if raw.get("kind") not in _RULE_KINDS:
            raise _fail(source, where, f"kind {raw.get('kind')!r} is unknown",
                        f"use one of {list(_RULE_KINDS)}")
        applies = raw.get("applies_to", list(RISK_CLASSES))
        if not isinstance(applies, list) or not set(applies) <= set(RISK_CLASSES):
            raise _fail(source, where, f"applies_to {applies!r} is not a list of risk classes",
                        f"use a subset of {list(RISK_CLASSES)}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(source, where, "name is missing", "name the rule (it appears in explanations)")
        self_regex = _compile(source, f"rule {name!r}",
                              raw["self_pattern"]) if "self_pattern" in raw else None
        rules.append(Rule(name, raw["kind"], frozenset(applies),
                          _compile(source, f"rule {name!r}", raw.get("pattern")),
                          str(raw.get("object_markers", "")), self_regex, int(raw.get("window", 12))))
    fold_raw = obj.get("fold", {})
    if not isinstance(fold_raw, dict) or any(len(k) != 1 or len(v) != 1 for k, v in fold_raw.items()):
        raise _fail(source, "fold", "must map single characters to single characters",
                    "spans must stay offsets into the caller's text, so the fold is 1:1")
    fold = {ord(k): v for k, v in fold_raw.items()}
    fold.update({c: chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F) if chr(c) not in "，！？；：（）"})
    clause_break = _compile(source, "clause_break", obj.get("clause_break", r"[，,。！？!?；;\n]"))
    return Lexicon(source, entries, rules, clause_break, fold, str(obj.get("version", "")))


@lru_cache(maxsize=8)
def _load(path: str | None) -> Lexicon:
    if path is None:
        source = "psyedge/data/risk_lexicon.json"
        text = resources.files("psyedge").joinpath("data/risk_lexicon.json").read_text("utf-8")
    else:
        source = path
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise LexiconError(f"{path}: cannot read the lexicon ({exc.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LexiconError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return parse_lexicon(obj, source)


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """The packaged lexicon (compiled once per process), or the one at `path` (for experiments)."""
    return _load(None if path is None else str(path))


def scan(text: str) -> list[Hit]:
    """Risk hits in `text` with the packaged lexicon (context rules applied)."""
    return load_lexicon().scan(text)


def explain(text: str) -> list[Candidate]:
    """Every match in `text` including suppressed ones, with the suppressing rule's name."""
    return load_lexicon().explain(text)


def lexicon_risk(text: str) -> str:
    """The most severe risk flag the packaged lexicon finds in `text` ("none" if nothing)."""
    return load_lexicon().risk(text)


def conversation_risk(conversation: Any) -> str:
    """The most severe flag the packaged lexicon finds in the student's own turns.

    Only `user` turns count: a counselor asking "有没有想过自杀" is not the student's risk. Each
    turn is scanned on its own, so a context rule never reaches across a change of speaker. The
    offline rules teacher and the labeling report both classify a sample this way.
    """
    turns = conversation if isinstance(conversation, list) else []
    texts = [t.get("text", "") for t in turns if isinstance(t, dict) and t.get("role") == "user"]
    return most_severe({lexicon_risk(t) for t in texts if isinstance(t, str)})
