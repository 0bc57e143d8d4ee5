"""Build the SFT set: teacher labels joined with their conversations, as alpaca records.

    python -m training.sft --data-dir data --template deepseek-r1

Reads `labeling/results/dataset.jsonl` (labels; `--labels` names another file, e.g. one
teacher's folder, as `make sft` does) and `processed/unified_min.jsonl` (conversations), joins
them by `id` and writes under `datasets/`:

- `sft_student_mental.jsonl`: every record, `{id, split, instruction, input, output}`, where
  `instruction` is the SDK's `INSTRUCTION`, `input` its transcript of the trimmed conversation and
  `output` the canonical label JSON (what the decode grammar produces). `split` is `train` or
  `validation`: a deterministic 95/5 split stratified by `risk_flag`.
- `sft_student_mental_train.jsonl` / `sft_student_mental_val.jsonl`: the same records per split,
  for LLaMA-Factory, with `dataset_info.json` describing both (alpaca columns). LF's alpaca
  converter joins `instruction` and `input` with a "\n" the SDK never sends, so these files carry
  the whole prompt body (`INSTRUCTION + transcript`) in `instruction` and no `input` column: LF then
  renders exactly `psyedge.prompt.render` (tests/training/test_llamafactory.py compares token ids).
- `sft_stats.json`: counts per split and risk flag, where the labels came from (teacher,
  `fallback:<teacher>`, human), the template, contract version, prompt hash and input hashes,
  so a trained model can be traced to the exact data it saw.

A set in which a risk class that the SDK lexicon finds in the conversations has no label at all
is refused (a teacher that refuses suicide dialogues leaves exactly that): the model would never
see the class. `--allow-missing-risk` builds it anyway and keeps the warning in the stats.

The prompt text is never assembled here: `psyedge.prompt` builds it, so the SFT text of a sample
equals what the Screener renders for the same conversation (tests/training/test_sft.py checks it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.io import JsonlError, atomic_write_json, file_sha256, read_jsonl, write_jsonl
from pipeline.labeling.report import missing_risk_classes
from psyedge.contract import CONTRACT_VERSION, FIELDS, canonical_json, validate
from psyedge.errors import InputError, LabelError
from psyedge.lexicon import conversation_risk
from psyedge.prompt import INSTRUCTION, get_template, prepare, prompt_hash, transcript

log = logging.getLogger(__name__)

LABELS_PATH = Path("labeling/results/dataset.jsonl")
CONVERSATIONS_PATH = Path("processed/unified_min.jsonl")
OUT_DIR = Path("datasets")
SFT_NAME = "sft_student_mental.jsonl"
SPLIT_FILES = {"train": "sft_student_mental_train.jsonl", "validation": "sft_student_mental_val.jsonl"}
#: LLaMA-Factory dataset names (dataset_info.json keys) per split.
LF_DATASETS = {"train": "student_mental", "validation": "student_mental_val"}
#: Our template name -> LLaMA-Factory's, only where LF's own code renders token ids identical to
#: the SDK's (training.lf_parity proves it on every SFT row). `deepseekr1` needs
#: `enable_thinking: false` so it puts the empty think block in the prompt, as ours does.
LF_TEMPLATES = {"deepseek-r1": "deepseekr1"}
#: Our templates no LF template can render identically, and why (`make train
#: TRAINER=llamafactory` refuses them with this reason; the native trainer handles them).
LF_REFUSED = {
    "chatml": "LF's qwen/chatml templates end every answer with '<|im_end|>\\n': one label token "
              "after the SDK's stop text, and qwen adds a default system prompt the SDK never sends",
    "raw": "LF's empty template adds an EOS label the SDK's raw answers do not have, no BOS, and "
           "tokenizes the transcript together with the '\\n输出：' suffix (the last '\\n' merges "
           "into one '\\n\\n' token the Screener never feeds)",
}
VAL_FRACTION = 0.05
SPLIT_SEED = "psyedge-sft-v1"


class SftError(ValueError):
    """A record that cannot become an SFT example (message names its id and the reason)."""


@dataclass
class SftResult:
    """What `build_sft` wrote and what it refused, for the CLI summary and `sft_stats.json`."""

    records: list[dict[str, Any]]
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)


def load_conversations(path: Path) -> dict[str, Any]:
    """Map id -> conversation from unified_min.jsonl (a duplicate id is an error: joins must be 1:1)."""
    conversations: dict[str, Any] = {}
    for lineno, row in enumerate(read_jsonl(path), 1):
        rid = row.get("id")
        if not isinstance(rid, str) or not rid:
            raise SftError(f"{path}:{lineno}: record has no string 'id'; rebuild it with `make data`")
        if rid in conversations:
            raise SftError(f"{path}:{lineno}: duplicate id {rid!r}; rebuild it with `make data`")
        conversations[rid] = row.get("conversation")
    return conversations


def labels_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The four label fields of a labeling result row, validated against the schema."""
    missing = [k for k in FIELDS if k not in row]
    if missing:
        raise LabelError(f"missing label field(s) {missing}")
    return validate({k: row[k] for k in FIELDS})


