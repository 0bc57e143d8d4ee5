"""`psyedge` command line: assess conversations, export the contract files, inspect a model.

    psyedge assess --model M.gguf [--adapter A.gguf] --input conversations.jsonl --output out.jsonl [--show]
    psyedge schema  [--out labels.schema.json]
    psyedge grammar [--out labels.gbnf]        GBNF of the canonical output (Android, llama.cpp)
    psyedge plan    [--out decode_plan.json]   decode plan (forced text + allowed values)
    psyedge info M.gguf                        GGUF metadata, read without loading the weights

Input JSONL: one conversation per line, either `{"id": ..., "conversation": [{"role", "text"}]}`
(`turns` or `messages` accepted for `conversation`) or a bare list of turns. User errors (missing
file, bad line, incompatible model) print one message naming the file/line and exit 2 (input) or
1 (model); never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psyedge.atomic import atomic_open
from psyedge.contract import LABEL_SCHEMA
from psyedge.errors import InputError, ModelError, PsyedgeError
from psyedge.plan import gbnf, plan_document
from psyedge.prompt import check_conversation

log = logging.getLogger(__name__)

CONVERSATION_KEYS = ("conversation", "turns", "messages")


class CliError(Exception):
    """A user error: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _emit(text: str, out: str | None) -> None:
    if out:
        with atomic_open(Path(out)) as fh:
            fh.write(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def read_conversations(path: Path) -> list[tuple[Any, list[dict[str, Any]]]]:
    """(id, conversation) per line, every line checked now so a bad line fails before any work."""
    if not path.is_file():
        raise CliError(f"input file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            conv_id: Any = lineno
            if isinstance(obj, dict):
                conv_id = obj.get("id", lineno)
                key = next((k for k in CONVERSATION_KEYS if k in obj), None)
                if key is None:
                    raise CliError(f"{where}: no conversation: expected a key among "
                                   f"{list(CONVERSATION_KEYS)} "
                                   "holding a list of {role, text} turns")
                obj = obj[key]
            try:
                check_conversation(obj)
            except (InputError, TypeError) as exc:
                raise CliError(f"{where}: {exc}") from None
            rows.append((conv_id, obj))
    if not rows:
        raise CliError(f"{path} holds no conversations")
    return rows


def _show(conv_id: Any, d: dict[str, Any]) -> str:
    lab = d["labels"]
    p_risk = d["probabilities"]["risk_flag"][lab["risk_flag"]] if d["risk_source"] == "model" else None
    risk = f"{lab['risk_flag']}({d['risk_source']}{'' if p_risk is None else f' p={p_risk:.2f}'})"
    return (f"{str(conv_id):>12}  dep={lab['depression_level']} anx={lab['anxiety_level']} risk={risk} "
            f"distress={lab['student_distress_score']}  {d['timings']['total_ms']:.0f} ms"
            f"{'  [trimmed]' if d['trimmed'] else ''}")


def cmd_assess(args: argparse.Namespace) -> int:
    from psyedge.screener import Screener

    rows = read_conversations(Path(args.input))
    screener = Screener(args.model, template=args.template, lexicon=not args.no_lexicon,
                        n_ctx=args.n_ctx, n_threads=args.threads, flash_attn=not args.no_flash_attn,
                        adapter=args.adapter)
    try:
        from tqdm import tqdm

        write = tqdm.write  # printed above the bar, not through it
    except ImportError:  # the cli extra brings tqdm; without it, no bar
        def tqdm(it: Any, **_: Any) -> Any:  # type: ignore[no-redef]
            return it

        write = print
    out_path = Path(args.output)
    with screener, atomic_open(out_path) as fh:
        for conv_id, conv in tqdm(rows, desc="assess", unit="conv", disable=args.quiet):
            d = screener.assess(conv).to_dict()
            fh.write(json.dumps({"id": conv_id, **d}, ensure_ascii=False, separators=(",", ":")) + "\n")
            if args.show:
                write(_show(conv_id, d))
    print(f"wrote {len(rows)} assessments to {out_path}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from psyedge.gguf_info import read_info

    info = read_info(args.model).summary()
    print(json.dumps(info, ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="psyedge", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("assess", help="screen conversations from a JSONL file with a GGUF model")
    a.add_argument("--model", required=True, help="GGUF model file")
    a.add_argument("--adapter", default=None, help="LoRA adapter GGUF applied on the model")
    a.add_argument("--input", required=True, help="JSONL, one conversation per line")
    a.add_argument("--output", required=True, help="JSONL of assessments (written atomically)")
    a.add_argument("--template", default=None,
                   help="chat template (deepseek-r1|chatml|raw); default: from the GGUF")
    a.add_argument("--threads", type=int, default=0, help="CPU threads (default: up to 4)")
    a.add_argument("--n-ctx", type=int, default=4096, help="context size in tokens")
    a.add_argument("--no-lexicon", action="store_true", help="turn the risk lexicon safety net off")
    a.add_argument("--no-flash-attn", action="store_true", help="turn flash attention off")
    a.add_argument("--show", action="store_true", help="print one line per conversation")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_assess)

    for name, helptext in (("schema", "print the label JSON Schema"),
                           ("grammar", "print the GBNF grammar of the canonical output"),
                           ("plan", "print the decode plan (forced text + allowed values) as JSON")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--out", default=None, help="write to this file instead of stdout")
        s.set_defaults(func=lambda args, _n=name: _emit(_export(_n), args.out) or 0)

    i = sub.add_parser("info", help="print a GGUF's metadata (psyedge keys, shape, tokenizer)")
    i.add_argument("model", help="GGUF model file")
    i.set_defaults(func=cmd_info)
    return p


def _export(name: str) -> str:
    if name == "schema":
        return json.dumps(LABEL_SCHEMA, ensure_ascii=False, indent=2) + "\n"
    if name == "grammar":
        return gbnf()
    return json.dumps(plan_document(), ensure_ascii=False, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"psyedge: error: {exc}", file=sys.stderr)
        return exc.code
    except ModelError as exc:
        print(f"psyedge: error: {exc}", file=sys.stderr)
        return 1
    except (PsyedgeError, ValueError, TypeError) as exc:
        print(f"psyedge: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `psyedge grammar | head`: the reader left; not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
        return 0
    except OSError as exc:
        print(f"psyedge: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
