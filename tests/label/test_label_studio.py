"""The Label Studio round trip as a reviewer walks it: `make review` -> `make review-server` ->
annotations through the API -> `make review-export` -> `make apply-review REVIEWED=<export>`.

A real Label Studio (its own venv, `make ls-venv`) on a free 127.0.0.1 port with the test's own
data folder; the queue comes from the rules teacher on the embedded sample data. The reviewer's
clicks are SDK calls from Label Studio's venv (tests/label/ls_reviewer.py): a risk flag changed,
a prediction accepted unchanged, a level changed with a note, a task skipped. Only the three
submitted samples may change, exactly as annotated and marked human-reviewed; every other row of
the dataset stays byte-identical. The server is stopped the way Ctrl-C stops it, and nothing of it
may outlive the stop, even when an assertion fails first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from make_builders import ROOT, Make, jsonl, teacher_dir

from psyedge.contract import FIELDS

pytestmark = pytest.mark.slow

LS_PY = ROOT / ".venv-ls" / "bin" / "python"
REVIEWER = ROOT / "tests" / "label" / "ls_reviewer.py"
START_TIMEOUT_S = 900  # the first start of a fresh data folder runs every Django migration
SECTION = "### Reviewing in Label Studio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_naming(path: Path) -> list[int]:
    """Pids of live processes whose command line names `path` (the server and its children all
    carry the test's data folder, so this finds them even when their group is unknown)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and proc.name != str(os.getpid()):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(path) in cmdline and state != "Z":
                pids.append(int(proc.name))
    return pids


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class ReviewServer:
    """`make review-server` running in its own process group, as in a terminal of its own."""

    proc: subprocess.Popen[bytes]
    port: int
    ls_dir: Path
    log: Path
    info: dict = field(default_factory=dict)  # server.json as it was while the server ran
    started_s: float = 0.0

    def wait_ready(self) -> None:
        t0 = time.monotonic()
        server_file = self.ls_dir / "server.json"
        while time.monotonic() - t0 < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                pytest.fail(f"make review-server exited with {self.proc.returncode}:\n{self.output()}")
            if server_file.is_file() and "review queue:" in self.output():
                self.info = json.loads(server_file.read_text("utf-8"))
                self.started_s = time.monotonic() - t0
                return
            time.sleep(1)
        pytest.fail(f"no server within {START_TIMEOUT_S} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace")

    def ctrl_c(self, timeout: float = 120) -> int:
        """SIGINT to make's whole group, which is what Ctrl-C in its terminal sends."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def kill_leftovers(self) -> None:
        """Teardown after a failure: SIGKILL whatever of make's and the server's groups remains."""
        for pgid in (self.proc.pid, self.info.get("server_pid")):
            if pgid and group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
        for pid in processes_naming(self.ls_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(30)


@pytest.fixture()
def queue(tmp_path: Path) -> tuple[Make, Path]:
    """`make review` with the rules teacher on the embedded sample data, in the test's folders."""
    make = Make(tmp_path)
    make.folders()
    make.ok("ls-venv", timeout=3600)  # a no-op once the venv is built
    make.ok("review")
    return make, tmp_path / "data"


@pytest.fixture()
def server(queue: tuple[Make, Path], tmp_path: Path) -> Iterator[ReviewServer]:
    make, data = queue
    port = free_port()
    log = tmp_path / "review-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["make", "--no-print-directory", "review-server", f"LS_PORT={port}"],
                                cwd=ROOT, env=make.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = ReviewServer(proc, port, data / "label_studio", log)
    try:
        srv.wait_ready()
        yield srv
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            srv.ctrl_c(timeout=120)
        srv.kill_leftovers()


def readme_section() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r}"
    start = text.index(SECTION)
    end = text.find("\n##", start + len(SECTION))
    return text[start:end if end > 0 else None]


