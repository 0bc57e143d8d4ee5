"""A reviewer at a running Label Studio server, driven through label-studio-sdk (test support).

    .venv-ls/bin/python tests/label/ls_reviewer.py --data-dir DATA/label_studio \\
        --plan plan.json --report report.json

Runs in Label Studio's venv (the toolkit's has no SDK) against the server `make review-server`
started, found through its `server.json`. For each `{sample_id: {field: value, ...}}` of the plan
it submits an annotation the way the labeling UI's Submit button does: the task's prediction as
the starting result (the UI pre-fills it), the named fields changed, `parent_prediction` and
`completed_by` set; `{"skip": true}` submits what the Skip button does (a cancelled annotation),
and `{"note": "..."}` fills the note box. Writes a report (task and prediction counts, the
annotations made, the reviewer's email) for the test to check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipeline.label_studio import client, read_server_file  # noqa: E402


def reviewed_result(prediction: list[dict[str, Any]], changes: dict[str, Any]) -> list[dict[str, Any]]:
    """The prediction's regions with the reviewer's choices swapped in (choices are strings, as
    the UI sends them) and the note as a textarea region."""
    out = []
    for region in prediction:
        region = json.loads(json.dumps(region))
        if region["from_name"] in changes:
            region["value"] = {"choices": [str(changes[region["from_name"]])]}
        region.pop("id", None)
        out.append(region)
    if changes.get("note"):
        out.append({"from_name": "note", "to_name": "dialogue", "type": "textarea",
                    "value": {"text": [changes["note"]]}})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    for name in ("--data-dir", "--plan", "--report"):
        ap.add_argument(name, type=Path, required=True)
    args = ap.parse_args()
    plan: dict[str, dict[str, Any]] = json.loads(args.plan.read_text("utf-8"))
    info = read_server_file(args.data_dir)
    ls = client(info["url"], Path(info["token_file"]).read_text("utf-8").strip())
    me = ls.users.whoami()
    tasks = list(ls.tasks.list(project=info["project"], fields="all"))
    report: dict[str, Any] = {"tasks": len(tasks), "reviewer": me.email,
                              "predictions": sum(len(t.predictions or []) for t in tasks), "annotated": {}}
    for task in tasks:
        sid = task.data["sample_id"]
        if sid not in plan:
            continue
        pred = task.predictions[0]
        pred = pred if isinstance(pred, dict) else pred.dict()
        if plan[sid].get("skip"):
            ann = ls.annotations.create(id=task.id, result=[], was_cancelled=True, completed_by=me.id,
                                        lead_time=3.0)
        else:
            ann = ls.annotations.create(id=task.id, result=reviewed_result(pred["result"], plan[sid]),
                                        parent_prediction=pred["id"], completed_by=me.id, lead_time=12.5)
        report["annotated"][sid] = ann.id
    args.report.write_text(json.dumps(report), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
