"""Bring a PEFT LoRA adapter trained elsewhere into a run folder (`make merge ADAPTER=<dir>`).

    python -m training.adapter_import --adapter DIR --run-dir models/<run> --template deepseek-r1

Any trainer that saves with PEFT's `save_pretrained` writes `adapter_config.json` and
`adapter_model.safetensors`: LLaMA-Factory at the top of its `output_dir`, our trainer under
`<run>/adapter/`, Unsloth or a colleague's script wherever they chose. Both layouts are found.

The imported adapter lands in `<run>/adapter/` with a `psyedge_train.json` that records where it
came from (`imported_from`, the source's sha256, the trainer when known). When the source says
what it was trained on (its own `psyedge_train.json`, which our trainer and `training.lf_train`
write), the template, prompt hash and contract version must equal the SDK's: an adapter trained on
another prompt would be merged, converted and shipped with a manifest that lies about it. An
adapter that records nothing is accepted with `recorded: false`, since nothing can be checked.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.io import atomic_write_json, file_sha256
from psyedge.contract import CONTRACT_VERSION
from psyedge.prompt import get_template, prompt_hash

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TRAIN_MANIFEST = "psyedge_train.json"


class AdapterImportError(ValueError):
    """An adapter folder that cannot be imported (message names the folder and the fix)."""


def find_adapter(src: Path) -> Path:
    """The folder holding the PEFT files: `src` itself (LF, Unsloth) or `src/adapter` (ours)."""
    for cand in (src, src / "adapter"):
        if all((cand / f).is_file() for f in ADAPTER_FILES):
            return cand
    raise AdapterImportError(f"{src}: no {' + '.join(ADAPTER_FILES)} here or in {src / 'adapter'}; "
                       "pass ADAPTER=<the folder a PEFT save_pretrained wrote>")


def check_recorded(record: dict[str, Any], template: str, where: Path) -> None:
    """Refuse a source whose recorded prompt contract differs from the SDK's (when it records one)."""
    expected = {"template": template, "prompt_hash": prompt_hash(), "contract_version": CONTRACT_VERSION}
    wrong = {k: record[k] for k in expected if record.get(k) not in (None, expected[k])}
    if wrong:
        shown = ", ".join(f"{k}={v!r} (SDK: {expected[k]!r})" for k, v in wrong.items())
        raise AdapterImportError(f"{where}: the adapter was trained on another prompt: {shown}; retrain it "
                           "on `make sft` of this checkout, or merge it with the checkout it came from")


def check_replaceable(final: Path, found: Path) -> None:
    """Refuse to replace a run's adapter that came from anywhere but `found`.

    A trained adapter can be hours of GPU time; importing another one over it under the same
    RUN must not delete it. Re-importing from the same source (a rerun) replaces it.
    """
    if not (final / "adapter_model.safetensors").is_file():
        return
    record_path = final / TRAIN_MANIFEST
    record = json.loads(record_path.read_text("utf-8")) if record_path.is_file() else {}
    if record.get("imported_from") != str(found.resolve()):
        source = record.get("imported_from") or f"trained by {record.get('trainer', 'this run')}"
        raise AdapterImportError(f"{final} already holds an adapter ({source}); import into another "
                                 "run (RUN=<name>) or move that folder away yourself")


def import_adapter(src: Path, run_dir: Path, template: str, trainer: str | None = None) -> Path:
    """Copy the adapter into `run_dir/adapter` with its provenance; return that folder."""
    get_template(template)  # unknown name -> InputError listing the known ones
    found = find_adapter(src)
    record_path = found / TRAIN_MANIFEST
    record: dict[str, Any] = {}
    if record_path.is_file():
        record = json.loads(record_path.read_text("utf-8"))
        check_recorded(record, template, record_path)
    final, tmp = run_dir / "adapter", run_dir / ".adapter.import.tmp"
    if final.resolve() == found.resolve():
        raise AdapterImportError(f"{src} is already this run's adapter folder; `make merge` without "
                           "ADAPTER merges it")
    check_replaceable(final, found)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copyfile(found / name, tmp / name)
    weights = file_sha256(tmp / "adapter_model.safetensors")
    atomic_write_json(tmp / TRAIN_MANIFEST, {
        **record,
        "template": template,
        "contract_version": record.get("contract_version", CONTRACT_VERSION),
        "prompt_hash": record.get("prompt_hash"),
        "trainer": record.get("trainer") or trainer or "unknown",
        "recorded": bool(record),
        "imported_from": str(found.resolve()),
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "adapter_sha256": weights,
    })
    shutil.rmtree(final, ignore_errors=True)
    tmp.replace(final)
    log.info("imported %s -> %s (%s)", found, final, "recorded" if record else "no record to check")
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.adapter_import",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True, help="the folder a PEFT save wrote")
    parser.add_argument("--run-dir", type=Path, required=True, help="models/<run>")
    parser.add_argument("--template", required=True, help="chat template it was trained with")
    parser.add_argument("--trainer", help="who trained it, when the folder does not say")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        print(import_adapter(args.adapter, args.run_dir, args.template, args.trainer))
    except (AdapterImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
