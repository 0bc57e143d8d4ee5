"""Write the Android library's assets from the Python SDK: the contract travels as data, never as copies.

The Kotlin side reads these files instead of restating the contract, so the phone and the Python
SDK cannot drift apart: the decode plan, the GBNF grammar, the label schema, the prompt spec
(instruction, chat templates, roles, trim limits, text-normalisation character sets) and the risk
lexicon all come from `psyedge` here.

The generated files are committed (so Android Studio builds without a Python environment); the
host test run regenerates them into `build/` and a Kotlin test fails, naming this command, when
the committed copy is stale:

    .venv/bin/python mobile/android/tools/gen_assets.py            # rewrite lib/src/main/assets/psyedge
    .venv/bin/python mobile/android/tools/gen_assets.py --out DIR --sources DIR2  # elsewhere (drift check)

It also renders the table of the engine's result statistics (`result_stats.py`) into the C++
header and the Kotlin enum both ends of `nativeAssess` use (committed and drift-checked alike).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# A sibling tool: Python puts a script's own folder first on the import path.
import result_stats

from pipeline.io import atomic_write_text
from psyedge import contract, plan, prompt

log = logging.getLogger(__name__)

ANDROID = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ANDROID / "lib" / "src" / "main" / "assets" / "psyedge"

#: Bumped when the layout of the files written here changes (the Kotlin loader checks it).
ASSET_FORMAT = 1


def codepoint_ranges(member: Callable[[str], bool]) -> list[str]:
    """The code points for which `member` holds, as inclusive ranges written "U+0009..U+000D".

    Probing the SDK's own regular expressions character by character turns them into data that
    any language can use, instead of re-typing the character classes (which would drift).
    """
    ranges: list[list[int]] = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # lone surrogates never reach the normaliser as text
            continue
        if member(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return [f"U+{a:04X}..U+{b:04X}" for a, b in ranges]


def text_charsets() -> dict[str, list[str]]:
    """The character sets `psyedge.prompt.normalise_text` uses, measured on its own regexes."""
    invisible: re.Pattern[str] = prompt._INVISIBLE  # the SDK's pattern objects, probed not copied
    spaces: re.Pattern[str] = prompt._SPACES
    blanks: re.Pattern[str] = prompt._BLANKS
    return {
        # removed from turn text
        "invisible": codepoint_ranges(lambda ch: invisible.fullmatch(ch) is not None),
        # runs collapse to one ASCII space
        "spaces": codepoint_ranges(lambda ch: spaces.fullmatch(ch) is not None),
        # what `\s` in the blank-line rule matches (Python's Unicode whitespace)
        "blank_line_space": codepoint_ranges(lambda ch: blanks.fullmatch("\n" + ch + "\n") is not None),
        # what str.strip() removes from each line and from the ends
        "strip": codepoint_ranges(str.isspace),
    }


def transcript_lines() -> dict[str, dict[str, str]]:
    """Each role's transcript line split around the text: `transcript_line` measured, not restated."""
    marker = "\x00"  # never survives normalisation, so it cannot occur in a real turn
    out = {}
    for role in prompt.ROLES:
        head, tail = prompt.transcript_line(prompt.Turn(role, marker)).split(marker)
        out[role] = {"head": head, "tail": tail}
    return out


def prompt_spec() -> dict[str, Any]:
    """Everything that shapes the prompt text, as `psyedge.prompt` defines it."""
    return {
        "asset_format": ASSET_FORMAT,
        "contract_version": contract.CONTRACT_VERSION,
        "prompt_hash": prompt.prompt_hash(),
        "instruction": prompt.INSTRUCTION,
        "roles": dict(prompt.ROLE_NAMES),
        # how each role's transcript line starts and ends around the turn text
        "lines": transcript_lines(),
        "max_turns": prompt.MAX_TURNS,
        "max_chars": prompt.MAX_CHARS,
        "templates": {name: {"prefix": t.prefix, "suffix": t.suffix, "eos": t.eos}
                      for name, t in sorted(prompt.TEMPLATES.items())},
        "risk_severity": list(contract.RISK_SEVERITY),
        "text": text_charsets(),
    }


