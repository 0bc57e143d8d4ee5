"""Extract llama.h and the ggml headers of exactly the installed llama-cpp-python release.

The llama-cpp-python wheel ships libllama.so but no headers, and llama.h changes between
llama.cpp commits (struct layouts included), so the host JNI build must compile against the
headers of the very commit that wheel was built from. They are in the release's source
distribution under `vendor/llama.cpp/`; this script takes them from a local sdist (`--sdist`,
or `$PSYEDGE_LLAMA_SDIST`) or downloads the sdist from the package index, and writes:

    OUT/include/llama.h, OUT/ggml/include/*.h, OUT/VERSION, OUT/LLAMA_CPP_COMMIT

With `--source`, OUT also gets the CMake project of llama.cpp and ggml (CMake files, `src/`,
`ggml/`, `vendor/`), so the driver of `make arm-test` can compile exactly that commit for another
CPU (the submodule is not needed). Nothing is committed: OUT lives under mobile/android/build/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

HEADER_DIRS = ("vendor/llama.cpp/include/", "vendor/llama.cpp/ggml/include/")
COMMIT_FILE = ".git/modules/vendor/llama.cpp/HEAD"
#: What a CPU-only build of libllama needs (`--source`); the rest (models, tools, tests) is left out.
SOURCE_PARTS = ("CMakeLists.txt", "LICENSE", "cmake/", "include/", "src/", "ggml/", "vendor/")


def find_sdist(version: str, explicit: str | None, cache: Path) -> Path:
    """A local sdist of `version`, downloading it with pip into `cache` when none is given."""
    name = f"llama_cpp_python-{version}.tar.gz"
    for cand in (explicit, os.environ.get("PSYEDGE_LLAMA_SDIST"), str(cache / name), f"/tmp/sdist/{name}"):
        if cand and Path(cand).is_file():
            return Path(cand)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    download_sdist(name, path)
    return path


SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


def download_sdist(name: str, dest: Path, index: str | None = None) -> None:
    """Fetch `name` from the index's simple API (PEP 691) and check its sha256.

    Not `pip download --no-binary`: pip then prepares the sdist's metadata, which builds
    scikit-build-core and CMake in an isolated environment (minutes, and it can fail) only to
    read a version we already know. The index's own hash is checked before the file is kept.
    """
    index = (index or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")
    page = f"{index}/llama-cpp-python/"
    print(f"llama_headers: downloading {name} from {page} (headers only are kept)", file=sys.stderr)
    req = urllib.request.Request(page, headers={"Accept": SIMPLE_JSON})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    entry = next((f for f in files if f["filename"] == name), None)
    if entry is None:
        raise FileNotFoundError(f"{page} lists no {name}")
    digest = hashlib.sha256()
    part = dest.with_suffix(".part")
    with urllib.request.urlopen(entry["url"], timeout=60) as resp, part.open("wb") as out:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    want = entry.get("hashes", {}).get("sha256")
    if want and digest.hexdigest() != want:
        part.unlink()
        raise OSError(f"{name}: sha256 {digest.hexdigest()} but the index says {want}")
    part.replace(dest)


def wanted(rel: str, source: bool) -> bool:
    """Whether `rel` (a path under vendor/llama.cpp/) is extracted: the headers, or the whole build."""
    if source:
        return any(rel == part or (part.endswith("/") and rel.startswith(part)) for part in SOURCE_PARTS)
    for prefix in HEADER_DIRS:
        prefix = prefix[len("vendor/llama.cpp/"):]
        if rel.startswith(prefix) and rel.endswith(".h") and "/" not in rel[len(prefix):]:
            return True
    return False


def extract(sdist: Path, out: Path, source: bool = False) -> str:
    """Write the headers (or, with `source`, the build tree) under `out`; return the commit ('' if unknown)."""
    commit = ""
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) != 2 or not member.isfile():
                continue
            rel = parts[1]
            if rel == COMMIT_FILE:
                fh = tar.extractfile(member)
                commit = fh.read().decode().strip() if fh else ""
                continue
            vendored = "vendor/llama.cpp/"
            if rel.startswith(vendored) and wanted(rel[len(vendored):], source):
                dest = out / rel[len(vendored):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                if fh is not None:
                    dest.write_bytes(fh.read())
    if not (out / "include" / "llama.h").is_file():
        raise FileNotFoundError(f"{sdist} has no vendor/llama.cpp/include/llama.h")
    return commit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", required=True, help="llama-cpp-python version, e.g. 0.3.36")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sdist", help="path of llama_cpp_python-<version>.tar.gz (default: find or download)")
    ap.add_argument("--source", action="store_true", help="also the CMake build tree of llama.cpp + ggml")
    args = ap.parse_args(argv)
    stamp = args.out / "VERSION"
    done = (args.out / "CMakeLists.txt") if args.source else (args.out / "include/llama.h")
    if stamp.is_file() and stamp.read_text().strip() == args.version and done.is_file():
        return 0
    try:
        sdist = find_sdist(args.version, args.sdist, args.out.parent / "sdist")
        commit = extract(sdist, args.out, args.source)
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        print(f"llama_headers: cannot get the llama.cpp headers for llama-cpp-python {args.version}: {exc}; "
              "pass --sdist <llama_cpp_python-VERSION.tar.gz> or set PSYEDGE_LLAMA_SDIST", file=sys.stderr)
        return 1
    (args.out / "LLAMA_CPP_COMMIT").write_text(commit + "\n")
    stamp.write_text(args.version + "\n")
    print(f"llama_headers: llama-cpp-python {args.version} (llama.cpp {commit[:12] or 'unknown'}) -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