def make_record(rid: str, labels_row: Mapping[str, Any], conversation: Any) -> dict[str, Any]:
    """One alpaca record; raises `SftError` naming the id and why it was refused."""
    try:
        labels = labels_of(labels_row)
    except LabelError as exc:
        raise SftError(f"id {rid!r}: invalid labels: {exc}") from None
    try:
        turns, _ = prepare(conversation)
    except (InputError, TypeError) as exc:
        raise SftError(f"id {rid!r}: unusable conversation: {exc}") from None
    return {"id": rid, "instruction": INSTRUCTION, "input": transcript(turns),
            "output": canonical_json(labels)}


def _order_key(rid: str) -> str:
    """Position of a record within its stratum: a hash of its id, so adding records never moves
    an existing record to the other split (and no RNG state is involved)."""
    return hashlib.sha256(f"{SPLIT_SEED}:{rid}".encode()).hexdigest()


def assign_splits(records: list[dict[str, Any]], val_fraction: float = VAL_FRACTION) -> None:
    """Set `split` on every record: per risk flag, the first round(n * fraction) ids by hash go to
    validation, at least one when the flag has two or more records, so every risk class a model
    must not miss is also measured."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    strata: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        strata[risk_of(rec)].append(rec)
    for group in strata.values():
        group.sort(key=lambda r: _order_key(r["id"]))
        n_val = round(len(group) * val_fraction)
        if val_fraction > 0 and n_val == 0 and len(group) >= 2:
            n_val = 1
        for i, rec in enumerate(group):
            rec["split"] = "validation" if i < n_val else "train"


def risk_of(record: Mapping[str, Any]) -> str:
    """The risk flag of an SFT record (read back from its canonical output)."""
    return str(json.loads(record["output"])["risk_flag"])


def build_records(labels: Iterable[Mapping[str, Any]], conversations: Mapping[str, Any],
                  labels_path: Path | str = LABELS_PATH) -> SftResult:
    """Join labels with conversations; collect every refusal instead of stopping at the first."""
    result = SftResult(records=[])
    seen: set[str] = set()
    for lineno, row in enumerate(labels, 1):
        rid = row.get("id")
        if not isinstance(rid, str) or not rid:
            result.refused.append((f"{labels_path}:{lineno}", "no string 'id'"))
            continue
        if rid in seen:
            result.refused.append((rid, f"duplicate id at {labels_path}:{lineno}"))
            continue
        seen.add(rid)
        if rid not in conversations:
            result.refused.append((rid, "no conversation with this id in unified_min.jsonl"))
            continue
        try:
            result.records.append(make_record(rid, row, conversations[rid]))
        except SftError as exc:
            result.refused.append((rid, str(exc).split(": ", 1)[1]))
    return result



def dataset_info() -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entries for the two split files (alpaca format).

    No `query` column: LF would join it to the prompt with a newline (see `lf_record`).
    """
    columns = {"prompt": "instruction", "response": "output"}
    return {LF_DATASETS[s]: {"file_name": SPLIT_FILES[s], "formatting": "alpaca", "columns": columns}
            for s in ("train", "validation")}


