#!/usr/bin/env bash
# System packages the tests need, from Debian's and npm's registries (idempotent).
set -euo pipefail
need=()
command -v sbatch >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || need+=(munge)
[ -f /usr/share/java/junit4.jar ] || need+=(junit4)
# CJK glyphs for plot labels (topic names are Chinese).
fc-list 2>/dev/null | grep -qi wqy || need+=(fonts-wqy-microhei)
command -v aapt >/dev/null || need+=(aapt android-framework-res)
# Android's own org.json for the host-JVM tests of the Kotlin library.
[ -f /usr/share/java/com.android.json.jar ] || need+=(libandroid-json-java)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The npm package ships the JVM compiler at $(npm root -g)/kotlin-compiler/bin/kotlinc (not on PATH).
if [ ! -x "$(npm root -g)/kotlin-compiler/bin/kotlinc" ]; then
  npm install -g --silent kotlin-compiler@2.4.20 >/dev/null
fi
