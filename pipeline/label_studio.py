"""A Label Studio server for the review queue: start it, load the queue, export what reviewers did.

    .venv-ls/bin/python -m pipeline.label_studio serve --queue data/labeling/review \\
        --data-dir data/label_studio [--port 8080]
    .venv-ls/bin/python -m pipeline.label_studio export --url http://127.0.0.1:8080 \\
        --token-file data/label_studio/token --project 1 --out data/labeling/review/export.json

Runs in Label Studio's own virtual environment (`make ls-venv`); `make review-server` and
`make review-export` call it. `serve` starts `label-studio` on 127.0.0.1 only, with its SQLite
database and uploads under `--data-dir` (kept between sessions, so a team's work survives a
restart), no analytics, no version check and no error reporting to outside hosts, one account
and an API token (written to `<data-dir>/token`, mode 0600, never printed). It creates a project
from `label_studio_config.xml` and imports `label_studio_tasks.json` with the teacher's labels as
predictions (what `make review` wrote), once: a second start reuses the project.

`export` downloads the project as Label Studio's JSON export, the file `make apply-review
REVIEWED=<export>` reads. Only stdlib and `label_studio_sdk` are imported here, since this venv
has none of the toolkit's dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
USER = "reviewer@psyedge.local"
PROJECT_TITLE = "psyedge review queue"
#: Environment of the server: nothing leaves the machine, the legacy token is what the SDK sends.
SERVER_ENV = {
    "LATEST_VERSION_CHECK": "false",  # else every start asks PyPI for a newer release
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # --user-token is a legacy token
    "DJANGO_DB": "sqlite",
}
START_TIMEOUT_S = 600  # the first start runs every Django migration: minutes on 2 busy cores


class LabelStudioError(RuntimeError):
    """The server did not start, or the queue/export could not be moved (says which and why)."""


class Server:
    """`label-studio start` in its own process group; `stop()` ends the whole group."""

    def __init__(self, data_dir: Path, port: int, label_studio: Path) -> None:
        self.data_dir, self.port, self.url = data_dir, port, f"http://{HOST}:{port}"
        self.token = _token(data_dir)
        self.log_path = data_dir / "server.log"
        self._exe = label_studio
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self._exe), "start", "--no-browser", "--internal-host", HOST,
               "--port", str(self.port), "--data-dir", str(self.data_dir), "--username", USER,
               "--password", self.token, "--user-token", self.token]
        env = {**os.environ, **SERVER_ENV, "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
               "HOME": str(self.data_dir)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise LabelStudioError(f"label-studio exited with {self.proc.returncode} while "
                                       f"starting; its log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(2)
        self.stop()
        raise LabelStudioError(f"label-studio did not answer {self.url}/health within "
                               f"{START_TIMEOUT_S} s; its log: {self.log_path}")

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after `grace_s`; the exit code (None if never
        started). The group matters: the runserver spawns children that a lone kill leaves."""
        if self.proc is None:
            return None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass
        return self.proc.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _token(data_dir: Path) -> str:
    """The server's API token: made once per data folder, stored 0600 beside the database."""
    path = data_dir / "token"
    if path.is_file():
        return path.read_text("utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def client(url: str, token: str) -> Any:
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url, api_key=token)


def load_queue(ls: Any, queue_dir: Path) -> int:
    """The queue's project id: created with our labeling config and tasks on first use."""
    for project in ls.projects.list():
        if project.title == PROJECT_TITLE:
            return int(project.id)
    config = _read(queue_dir / "label_studio_config.xml")
    tasks = json.loads(_read(queue_dir / "label_studio_tasks.json"))
    project = ls.projects.create(title=PROJECT_TITLE, label_config=config,
                                 description="make review's queue; export feeds make apply-review")
    ls.projects.import_tasks(id=project.id, request=tasks, return_task_ids=True)
    return int(project.id)


def _read(path: Path) -> str:
    if not path.is_file():
        raise LabelStudioError(f"{path} not found: run `make review` first")
    return path.read_text("utf-8")


def export(ls: Any, project_id: int, out: Path) -> int:
    """Write the project's JSON export to `out` (atomically); return the number of tasks."""
    tasks = ls.projects.exports.as_json(project_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), "utf-8")
    tmp.replace(out)
    return len(tasks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.label_studio", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="start the server, load the queue, run until Ctrl-C")
    s.add_argument("--queue", type=Path, required=True, help="make review's folder (labeling/review)")
    s.add_argument("--data-dir", type=Path, required=True, help="the server's database and token")
    s.add_argument("--port", type=int, default=8080)
    e = sub.add_parser("export", help="download the project's JSON export")
    e.add_argument("--url", required=True)
    e.add_argument("--token-file", type=Path, required=True)
    e.add_argument("--project", type=int, required=True)
    e.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    exe = Path(sys.executable).parent / "label-studio"
    try:
        if args.cmd == "serve":
            with Server(args.data_dir, args.port, exe) as server:
                pid = load_queue(client(server.url, server.token), args.queue)
                print(f"review queue: {server.url}/projects/{pid} (user {USER}, password and API "
                      f"token in {args.data_dir / 'token'}); Ctrl-C stops the server", flush=True)
                stop = {signal.SIGINT, signal.SIGTERM}
                signal.pthread_sigmask(signal.SIG_BLOCK, stop)
                signal.sigwait(stop)
        else:
            token = args.token_file.read_text("utf-8").strip()
            n = export(client(args.url, token), args.project, args.out)
            print(f"exported {n} tasks -> {args.out}; apply: make apply-review REVIEWED={args.out}")
    except LabelStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
