r"""Quantise a GGUF with llama.cpp's own quantizer: `make quantize`.

    python -m convert.quantize --src models/tiny/model-f16.gguf --qtype Q4_K_M \
        --out models/tiny/model-Q4_K_M.gguf

Uses the `llama-quantize` binary when it is on PATH, else `llama_model_quantize` through
llama-cpp-python (the same C++ code). The output is written under a temporary name and renamed
when complete. Afterwards the file is read back: the report gives size before/after, tensor
counts per type, and every weight llama.cpp stored in a fallback type (rows not divisible by the
k-quant super-block of 256 fall back to a legacy type; those weights lose more accuracy).

`--imatrix` computes an importance matrix with the `llama-imatrix` binary on the calibration
conversations (`--calibration`, JSONL) and feeds it to the quantizer; `--imatrix-file` uses one
computed before (llama.cpp's GGUF imatrix format).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import ConvertError
from convert.gguf_types import read_summary, type_counts
from convert.to_gguf import temp_sibling
from pipeline.io import atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QType:
    """A quantisation preset: llama.cpp's ftype id and the types its weights may legitimately get
    (the mix: e.g. Q4_K_M puts half of attn_v/ffn_down and the output matrix in Q6_K)."""

    ftype: int
    expected: frozenset[str]


#: --qtype -> preset (ftype numbers: llama.h `enum llama_ftype`).
QTYPES: dict[str, QType] = {
    "Q4_K_M": QType(15, frozenset({"Q4_K", "Q6_K"})),
    "Q5_K_M": QType(17, frozenset({"Q5_K", "Q6_K"})),
    "Q8_0": QType(7, frozenset({"Q8_0"})),
    "Q4_0": QType(2, frozenset({"Q4_0", "Q6_K"})),
}

@dataclass
class QuantizeReport:
    """What the quantizer did, as read back from the files."""

    src: str
    out: str
    qtype: str
    file_type: str | None
    size_before: int
    size_after: int
    tool: str
    imatrix: str | None
    type_counts: dict[str, int]
    fallbacks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.size_after / self.size_before


def find_fallbacks(tensors: list[Any], qtype: str) -> list[dict[str, Any]]:
    """Weights (2-D tensors) stored in a type outside the preset's mix."""
    expected = QTYPES[qtype].expected
    return [{"tensor": t.name, "type": t.type, "shape": list(t.shape)}
            for t in tensors if len(t.shape) >= 2 and t.type not in expected]


def read_imatrix(path: Path) -> dict[str, np.ndarray]:
    """llama.cpp's GGUF imatrix: `<tensor>.in_sum2` (sum of squared inputs per column, per expert)
    and `<tensor>.counts` (tokens seen, per expert) -> mean squared input per column."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path}: not a GGUF imatrix file ({exc}); compute one with "
                           "llama-imatrix") from None
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    out: dict[str, np.ndarray] = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name[: -len(".in_sum2")]
        counts = tensors.get(base + ".counts")
        if counts is None:
            raise ConvertError(f"{path}: {name} has no matching {base}.counts")
        sums2 = sums.reshape(counts.size, -1)
        out[base] = (sums2 / np.maximum(counts.reshape(-1, 1), 1)).astype(np.float32).ravel()
    if not out:
        raise ConvertError(f"{path}: no '<tensor>.in_sum2' entries: not an imatrix file")
    return out


def _quantize_lib(src: Path, tmp: Path, qtype: str, imatrix: dict[str, np.ndarray] | None) -> None:
    """llama_model_quantize through llama-cpp-python (same C++ as the binary)."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QTYPES[qtype].ftype
    params.nthread = os.cpu_count() or 1
    keep: list[Any] = []  # the C array points into these: keep them alive during the call
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            arr = np.ascontiguousarray(values, dtype=np.float32)
            name_b = name.encode()
            keep += [arr, name_b]
            entries[i].name = name_b
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(imatrix)].name = None  # terminator
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise ConvertError(f"llama_model_quantize failed (code {rc}) on {src}: see llama.cpp's log above; is "
                           "it a float GGUF written by convert.to_gguf?")


