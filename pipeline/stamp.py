"""Content stamps for make: rewrite a stamp file only when what it fingerprints has changed.

make decides by modification times; inputs named by variables (a folder, a provider name) have
none it can see. A stage depends on a stamp whose content is a hash of its inputs' paths, sizes
and modification times plus free text (variables); the stamp is touched only when that hash
changes, so `make` reruns a stage exactly when an input did.

    python -m pipeline.stamp OUT PATH... [--text "PROVIDER MODEL"]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from pipeline.io import atomic_write_text


def fingerprint(paths: list[str], text: str = "") -> str:
    """Hash of every file under `paths` (name, size, mtime in ns) and `text`."""
    h = hashlib.sha256(text.encode("utf-8"))
    for raw in paths:
        p = Path(raw)
        h.update(f"\0path:{raw}".encode())
        if not p.exists():
            h.update(b"\0missing")
            continue
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        for f in files:
            st = f.stat()
            h.update(f"\0{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def read_stamp(out: Path) -> tuple[str, str] | None:
    """(digest, description) of an existing stamp, or None: the description says what the digest
    covered in words, so a guard can show what changed."""
    if not out.is_file():
        return None
    digest, _, describe = out.read_text("utf-8").partition("\n")
    return digest, describe.strip()


def update_stamp(out: Path, paths: list[str], text: str = "", describe: str = "",
                 dry_run: bool = False) -> bool:
    """Write `out` if its fingerprint changed (`dry_run`: only say so); return whether it changed.

    `PSYEDGE_STAMP_SALT` is mixed in so a test can force a rerun without touching inputs.
    """
    digest = fingerprint(paths, text + os.environ.get("PSYEDGE_STAMP_SALT", ""))
    old = read_stamp(out)
    if old is not None and old[0] == digest:
        return False
    if not dry_run:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, digest + "\n" + (describe + "\n" if describe else ""))
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--text", default="")
    args = ap.parse_args(argv)
    update_stamp(args.out, args.paths, args.text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