def test_label_studio_round_trip(queue: tuple[Make, Path], server: ReviewServer, tmp_path: Path) -> None:
    make, data = queue
    print(f"label-studio answered after {server.started_s:.0f} s")
    out = server.output()
    url = f"http://127.0.0.1:{server.port}/projects/{server.info['project']}"
    assert url in out and str(data / "label_studio" / "token") in out
    token = (data / "label_studio" / "token").read_text("utf-8").strip()
    assert token not in out, "the API token must not be printed"
    assert oct((data / "label_studio" / "token").stat().st_mode & 0o777) == "0o600"

    tasks = json.loads((data / "labeling/review/label_studio_tasks.json").read_text("utf-8"))
    preds = {t["data"]["sample_id"]: {r["from_name"]: r["value"]["choices"][0]
                                      for r in t["predictions"][0]["result"] if r["type"] == "choices"}
             for t in tasks}
    risky = next(s for s, p in preds.items() if p["risk_flag"] != "none")
    calm = [s for s, p in preds.items() if p["risk_flag"] == "none"]
    assert len(calm) >= 2 and len(preds) >= 4, f"a queue too small to test: {sorted(preds)}"
    new_flag = "self_harm" if preds[risky]["risk_flag"] != "self_harm" else "suicidal"
    accepted, relevelled = calm[0], calm[1]
    skipped = next(s for s in preds if s not in (risky, accepted, relevelled))
    new_dep = (int(preds[relevelled]["depression_level"]) + 1) % 4
    plan = {risky: {"risk_flag": new_flag},
            accepted: {},
            relevelled: {"depression_level": new_dep, "student_distress_score": 9,
                         "note": "说到失眠两周了，比老师判的重"},
            skipped: {"skip": True}}
    (tmp_path / "plan.json").write_text(json.dumps(plan, ensure_ascii=False), "utf-8")
    reviewer = subprocess.run([str(LS_PY), str(REVIEWER), "--data-dir", str(data / "label_studio"),
                               "--plan", str(tmp_path / "plan.json"), "--report", str(tmp_path / "r.json")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert reviewer.returncode == 0, reviewer.stdout + reviewer.stderr
    report = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert report["tasks"] == report["predictions"] == len(tasks)
    assert set(report["annotated"]) == set(plan)

    labels_dir = teacher_dir(data, "rules", ROOT / "pipeline" / "label_config.yaml")
    dataset = labels_dir / "dataset.jsonl"
    before = {json.loads(line)["id"]: line for line in dataset.read_text("utf-8").splitlines()}
    export = data / "labeling" / "review" / "label_studio_export.json"
    make.ok("review-export")
    assert len(json.loads(export.read_text("utf-8"))) == len(tasks)
    applied = make.ok("apply-review", f"REVIEWED={export}")
    assert "applied 3 corrections (2 change a teacher label)" in applied.stdout, applied.stdout

    after_lines = {json.loads(line)["id"]: line for line in dataset.read_text("utf-8").splitlines()}
    assert after_lines.keys() == before.keys()
    untouched = set(before) - {risky, accepted, relevelled}
    assert all(after_lines[s] == before[s] for s in untouched), \
        [s for s in untouched if after_lines[s] != before[s]]
    old = {s: json.loads(before[s]) for s in before}
    for sid in (risky, accepted, relevelled):
        row = json.loads(after_lines[sid])
        expected = {k: old[sid][k] for k in FIELDS}
        expected.update({k: v for k, v in plan[sid].items() if k in FIELDS})
        assert {k: row[k] for k in FIELDS} == expected, sid
        assert row["teacher_labels"] == {k: old[sid][k] for k in FIELDS}
        assert row["label_source"] == "human" and row["reviewed_from"] == str(export)
        assert row["reviewed_by"] == report["reviewer"]
    assert json.loads(after_lines[relevelled])["review_note"] == plan[relevelled]["note"]
    stored = jsonl(labels_dir / "reviewed.jsonl")
    assert sorted(r["id"] for r in stored) == sorted((risky, accepted, relevelled))

    # Ctrl-C: make, the serve wrapper and every label-studio process end; the port is free again
    ls_pgid = server.info["server_pid"]
    assert group_alive(ls_pgid) and port_open(server.port)
    rc = server.ctrl_c()
    assert rc in (0, 130, -signal.SIGINT, 2), f"make review-server ended with {rc}:\n{server.output()}"
    assert not group_alive(server.proc.pid) and not group_alive(ls_pgid)
    assert not port_open(server.port) and processes_naming(server.ls_dir) == []
    assert not (data / "label_studio" / "server.json").exists()

    # the README walks the same commands
    section = readme_section()
    for cmd in ("make review", "make review-server", "make review-export",
                "make apply-review REVIEWED=data/labeling/review/label_studio_export.json"):
        assert cmd in section, f"README {SECTION!r} does not show {cmd!r}"
    assert re.search(r"Ctrl-C", section)
