"""The decode plan and the GBNF grammar describe exactly the canonical outputs, and match goldens."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from psyedge.contract import FIELDS, allowed_values, canonical_json
from psyedge.plan import PLAN, fill, gbnf, plan_document

GOLDEN = Path(__file__).parent / "golden"


def _all_outputs() -> set[str]:
    values = [allowed_values(f) for f in FIELDS]
    return {canonical_json(dict(zip(FIELDS, combo, strict=True))) for combo in itertools.product(*values)}


def test_plan_fills_to_every_canonical_output_and_nothing_else() -> None:
    holes = [s for s in PLAN if s.forced is None]
    assert [s.field for s in holes] == list(FIELDS)
    filled = {fill(dict(zip(FIELDS, combo,
                            strict=True))) for combo in itertools.product(*(s.values for s in holes))}
    assert filled == _all_outputs()


def _gbnf_to_regex(grammar: str) -> re.Pattern[str]:
    """Translate this (non-recursive, literal-only) grammar into a regex to check its language."""
    rules = dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())

    def expand(body: str) -> str:
        out = []
        for tok in re.findall(r'"(?:\\.|[^"\\])*"|\||[a-z-]+', body):
            if tok == "|":
                out.append("|")
            elif tok.startswith('"'):
                out.append(re.escape(json.loads(tok)))
            else:
                out.append("(?:" + expand(rules[tok]) + ")")
        return "".join(out)

    return re.compile(expand(rules["root"]))


def test_gbnf_accepts_exactly_the_canonical_outputs() -> None:
    pattern = _gbnf_to_regex(gbnf())
    outputs = _all_outputs()
    assert all(pattern.fullmatch(o) for o in outputs)
    for bad in ['{"depression_level":4,"anxiety_level":0,"risk_flag":"none","student_distress_score":0}',
                '{"depression_level": 1,"anxiety_level":0,"risk_flag":"none","student_distress_score":0}',
                '{"depression_level":1,"anxiety_level":0,"risk_flag":"suicide","student_distress_score":0}',
                '{"depression_level":1,"anxiety_level":0,"risk_flag":"none","student_distress_score":10}']:
        assert not pattern.fullmatch(bad), bad


def test_grammar_and_plan_match_the_golden_files() -> None:
    """Android reads these exports: a change here must be deliberate (update the goldens)."""
    assert gbnf() == (GOLDEN / "labels.gbnf").read_text("utf-8")
    assert plan_document() == json.loads((GOLDEN / "decode_plan.json").read_text("utf-8"))
