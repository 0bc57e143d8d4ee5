"""The label contract: the JSON Schema, the typed `Labels` value and the canonical output text.

Everything that produces or consumes labels (the labeling teacher, the SFT set, training, the GGUF
metadata, Android) imports this module, so there is exactly one definition of what a valid answer
is. The schema file itself is package data (`data/labels.schema.json`); this module only reads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

from psyedge.errors import LabelError

#: Bump when the schema, the prompt or the canonical output change in a way that makes old
#: labels or models incompatible. Stored in labels, SFT records and GGUF metadata.
CONTRACT_VERSION = "1.0"

#: Severity order of `risk_flag`, most severe first. A text with several risks takes the first.
RISK_SEVERITY: tuple[str, ...] = ("suicidal", "self_harm", "violence", "none")


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("psyedge").joinpath("data/labels.schema.json").read_text("utf-8")


def load_schema() -> dict[str, Any]:
    """Return a fresh copy of the label JSON Schema (callers may mutate it)."""
    return json.loads(_schema_text())


LABEL_SCHEMA: dict[str, Any] = load_schema()

#: Field names in canonical (schema) order.
FIELDS: tuple[str, ...] = tuple(LABEL_SCHEMA["properties"])


def allowed_values(field: str) -> tuple[Any, ...]:
    """The values a field may take, in schema order (integers for levels, strings for risk)."""
    try:
        return tuple(LABEL_SCHEMA["properties"][field]["enum"])
    except KeyError:
        raise LabelError(f"unknown label field {field!r}; expected one of {list(FIELDS)}") from None


_VALIDATOR = jsonschema.Draft202012Validator(LABEL_SCHEMA)


def validate(obj: Any) -> dict[str, Any]:
    """Check `obj` against the label schema; return it unchanged or raise `LabelError`.

    The error lists every problem at once, each with its JSON path, so a labeler's re-ask prompt
    and a human reader both see exactly what is wrong. `True`/`False` are rejected as integers
    (JSON Schema treats them as booleans, Python as ints: we follow JSON).
    """
    errors = sorted(_VALIDATOR.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if isinstance(obj, Mapping):
        for key in FIELDS:
            if isinstance(obj.get(key), bool):
                errors.append(jsonschema.ValidationError(f"{obj[key]!r} is a boolean, not a label",
                                                         path=[key]))
    if errors:
        parts = []
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "<root>"
            parts.append(f"{where}: {e.message}")
        raise LabelError("labels do not match the schema: " + "; ".join(parts))
    return obj  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Labels:
    """One validated answer. Construct with `Labels.from_dict` or `Labels.from_json`."""

    depression_level: int
    anxiety_level: int
    risk_flag: str
    student_distress_score: int

    def __post_init__(self) -> None:
        validate(self.to_dict())

    @classmethod
    def from_dict(cls, obj: Any) -> Labels:
        validate(obj)
        return cls(**{k: obj[k] for k in FIELDS})

    @classmethod
    def from_json(cls, text: str) -> Labels:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabelError(f"not JSON: {exc.msg} at char {exc.pos} in {text[:120]!r}") from None
        return cls.from_dict(obj)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}

    def to_json(self) -> str:
        """The canonical output text (see `canonical_json`)."""
        return canonical_json(self.to_dict())


def canonical_json(labels: Mapping[str, Any]) -> str:
    """Compact JSON, keys in schema order: the exact text the model is trained to emit.

    >>> canonical_json({"risk_flag": "none", "depression_level": 2, "anxiety_level": 1,
    ...                 "student_distress_score": 5})
    '{"depression_level":2,"anxiety_level":1,"risk_flag":"none","student_distress_score":5}'
    """
    validate(dict(labels))
    return json.dumps({k: labels[k] for k in FIELDS}, ensure_ascii=False, separators=(",", ":"))


def most_severe(flags: list[str] | tuple[str, ...] | set[str]) -> str:
    """The most severe of several risk flags (`none` for an empty list)."""
    for flag in RISK_SEVERITY:
        if flag in flags:
            return flag
    return "none"
