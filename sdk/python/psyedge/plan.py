"""The decode plan and the GBNF grammar, both derived from the label schema.

The canonical output is fixed text with four holes. The plan lists the fixed text ("forced"
segments) and, for each hole, the allowed values as the exact text they take in the output.
The Screener feeds forced segments as one token batch and asks the model only at the holes;
the Android bridge reads the same plan from an exported JSON file instead of re-deriving it.
The GBNF grammar describes the same language for engines that need a grammar (llama.cpp's
sampler, the plain-path benchmark): `plan_text_language(plan) == grammar language`, tested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psyedge.contract import CONTRACT_VERSION, FIELDS, LABEL_SCHEMA


@dataclass(frozen=True)
class Step:
    """Either fixed text (`forced`) or a choice of `values` for `field`; exactly one is set."""

    forced: str | None = None
    field: str | None = None
    values: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.forced is not None:
            return {"forced": self.forced}
        return {"field": self.field, "values": list(self.values)}


def build_plan(schema: dict[str, Any] = LABEL_SCHEMA) -> list[Step]:
    """Derive the steps from the schema: keys in order, string values quoted by the forced text."""
    steps: list[Step] = []
    pending = "{"
    for i, field in enumerate(schema["properties"]):
        prop = schema["properties"][field]
        is_string = prop["type"] == "string"
        pending += ("," if i else "") + json.dumps(field) + ":" + ('"' if is_string else "")
        steps.append(Step(forced=pending))
        values = tuple(str(v) for v in prop["enum"])
        steps.append(Step(field=field, values=values))
        pending = '"' if is_string else ""
    steps.append(Step(forced=pending + "}"))
    return steps


PLAN: tuple[Step, ...] = tuple(build_plan())


def plan_document() -> dict[str, Any]:
    """The plan as the JSON document `psyedge plan` writes (read by the Android bridge)."""
    return {
        "contract_version": CONTRACT_VERSION,
        "fields": list(FIELDS),
        "steps": [s.to_dict() for s in PLAN],
    }


def fill(choices: dict[str, str]) -> str:
    """The output text for one value text per field (what greedy decoding along the plan emits)."""
    out = []
    for step in PLAN:
        out.append(step.forced if step.forced is not None else choices[step.field or ""])
    return "".join(out)


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gbnf() -> str:
    """The exact GBNF grammar for the canonical output (one rule per field, no whitespace)."""
    root: list[str] = []
    rules: list[str] = []
    for step in PLAN:
        if step.forced is not None:
            root.append(_gbnf_literal(step.forced))
        else:
            name = (step.field or "").replace("_", "-")
            root.append(name)
            rules.append(f"{name} ::= " + " | ".join(_gbnf_literal(v) for v in step.values))
    return "root ::= " + " ".join(root) + "\n" + "\n".join(rules) + "\n"
