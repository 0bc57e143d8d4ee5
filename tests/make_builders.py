"""Running the Makefile from tests: each test its own config file and folders, real `make` calls.

`PSYEDGE_CONFIG` points every call at a config file under the test's temporary folder, so what a
test configures never reads or writes the checkout's own `config.mk`; the first call configures
the test's data, models and reports folders the same way a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from testkit.fake_gemini import FakeGemini, expected_labels, prompt_key

ROOT = Path(__file__).resolve().parents[1]

__all__ = [
    "ROOT",
    "FakeGemini",
    "Make",
    "expected_labels",
    "fast_label_config",
    "jsonl",
    "prompt_key",
    "teacher_dir",
]


class Make:
    """`make` in the checkout with the test's config file; `run` returns the finished process."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
        }
        self.env.update(PSYEDGE_CONFIG=str(tmp / "config.mk"), **env)
        self.log: list[str] = []

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> Any:
        proc = subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.log.append(
            f"$ make {' '.join(args)}  -> {proc.returncode}\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
        return proc

    def ok(self, *args: str, **kwargs: Any) -> Any:
        proc = self.run(*args, **kwargs)
        assert proc.returncode == 0, "\n".join(self.log[-3:])
        return proc

    def folders(self, **extra: str) -> None:
        """Configure the test's own data, models and reports folders (and any `extra` settings)."""
        settings = {
            "DATA_DIR": self.tmp / "data",
            "MODELS_DIR": self.tmp / "models",
            "REPORTS_DIR": self.tmp / "reports",
            **extra,
        }
        self.ok("configure", *(f"{k}={v}" for k, v in settings.items()))


def fast_label_config(dst: Path) -> Path:
    """The shipped label config without rate limits (the fake server has none) and with short
    backoffs; every other setting, the threshold included, is the shipped one."""
    import yaml

    cfg = yaml.safe_load((ROOT / "pipeline" / "label_config.yaml").read_text("utf-8"))
    cfg["defaults"].update(backoff_initial_s=0.01, backoff_max_s=0.05, timeout_s=20)
    for model in cfg["models"].values():
        model.update(rpm=0, tpm=0)
    dst.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return dst


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def teacher_dir(data: Path, provider: str, config: Path, model: str | None = None) -> Path:
    """Where `make label` puts this teacher's labels."""
    from pipeline.teacher import folder_name, resolve

    return data / "labeling" / "results" / folder_name(resolve(config, provider, model))
