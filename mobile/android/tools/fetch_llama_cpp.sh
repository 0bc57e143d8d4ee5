#!/usr/bin/env bash
# Check out llama.cpp at the pinned commit into mobile/android/third_party/llama.cpp (for the
# Gradle/NDK build). Uses the git submodule when the repository declares one, else a shallow clone.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(awk '$1 == "llama.cpp" {print $2}' "$here/LLAMA_CPP_PIN")"
dest="$here/third_party/llama.cpp"
repo_root="$(git -C "$here" rev-parse --show-toplevel)"
if git -C "$repo_root" config -f .gitmodules --get-regexp 'submodule\..*\.path' 2>/dev/null | grep -q 'mobile/android/third_party/llama.cpp'; then
  git -C "$repo_root" submodule update --init mobile/android/third_party/llama.cpp
else
  mkdir -p "$dest"
  git -C "$dest" init -q
  git -C "$dest" remote add origin https://github.com/ggml-org/llama.cpp.git 2>/dev/null || true
  git -C "$dest" fetch -q --depth 1 origin "$commit"
  git -C "$dest" checkout -q FETCH_HEAD
fi
got="$(git -C "$dest" rev-parse HEAD)"
[ "$got" = "$commit" ] || { echo "llama.cpp is at $got, expected $commit (LLAMA_CPP_PIN)" >&2; exit 1; }
echo "llama.cpp $commit ready in $dest"
