"""The converter's one exception: a user-fixable problem with the input model or the options.

CLIs catch it and print its message with exit code 2 (bad input) instead of a traceback; the
message always names the file or value at fault and what to do about it.
"""

from __future__ import annotations


class ConvertError(ValueError):
    """The input cannot be converted or quantized as asked (message says what and how to fix)."""
