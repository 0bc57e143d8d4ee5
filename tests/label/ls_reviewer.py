"""A reviewer at a real Label Studio server, driven through label-studio-sdk (test support).

    .venv-ls/bin/python tests/label/ls_reviewer.py --data-dir DIR --queue DIR --port N \\
        --plan plan.json --export export.json --report report.json

Starts the server (pipeline.label_studio.Server), loads `make review`'s queue into a project,
then for each `{sample_id: {field: value, ...}}` of the plan submits an annotation the way the
labeling UI's Submit button does: the task's prediction as the starting result, the named
fields changed, `completed_by` the reviewer. Exports the project, stops the server and writes a
report (task and prediction counts, the server's pid and exit code) for the test to check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.label_studio import Server, client, export, load_queue  # noqa: E402


def reviewed_result(prediction: list[dict], changes: dict[str, object]) -> list[dict]:
    """The prediction's regions with the reviewer's choices swapped in (values as strings)."""
    out = []
    for region in prediction:
        region = json.loads(json.dumps(region))
        if region["from_name"] in changes:
            region["value"] = {"choices": [str(changes[region["from_name"]])]}
        region.pop("id", None)
        out.append(region)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    for name in ("--data-dir", "--queue", "--plan", "--export", "--report"):
        ap.add_argument(name, type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    plan = json.loads(args.plan.read_text("utf-8"))
    server = Server(args.data_dir, args.port, Path(sys.executable).parent / "label-studio")
    report: dict[str, object] = {}
    with server:
        report["pid"] = server.proc.pid if server.proc else None
        ls = client(server.url, server.token)
        project = load_queue(ls, args.queue)
        me = ls.users.whoami()
        tasks = list(ls.tasks.list(project=project, fields="all"))
        report["tasks"] = len(tasks)
        report["predictions"] = sum(len(t.predictions or []) for t in tasks)
        for task in tasks:
            sid = task.data["sample_id"]
            if sid in plan:
                pred = task.predictions[0]
                result = pred["result"] if isinstance(pred, dict) else pred.result
                ls.annotations.create(id=task.id, result=reviewed_result(result, plan[sid]),
                                      completed_by=me.id, lead_time=12.5)
        report["exported"] = export(ls, project, args.export)
    report["exit_code"] = server.proc.returncode if server.proc else None
    args.report.write_text(json.dumps(report), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
