"""psyedge: on-device mental-health screening of Chinese student conversations.

The contract (schema, prompt, templates, decode plan, risk lexicon) imports nothing heavy; the
llama.cpp-backed `Screener` is imported on first use so that labeling or training code can use
the contract without loading llama.cpp.
"""

from __future__ import annotations

from typing import Any

from psyedge.contract import (
    CONTRACT_VERSION,
    FIELDS,
    LABEL_SCHEMA,
    Labels,
    allowed_values,
    canonical_json,
    validate,
)
from psyedge.errors import InputError, LabelError, ModelError, PsyedgeError
from psyedge.prompt import INSTRUCTION, TEMPLATES, prompt_hash, render

__version__ = "0.1.0"

__all__ = [
    "CONTRACT_VERSION", "FIELDS", "INSTRUCTION", "LABEL_SCHEMA", "TEMPLATES", "InputError",
    "LabelError", "Labels", "ModelError", "PsyedgeError", "Screener", "allowed_values",
    "canonical_json", "prompt_hash", "render", "validate",
]


def __getattr__(name: str) -> Any:
    if name in ("Screener", "Assessment", "Session"):
        from psyedge import screener

        return getattr(screener, name)
    raise AttributeError(f"module 'psyedge' has no attribute {name!r}")