def lexicon_document() -> dict[str, Any] | None:
    """The risk lexicon as the SDK compiles it: every default resolved, patterns as regex source.

    Exported from the compiled `psyedge.lexicon.Lexicon` rather than the raw JSON so the phone
    gets the effective fold table (including the full-width ASCII the SDK adds), the default
    clause break and rule windows without re-implementing the loader. Phrases arrive as their
    escaped regex (`re.escape`), which Java's regex engine reads the same way.
    """
    try:
        from psyedge.lexicon import load_lexicon
    except ImportError:
        log.warning("psyedge.lexicon is missing: no risk lexicon asset written")
        return None
    lex = load_lexicon()
    return {
        "version": lex.version,
        "severity": list(contract.RISK_SEVERITY),
        "clause_break": lex.clause_break.pattern,
        "fold": {chr(k): v for k, v in sorted(lex.fold.items())},
        "entries": [{"id": e.id, "class": e.risk_flag, "group": e.group, "pattern": e.regex.pattern}
                    for e in lex.entries],
        "rules": [{"name": r.name, "kind": r.kind, "applies_to": sorted(r.applies_to),
                   "pattern": r.regex.pattern, "object_markers": r.object_markers,
                   "self_pattern": r.self_regex.pattern if r.self_regex is not None else None,
                   "window": r.window}
                  for r in lex.rules],
    }


def decoding_spec() -> dict[str, Any]:
    """The Screener's numeric decoding settings (DECODING.md 1-2), read from the SDK, not restated."""
    import inspect

    from psyedge import decode, screener

    cfg = decode.EngineConfig()
    n_ctx = inspect.signature(screener.Screener.__init__).parameters["n_ctx"].default
    return {
        "asset_format": ASSET_FORMAT,
        "n_ctx": n_ctx,
        "n_ubatch": cfg.n_ubatch,
        "flash_attn": cfg.flash_attn,
        # tokens kept free after the prompt: the answer's forced text + longest values + this slack
        "answer_slack": screener.ANSWER_SLACK,
    }


def dump(obj: Any) -> str:
    """Stable, readable JSON: the same SDK gives byte-identical files (the drift check compares bytes)."""
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=False) + "\n"


def assets() -> dict[str, str]:
    """File name -> content of every generated asset."""
    files = {
        "plan.json": dump(plan.plan_document()),
        "grammar.gbnf": plan.gbnf(),
        "labels.schema.json": dump(contract.LABEL_SCHEMA),
        "prompt.json": dump(prompt_spec()),
        "decoding.json": dump(decoding_spec()),
    }
    lex = lexicon_document()
    if lex is not None:
        files["risk_lexicon.json"] = dump(lex)
    return files


def write(out: Path) -> list[Path]:
    """Write every asset into `out` atomically; remove generated files the SDK no longer makes."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    files = assets()
    for name, text in files.items():
        path = out / name
        write_file(path, text)
        written.append(path)
    for stale in ("risk_lexicon.json",):
        if stale not in files and (out / stale).exists():
            (out / stale).unlink()
    return written


def write_file(path: Path, text: str) -> None:
    """Write `text` atomically unless `path` already holds it (unchanged files keep their mtime)."""
    if not path.exists() or path.read_text("utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        path.chmod(0o644)  # atomic writes create 0600 files; these are ordinary source files


def write_sources(root: Path | None) -> list[Path]:
    """The generated C++/Kotlin sources at their paths under `root` (default: mobile/android itself)."""
    paths = []
    for rel, render in result_stats.SOURCES.items():
        path = (root or ANDROID) / rel
        write_file(path, render())
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default {DEFAULT_OUT})")
    ap.add_argument("--sources", type=Path, default=None,
                    help="root for the generated C++/Kotlin sources "
                         "(default: mobile/android, where they are committed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = write(args.out)
        sources = write_sources(args.sources)
    except OSError as exc:
        print(f"gen_assets: cannot write {args.out}: {exc}; pass --out/--sources to writable folders",
              file=sys.stderr)
        return 1
    log.info("wrote %d assets to %s and %d sources", len(paths), args.out, len(sources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