def _quantize_binary(binary: str, src: Path, tmp: Path, qtype: str, imatrix_file: Path | None) -> None:
    cmd = [binary] + (["--imatrix", str(imatrix_file)] if imatrix_file else []) + [str(src), str(tmp), qtype]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConvertError(f"{binary} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


#: Row `split` values that mark validation rows (used for calibration when a file has them).
VALIDATION_SPLITS = ("val", "valid", "validation", "dev")


def calibration_text(path: Path, template: str = "deepseek-r1", limit: int = 200) -> str:
    """Prompts of up to `limit` conversations from a JSONL file, as the model sees them.

    A row is either `{"conversation": [{role, text}, ...]}` (rendered with `template`) or an
    alpaca SFT row `{"instruction", "input"}` (wrapped in the template like training does). When
    rows carry a `split` field only the validation rows are used."""
    from pipeline.io import JsonlError, read_jsonl
    from psyedge.prompt import render, render_training_text

    texts: list[str] = []
    try:
        rows = list(read_jsonl(path))
        if any("split" in row for row in rows):  # prefer held-out rows: the model never trained on them
            rows = [r for r in rows if r.get("split") in VALIDATION_SPLITS] or rows
        for i, row in enumerate(rows, 1):
            if len(texts) >= limit:
                break
            if "conversation" in row:
                texts.append(render(row["conversation"], template))
            elif "instruction" in row:
                prompt, completion = render_training_text(row["instruction"], row.get("input", ""),
                                                          row.get("output", ""), template)
                texts.append(prompt + completion)
            else:
                raise ConvertError(f"{path}:{i}: expected a 'conversation' or 'instruction' field, got "
                                   f"{sorted(row)[:6]}")
    except FileNotFoundError:
        raise ConvertError(f"calibration file {path} does not exist (make sft writes it)") from None
    except JsonlError as exc:
        raise ConvertError(str(exc)) from None
    if not texts:
        raise ConvertError(f"{path}: no conversations to calibrate the importance matrix on")
    return "\n\n".join(texts)


def compute_imatrix(src: Path, calibration: Path, workdir: Path) -> Path:
    """Run `llama-imatrix` on the calibration conversations; return the imatrix file."""
    binary = shutil.which("llama-imatrix")
    if binary is None:
        raise ConvertError("--imatrix needs the llama-imatrix binary on PATH (build llama.cpp's tools, "
                           "e.g. cmake --build build --target llama-imatrix), or pass --imatrix-file, or "
                           "drop IMATRIX=1")
    text_file = workdir / "calibration.txt"
    text_file.write_text(calibration_text(calibration), "utf-8")
    out = workdir / "imatrix.gguf"
    cmd = [binary, "-m", str(src), "-f", str(text_file), "-o", str(out), "-c", "512"]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise ConvertError(f"llama-imatrix failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return out


def quantize(src: str | Path, out: str | Path, qtype: str = "Q4_K_M", *,
             imatrix_file: str | Path | None = None,
             calibration: str | Path | None = None, use_binary: bool | None = None) -> QuantizeReport:
    """Quantise `src` to `out`; `calibration` computes an imatrix first (needs llama-imatrix)."""
    src, out = Path(src), Path(out)
    if qtype not in QTYPES:
        raise ConvertError(f"--qtype {qtype!r}: expected one of {sorted(QTYPES)}")
    if not src.is_file():
        raise ConvertError(f"{src}: no such GGUF file (run make gguf first)")
    if src.resolve() == out.resolve():
        raise ConvertError(f"--out {out} is the source file: choose another name")
    before = read_summary(src)
    if before["file_type"] not in ("ALL_F32", "MOSTLY_F16", "MOSTLY_BF16"):
        raise ConvertError(f"{src} is {before['file_type']}, not a float GGUF: quantise the f16/bf16/f32 "
                           "file (re-quantising loses accuracy twice)")
    binary = shutil.which("llama-quantize") if use_binary is not False else None
    if use_binary and binary is None:
        raise ConvertError("llama-quantize is not on PATH")
    with tempfile.TemporaryDirectory(prefix="psyedge-imatrix-") as work:
        imatrix_path = Path(imatrix_file) if imatrix_file else None
        if calibration is not None and imatrix_path is None:
            imatrix_path = compute_imatrix(src, Path(calibration), Path(work))
        imatrix = read_imatrix(imatrix_path) if imatrix_path and not binary else None
        with temp_sibling(out) as tmp:
            if binary:
                _quantize_binary(binary, src, tmp, qtype, imatrix_path)
            else:
                _quantize_lib(src, tmp, qtype, imatrix)
    after = read_summary(out)
    return QuantizeReport(
        src=str(src), out=str(out), qtype=qtype, file_type=after["file_type"],
        size_before=src.stat().st_size, size_after=out.stat().st_size,
        tool=binary or "llama_cpp.llama_model_quantize",
        imatrix=str(imatrix_file or calibration or "") or None,
        type_counts=type_counts(after["tensors"]), fallbacks=find_fallbacks(after["tensors"], qtype),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True,
                        help="float GGUF (f16/bf16/f32) from convert.to_gguf")
    parser.add_argument("--qtype", default="Q4_K_M", choices=sorted(QTYPES), help="preset (default Q4_K_M)")
    parser.add_argument("--out", type=Path, required=True, help="quantised GGUF to write")
    parser.add_argument("--imatrix", action="store_true",
                        help="compute an importance matrix with llama-imatrix on --calibration first")
    parser.add_argument("--calibration", type=Path,
                        help="JSONL conversations for --imatrix (e.g. the SFT set)")
    parser.add_argument("--imatrix-file", type=Path, help="use this precomputed GGUF imatrix")
    parser.add_argument("--report", type=Path,
                        help="JSON report path (default: <out>.json beside the output)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.imatrix and args.calibration is None and args.imatrix_file is None:
        print("error: --imatrix needs --calibration <conversations.jsonl> (or --imatrix-file)",
              file=sys.stderr)
        return 2
    try:
        rep = quantize(args.src, args.out, args.qtype, imatrix_file=args.imatrix_file,
                       calibration=args.calibration if args.imatrix else None)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} was not written", file=sys.stderr)
        return 130
    report_path = args.report or args.out.with_name(args.out.name + ".json")
    atomic_write_json(report_path, {**asdict(rep), "ratio": round(rep.ratio, 4)})
    print(f"wrote {rep.out}: {rep.file_type}, {rep.size_before / 2**20:.1f} MiB -> "
          f"{rep.size_after / 2**20:.1f} MiB ({rep.ratio:.1%}) with {rep.tool}")
    print("tensor types: " + ", ".join(f"{k} x{v}" for k, v in rep.type_counts.items()))
    if rep.fallbacks:
        print(f"{len(rep.fallbacks)} weight(s) needed a fallback type:")
        for fb in rep.fallbacks:
            print(f"  {fb['tensor']} {fb['shape']}: {fb['type']}")
    else:
        print(f"no fallback types: every weight is in the {args.qtype} mix "
              f"{sorted(QTYPES[args.qtype].expected)}")
    print(f"report: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
