"""The SDK's small exception tree: callers catch `PsyedgeError` or one of its three kinds."""

from __future__ import annotations


class PsyedgeError(Exception):
    """Base of every error the SDK raises on purpose."""


class InputError(PsyedgeError, ValueError):
    """The caller passed a conversation or argument the SDK cannot use (wrong role, empty text)."""


class LabelError(PsyedgeError, ValueError):
    """A label object does not match the label JSON Schema."""


class ModelError(PsyedgeError, RuntimeError):
    """A model file is missing, unreadable or incompatible with this contract."""
