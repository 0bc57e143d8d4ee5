"""Token ids LLaMA-Factory trains on vs the ids our trainer and the Screener use, row by row.

    .venv-lf/bin/python -m training.lf_parity --recipe models/<run>/llamafactory.yaml \\
        [--lf-template deepseekr1 --template deepseek-r1] [--json report.json]

Runs inside LF's virtual environment (`make lf-venv`) and calls LF's own code, the way its SFT
workflow does (`llamafactory/train/sft/workflow.py`): `get_train_args` on the recipe,
`load_tokenizer`, `get_template_and_fix_tokenizer`, `get_dataset(stage="sft")`, which reads
`dataset_info.json`, runs the alpaca converter and the template's encoder. Both SFT split files
are rendered. The reference is `training.examples.encode_record` on the same rows with the base
model's own tokenizer: the SDK's `render` tokenized segment by segment as the Screener feeds it.

A row is identical when `input_ids` and `labels` (prompt masked) are equal; anything else is
listed with the first differing position and both tokens, so a skew names itself. Exit status 1
when any row differs. `--lf-template`/`--template` override the pair to try another mapping
(how training/sft.py's LF_REFUSED reasons were checked).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from psyedge.prompt import get_template
from training.examples import IGNORE_INDEX, encode_record, wants_bos
from training.sft import LF_DATASETS, SFT_NAME, SPLIT_FILES

log = logging.getLogger(__name__)


def lf_rows(recipe: dict[str, Any], out_dir: Path) -> tuple[list[dict[str, list[int]]], Any]:
    """LF's tokenized SFT rows for both splits (train file, then validation), and its tokenizer."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = {**recipe, "output_dir": str(out_dir), "overwrite_output_dir": True,
            "dataset": ",".join(LF_DATASETS[s] for s in ("train", "validation")),
            "max_samples": None, "do_eval": False, "eval_dataset": None, "eval_strategy": "no",
            "quantization_bit": None, "bf16": False, "report_to": "none"}
    args = {k: v for k, v in args.items() if v is not None}
    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, stage="sft", **module)
    rows = [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])}
            for r in dataset["train_dataset"]]
    return rows, module["tokenizer"]


def sdk_rows(model_dir: Path, dataset_dir: Path, template: str) -> list[tuple[str, dict[str, list[int]]]]:
    """(id, ids) per SFT row in the order of the split files, with our encoder."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    bos = wants_bos(model_dir, tokenizer)
    by_id = {r["id"]: r for r in _jsonl(dataset_dir / SFT_NAME)}
    tpl = get_template(template)
    out = []
    for split in ("train", "validation"):
        for row in _jsonl(dataset_dir / SPLIT_FILES[split]):
            out.append((row["id"], encode_record(tokenizer, by_id[row["id"]], tpl, bos)))
    return out


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def first_difference(a: list[int], b: list[int]) -> int:
    """Index of the first differing position (the shorter length when one is a prefix)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def compare(lf: list[dict[str, list[int]]], ours: list[tuple[str, dict[str, list[int]]]],
            tokenizer: Any) -> dict[str, Any]:
    """The parity report: row count, identical rows and each differing row's first difference."""
    if len(lf) != len(ours):
        return {"rows": len(ours), "lf_rows": len(lf), "identical": 0,
                "mismatches": [{"error": f"LF built {len(lf)} rows from {len(ours)}"}]}
    mismatches = []
    for (rid, mine), theirs in zip(ours, lf, strict=True):
        for key in ("input_ids", "labels"):
            if mine[key] != theirs[key]:
                i = first_difference(mine[key], theirs[key])
                mismatches.append({"id": rid, "field": key, "at": i, "sdk_len": len(mine[key]),
                                   "lf_len": len(theirs[key]),
                                   "sdk": _show(tokenizer, mine[key][i:i + 3]),
                                   "lf": _show(tokenizer, theirs[key][i:i + 3])})
                break
    return {"rows": len(ours), "identical": len(ours) - len(mismatches), "mismatches": mismatches}


def _show(tokenizer: Any, ids: list[int]) -> str:
    return repr([("<masked>" if t == IGNORE_INDEX else tokenizer.decode([t])) for t in ids])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.lf_parity", description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, required=True, help="a resolved LF recipe (llamafactory.yaml)")
    ap.add_argument("--template", default="deepseek-r1", help="our template the SFT set was built with")
    ap.add_argument("--lf-template", help="LF template to try instead of the recipe's")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    recipe = yaml.safe_load(args.recipe.read_text("utf-8"))
    if args.lf_template:
        recipe["template"] = args.lf_template
    with tempfile.TemporaryDirectory(prefix="lf-parity-") as tmp:
        lf, tokenizer = lf_rows(recipe, Path(tmp))
    ours = sdk_rows(Path(recipe["model_name_or_path"]), Path(recipe["dataset_dir"]), args.template)
    report = {"template": args.template, "lf_template": recipe["template"], **compare(lf, ours, tokenizer)}
    text = json.dumps(report, ensure_ascii=False, indent=1)
    if args.json:
        args.json.write_text(text + "\n", "utf-8")
    print(text if report["mismatches"] else
          f"{report['identical']}/{report['rows']} rows identical ({args.template} -> {recipe['template']})")
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
