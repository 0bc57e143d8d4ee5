"""`make configure VAR=value ...`: state a run's choices once, in a file the Makefile includes.

The `./configure` + `config.mk` convention: the variables given to `make configure` are checked and
written to `config.mk` (ignored by git), which the Makefile includes before its defaults, so
every later `make` call uses them. Precedence, highest first: a `VAR=value` on the make command
line (for that call only), `config.mk`, the environment, the Makefile's default. `make config`
shows each setting and where it came from.

    python -m pipeline.configure --file config.mk --known "PSYQA PROVIDER ..." \
        --set PROVIDER=gemini ...

A configure call changes only the variables it names and keeps the others; `VAR=` (empty) forgets
VAR, so its default applies again. Settings tied to another follow it: a new PROVIDER forgets the
configured MODEL (it named the old provider's model) and a new PROFILE forgets BASE_MODEL, SUBMIT
and RUN, unless the same call sets them too. An unknown name or a value that cannot work (a
missing input folder, an unknown provider or profile) is refused before anything is written.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.io import atomic_write_text
from pipeline.labeling.config import PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"^(?P<name>[A-Z_][A-Z0-9_]*) := ?(?P<value>.*)$")


#: Leader -> the settings that only make sense with it (the Makefile applies the same table to a
#: leader given on the command line: `make label PROVIDER=rules` does not use gemini's MODEL).
TIED: dict[str, tuple[str, ...]] = {
    "PROVIDER": ("MODEL",),
    "PROFILE": ("BASE_MODEL", "SUBMIT", "RUN"),
}


class ConfigureError(ValueError):
    """A variable `make configure` cannot accept; the message names it and the fix."""


def _exists(name: str, value: str) -> None:
    if not Path(value).expanduser().exists():
        raise ConfigureError(f"{name}={value} does not exist: give the path of the file or folder")


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], None]:
    def check(name: str, value: str) -> None:
        if value not in choices:
            raise ConfigureError(f"{name}={value} is not one of {', '.join(choices)}")

    return check


def _profile(name: str, value: str) -> None:
    known = sorted(p.stem for p in (ROOT / "training" / "configs").glob("*.yaml"))
    if value not in known:
        raise ConfigureError(
            f"{name}={value} has no training/configs/{value}.yaml: use one of {', '.join(known)}"
        )


def _model_dir(name: str, value: str) -> None:
    if not (Path(value).expanduser() / "config.json").is_file():
        raise ConfigureError(
            f"{name}={value} is not a model folder (no config.json there): "
            "give a local Hugging Face model directory"
        )


#: Checks per variable (a variable without one takes any value).
CHECKS: dict[str, Callable[[str, str], None]] = {
    "PSYQA": _exists,
    "CPSYCOUND": _exists,
    "CPSYCOUNE": _exists,
    "LABEL_CONFIG": _exists,
    "PROVIDER": _one_of(PROVIDERS),
    "PROFILE": _profile,
    "SUBMIT": _one_of(("local", "slurm")),
    "BASE_MODEL": _model_dir,
    "BENCH_MODE": _one_of(("quick", "full")),
}


def escape(value: str) -> str:
    """A value as make reads it back literally: `$` doubled, `#` escaped (else a comment)."""
    return value.replace("$", "$$").replace("#", r"\#")


def unescape(value: str) -> str:
    return value.replace(r"\#", "#").replace("$$", "$")


def read_config(path: Path) -> dict[str, str]:
    """The settings of an existing config file, in file order (the CONFIGURED list is derived)."""
    if not path.is_file():
        return {}
    settings = {}
    for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ConfigureError(
                f"{path}:{lineno}: not a `NAME := value` line: {line!r}; "
                "fix or delete the file and run `make configure` again"
            )
        if m["name"] != "CONFIGURED" and not m["name"].startswith("CONFIGURED_"):
            settings[m["name"]] = unescape(m["value"])
    return settings


def render(settings: dict[str, str]) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = [
        f"# psyedge run settings, written by `make configure` ({stamp}).",
        "# Change with `make configure VAR=value` (VAR= forgets one); `make config` shows them.",
        "# A VAR=value on a make command line still wins, for that call only.",
    ]
    lines += [f"{name} := {escape(value)}" for name, value in settings.items()]
    lines.append(f"CONFIGURED := {' '.join(settings)}")
    lines.append(
        "# The configured leaders: another one on the command line brings its own tied settings."
    )
    lines += [f"CONFIGURED_{name} := {escape(settings.get(name, ''))}" for name in TIED]
    return "\n".join(lines) + "\n"


def configure(path: Path, known: list[str], assignments: list[str]) -> dict[str, str]:
    """Merge `NAME=value` assignments into the config at `path`; return the new settings."""
    settings = read_config(path)
    given = {item.partition("=")[0] for item in assignments}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigureError(f"--set {item!r}: expected NAME=value")
        if name not in known:
            raise ConfigureError(
                f"{name} is not a setting make configure knows; known: {', '.join(known)}"
            )
        if value == "":
            settings.pop(name, None)
            continue
        if name in CHECKS:
            CHECKS[name](name, value)
        if settings.get(name) != value:
            for tied in TIED.get(name, ()):
                if tied not in given and settings.pop(tied, None) is not None:
                    print(f"{name} changed: forgot {tied} (it belonged to the old {name})")
        settings[name] = value
    ordered = {name: settings[name] for name in known if name in settings}
    atomic_write_text(path, render(ordered))
    return ordered


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.configure", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--file", type=Path, required=True, help="the config file the Makefile includes"
    )
    ap.add_argument("--known", required=True, help="space-separated names of the settings")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = ap.parse_args(argv)
    try:
        settings = configure(args.file, args.known.split(), args.set)
    except ConfigureError as exc:
        print(f"error: {exc}; {args.file} is unchanged", file=sys.stderr)
        return 2
    shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "nothing (every default applies)"
    print(f"{args.file}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
