"""The prompt's token ids segment by segment, exactly as the Screener and the Android engine feed
them (sdk/python/DECODING.md 2), so a model is trained on the ids it will see.

The SDK never tokenizes the whole prompt: BOS, then `template.prefix + instruction` (special
tokens parsed), the transcript (special tokens not parsed: a user typing `<eos>` gets text), then
`template.suffix` (parsed). Tokenizing the joined string instead differs where two segments
meet: with the `raw` template the transcript's final "\\n" and the suffix's leading "\\n" become one
"\\n\\n" token (Gemma's vocabulary has it; so do byte-level BPEs), which the Screener never feeds.

The transcript is one segment here and one segment per line in the SDK; the two agree because
every line ends in "\\n" and starts with a CJK role word, which no supported vocabulary merges
across ("\\n" is a token matched whole in Gemma's; byte-level pre-tokenizers split there), and
`normalise_text` leaves no blank line inside a turn, so no "\\n\\n" forms within the transcript.
"""

from __future__ import annotations

from typing import Any

from psyedge.prompt import ChatTemplate


def segment_ids(tokenizer: Any, text: str, parse_special: bool) -> list[int]:
    """One segment's ids, no BOS/EOS; `parse_special=False` keeps special-token text as text
    (`split_special_tokens`, llama.cpp's `parse_special=false`)."""
    if not text:
        return []
    enc = tokenizer(text, add_special_tokens=False, split_special_tokens=not parse_special)
    return list(enc["input_ids"])


def prompt_ids(tokenizer: Any, instruction: str, input_text: str, template: ChatTemplate,
               bos: bool) -> list[int]:
    """BOS (when the model adds it), then the prefix, transcript and suffix segments."""
    ids = [tokenizer.bos_token_id] if bos else []
    ids += segment_ids(tokenizer, template.prefix + instruction, parse_special=True)
    ids += segment_ids(tokenizer, input_text, parse_special=False)
    ids += segment_ids(tokenizer, template.suffix, parse_special=True)
    return ids
