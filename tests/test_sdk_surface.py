"""The Screener's private names stay inside the SDK: everything else uses its public surface.

Benchmarks and tests that reach into `_cached` or `_prepare` break silently when the SDK's
internals change (and can leave the KV-cache picture out of step with the cache); the public
surface (`prompt`, `prompt_tokens`, `turn_tokens`, `prefill`, `guess`/`set_guess`/`reset_guess`,
`kv`, `prefix_state_bytes`) is what they may use. Also: no product module edits `sys.path`.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENER = ROOT / "sdk" / "python" / "psyedge" / "screener.py"
#: Folders whose modules are product code (tests may arrange imports; product code may not).
PRODUCT = ("benchmarks/", "pipeline/", "training/", "convert/", "testkit/", "sdk/python/psyedge/",
           "mobile/android/tools/")


def private_names() -> set[str]:
    """Underscore names the screener module defines on its classes (methods and attributes)."""
    names = set()
    for node in ast.walk(ast.parse(SCREENER.read_text("utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("_"):
            names.add(node.name)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            names.add(node.attr)
    return {n for n in names if not n.startswith("__")}


def python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split()]


def test_the_screener_defines_private_names() -> None:
    assert {"_guess", "_line_tokens", "_prepare"} <= private_names()  # the scan below sees them


def test_no_code_outside_the_sdk_touches_a_screener_private_name() -> None:
    private = private_names()
    found = []
    for path in python_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("sdk/python/psyedge/") or not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"), rel)):
            if (isinstance(node, ast.Attribute) and node.attr in private
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{rel}:{node.lineno}: .{node.attr}")
    assert not found, "use the Screener's public surface instead:\n" + "\n".join(found)


def test_no_product_module_edits_sys_path() -> None:
    found = []
    for path in python_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(PRODUCT) and path.is_file() and "sys.path" in path.read_text("utf-8"):
            found.append(rel)
    assert not found, f"import through the installed packages (testkit, benchmarks) instead: {found}"