def risk_coverage(conversations: Mapping[str, Any], records: list[dict[str, Any]],
                  allow_missing: bool) -> tuple[dict[str, int], list[str]]:
    """Lexicon classes of the conversations, and warnings for those no record is labeled with.

    Raises `SftError` on a missing class unless `allow_missing`: then the warning is returned
    for the stats, where it stays as long as the set does.
    """
    found = Counter(conversation_risk(c) for c in conversations.values())
    missing = missing_risk_classes(found, {risk_of(r) for r in records})
    warnings = [f"the lexicon finds {cls} in {found[cls]} conversation(s) but no record is "
                f"labeled {cls}" for cls in missing]
    if warnings and not allow_missing:
        raise SftError("; ".join(warnings) + ": a model trained on this set never sees that class. "
                       "The teacher's refusals are in blocked.jsonl beside the labels: label them "
                       "with FALLBACK=rules (make label), or review them (make review, make "
                       "apply-review); ALLOW_MISSING_RISK=1 (--allow-missing-risk) builds it anyway")
    for w in warnings:
        log.warning("%s (built anyway: --allow-missing-risk)", w)
    return dict(sorted(found.items())), warnings


def lf_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A split-file row for LLaMA-Factory: the prompt body joined here, exactly as `render` joins it
    (LF's alpaca converter would put "\\n" between `instruction` and a non-empty `input`)."""
    return {"id": record["id"], "instruction": record["instruction"] + record["input"],
            "output": record["output"]}


def build_sft(data_dir: Path, template: str, val_fraction: float = VAL_FRACTION,
              skip_invalid: bool = False, labels: Path | None = None,
              allow_missing_risk: bool = False) -> dict[str, Any]:
    """Write the SFT files under `data_dir/datasets`; return the stats that were written.

    Refused records (invalid labels, no conversation, duplicate ids) fail the build, listing
    each id and reason; with `skip_invalid` they are left out and counted in the stats instead.
    """
    get_template(template)  # unknown name -> InputError listing the known ones
    labels_path, conv_path = labels or data_dir / LABELS_PATH, data_dir / CONVERSATIONS_PATH
    for path, make_target in ((labels_path, "make label"), (conv_path, "make data")):
        if not path.is_file():
            raise SftError(f"{path} not found: run `{make_target} DATA_DIR={data_dir}` first")
    conversations = load_conversations(conv_path)
    label_rows = list(read_jsonl(labels_path))
    result = build_records(label_rows, conversations, labels_path)
    if result.refused and not skip_invalid:
        shown = "\n".join(f"  {rid}: {reason}" for rid, reason in result.refused[:20])
        more = f"\n  ... and {len(result.refused) - 20} more" if len(result.refused) > 20 else ""
        raise SftError(f"{len(result.refused)} record(s) refused:\n{shown}{more}\n"
                       "fix the labels (make apply-review) or pass --skip-invalid to leave them out")
    if not result.records:
        raise SftError(f"no usable records in {labels_path}")
    records = sorted(result.records, key=lambda r: r["id"])
    lexicon_classes, risk_warnings = risk_coverage(conversations, records, allow_missing_risk)
    assign_splits(records, val_fraction)
    used = {r["id"] for r in records}
    sources = Counter(str(r.get("label_source") or r.get("provenance") or "teacher")
                      for r in label_rows if r.get("id") in used)

    out = data_dir / OUT_DIR
    ordered = [{k: r[k] for k in ("id", "split", "instruction", "input", "output")} for r in records]
    write_jsonl(out / SFT_NAME, ordered)
    for split, name in SPLIT_FILES.items():
        write_jsonl(out / name, (lf_record(r) for r in ordered if r["split"] == split))
    atomic_write_json(out / "dataset_info.json", dataset_info())

    counts: dict[str, Counter[str]] = {s: Counter() for s in SPLIT_FILES}
    for r in records:
        counts[r["split"]][risk_of(r)] += 1
    stats = {
        "records": len(records),
        "splits": {s: {"total": sum(c.values()), "risk_flag": dict(sorted(c.items()))} for s,
                   c in counts.items()},
        "refused": len(result.refused),
        "refused_ids": [{"id": rid, "reason": reason} for rid, reason in result.refused],
        "label_sources": dict(sorted(sources.items())),
        "fallback_records": sum(n for s, n in sources.items() if s.startswith("fallback:")),
        "lexicon_classes": lexicon_classes,
        "warnings": risk_warnings,
        "template": template,
        "llamafactory_template": LF_TEMPLATES.get(template),
        "llamafactory_refused": LF_REFUSED.get(template),
        "val_fraction": val_fraction,
        "contract_version": CONTRACT_VERSION,
        "prompt_hash": prompt_hash(),
        "labels": str(labels_path),
        "teacher": _teacher_of(labels_path),
        "inputs": {str(LABELS_PATH): file_sha256(labels_path),
                   str(CONVERSATIONS_PATH): file_sha256(conv_path)},
    }
    atomic_write_json(out / "sft_stats.json", stats)
    return stats


def _teacher_of(labels_path: Path) -> dict[str, Any]:
    """Provider and model of the labels (the resolved config beside them), for the stats."""
    cfg = labels_path.parent / "config.json"
    try:
        obj = json.loads(cfg.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {"provider": obj.get("provider"), "model": obj.get("model")}


def iter_split(data_dir: Path, split: str, name: str = SFT_NAME) -> Iterator[dict[str, Any]]:
    """Records of one split from the SFT file `datasets/<name>` (what training reads).

    A seed-style file (alpaca rows with no `split` field at all, as the original project wrote
    them) is split here with `assign_splits`, the same deterministic rule `build_sft` applies;
    filtering it on `split` would give zero rows. A file where only some rows have `split` is an
    error naming the first row without one: half-split data is a mistake, not a format.
    """
    path = data_dir / OUT_DIR / name
    if not path.is_file():
        raise SftError(f"{path} not found: run `make sft DATA_DIR={data_dir}` first "
                       "(or `make psysuicide-sft` for psysuicide_sft.jsonl)")
    records = list(read_jsonl(path))
    unsplit = [n for n, rec in enumerate(records, 1) if "split" not in rec]
    if unsplit and len(unsplit) < len(records):
        raise SftError(f"{path}:{unsplit[0]}: no 'split' field, but other rows have one; "
                       f"rebuild the file with `make sft DATA_DIR={data_dir}`")
    if unsplit:
        _split_seed_style(records, path)
    yield from (rec for rec in records if rec.get("split") == split)


def _split_seed_style(records: list[dict[str, Any]], path: Path) -> None:
    """Give seed-style rows (no `split`) ids where missing and the standard split."""
    for n, rec in enumerate(records, 1):
        rec.setdefault("id", f"{path.name}:{n}")
        try:
            risk_of(rec)
        except (KeyError, TypeError, ValueError):
            raise SftError(f"{path}:{n}: 'output' is not label JSON with a risk_flag; the split is "
                           "stratified by risk_flag") from None
    assign_splits(records)
    log.info("%s has no 'split' field (seed-style): split %d rows %d%%/%d%% by risk_flag", path,
             len(records), round(100 * (1 - VAL_FRACTION)), round(100 * VAL_FRACTION))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.sft", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the pipeline's data folder")
    parser.add_argument("--template", default="deepseek-r1", help="chat template the set is trained with")
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help=f"validation share per risk flag (default {VAL_FRACTION})")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="leave refused records out (listed in sft_stats.json) instead of failing")
    parser.add_argument("--allow-missing-risk", action="store_true",
                        help="build even if a risk class the lexicon finds has no label (warned)")
    parser.add_argument("--labels", type=Path,
                        help=f"labels JSONL (default: DATA_DIR/{LABELS_PATH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        stats = build_sft(args.data_dir, args.template, args.val_fraction, args.skip_invalid,
                          args.labels, args.allow_missing_risk)
    except (SftError, JsonlError, InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    splits = stats["splits"]
    print(f"SFT set: {stats['records']} records (train {splits['train']['total']}, "
          f"validation {splits['validation']['total']}; refused {stats['refused']}; "
          f"fallback labels {stats['fallback_records']}) -> {args.data_dir / OUT_DIR / SFT_NAME}")
    for warning in stats["warnings"]:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
