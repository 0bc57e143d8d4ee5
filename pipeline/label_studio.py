"""A Label Studio server for the review queue: start it, load the queue, export what reviewers did.

    .venv-ls/bin/python -m pipeline.label_studio serve --queue data/labeling/review \\
        --data-dir data/label_studio [--port 8080]
    .venv-ls/bin/python -m pipeline.label_studio export --data-dir data/label_studio \\
        --out data/labeling/review/label_studio_export.json

Runs in Label Studio's own virtual environment (`make ls-venv`); `make review-server` and
`make review-export` call it. `serve` starts `label-studio` on 127.0.0.1 only, with its SQLite
database and uploads under `--data-dir` (kept between sessions, so a team's work survives a
restart), no analytics, no version check and no error reporting to outside hosts, one account
and an API token (written to `<data-dir>/token`, mode 0600, never printed). It creates a project
from `label_studio_config.xml` and imports `label_studio_tasks.json` with the teacher's labels as
predictions (what `make review` wrote), once: a second start reuses the project. While it runs,
`<data-dir>/server.json` says where (url, project, pids), so `export` needs no flags but the folder.

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
import socket
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
        """Start the server and wait for its /health; refuses a port already taken, since another
        server's /health would answer for ours and the queue would go to the wrong place."""
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex((HOST, self.port)) == 0:
                raise LabelStudioError(f"{HOST}:{self.port} is already in use (another label-studio?): "
                                       "stop it or pick another port (make review-server LS_PORT=...)")
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
    """An SDK client (imported here, so `--help` and the error paths work without it)."""
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
    """Write the project's JSON export to `out` (atomically); return the number of tasks.

    Label Studio's JSON export names an annotator only by user id (`"completed_by": 1`), which
    is meaningless outside this server's database; each id is replaced by `{"id", "email"}` so
    `make apply-review` records who reviewed (`reviewed_by`) by a name that survives the server."""
    tasks = ls.projects.exports.as_json(project_id)
    emails = {int(u.id): u.email for u in ls.users.list()}
    for task in tasks:
        for ann in task.get("annotations", []):
            by = ann.get("completed_by")
            if isinstance(by, int):
                ann["completed_by"] = {"id": by, "email": emails.get(by) or f"label-studio user {by}"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), "utf-8")
    tmp.replace(out)
    return len(tasks)


SERVER_FILE = "server.json"


def write_server_file(server: Server, project_id: int) -> Path:
    """`<data-dir>/server.json`: what `export` (and a test) needs to find the running server."""
    info = {"url": server.url, "project": project_id, "token_file": str(server.data_dir / "token"),
            "pid": os.getpid(), "server_pid": server.proc.pid if server.proc else None}
    path = server.data_dir / SERVER_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(info), "utf-8")
    tmp.replace(path)
    return path


def read_server_file(data_dir: Path) -> dict[str, Any]:
    path = data_dir / SERVER_FILE
    if not path.is_file():
        raise LabelStudioError(f"{path} not found: start the server first (make review-server)")
    return dict(json.loads(path.read_text("utf-8")))


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM while the server is still starting: unwind, so the `with` block stops its group
    (the default action would kill only this process and orphan label-studio)."""
    raise SystemExit(128 + signum)


def serve(queue: Path, data_dir: Path, port: int, exe: Path) -> None:
    """Start the server, load the queue, print where to go; return after Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _terminate)
    with Server(data_dir, port, exe) as server:
        try:
            pid = load_queue(client(server.url, server.token), queue)
            info = write_server_file(server, pid)
            print(f"review queue: {server.url}/projects/{pid} (user {USER}, password and API "
                  f"token in {data_dir / 'token'}; server details in {info}); Ctrl-C stops the "
                  "server", flush=True)
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            signal.sigwait(stop)
            print("stopping label-studio", flush=True)
        finally:
            (data_dir / SERVER_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.label_studio", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="start the server, load the queue, run until Ctrl-C")
    s.add_argument("--queue", type=Path, required=True, help="make review's folder (labeling/review)")
    s.add_argument("--data-dir", type=Path, required=True, help="the server's database and token")
    s.add_argument("--port", type=int, default=8080)
    e = sub.add_parser("export", help="download the running server's project as a JSON export")
    e.add_argument("--data-dir", type=Path, required=True, help="the folder `serve` was given")
    e.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    exe = Path(sys.executable).parent / "label-studio"
    try:
        if args.cmd == "serve":
            serve(args.queue, args.data_dir, args.port, exe)
        else:
            info = read_server_file(args.data_dir)
            token = Path(info["token_file"]).read_text("utf-8").strip()
            import httpx  # the SDK's transport: its errors mean the server is not there

            try:
                n = export(client(info["url"], token), int(info["project"]), args.out)
            except httpx.TransportError as exc:
                raise LabelStudioError(f"{info['url']} does not answer ({exc}): is make "
                                       "review-server still running?") from None
            print(f"exported {n} tasks -> {args.out}; apply: make apply-review REVIEWED={args.out}")
    except LabelStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the server was starting: it is stopped already
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
