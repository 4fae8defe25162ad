#!/usr/bin/env bash
# Install glmasr-live and everything it needs on a Debian/Ubuntu machine (or a venv on any
# Linux with the system packages already there). Idempotent.
#   bash scripts/install.sh          # the tool
#   bash scripts/install.sh --test   # the tool + test dependencies (headless browser, PulseAudio...)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

apt_pkgs=(espeak-ng sox libsox-fmt-all libsndfile1 ffmpeg libportaudio2)
[ "$TEST" = 1 ] && apt_pkgs+=(tmux pulseaudio pulseaudio-utils libasound2-plugins chromium fonts-noto-cjk redis-server)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "install.sh: please install these system packages: ${missing[*]}" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# torch: keep one that is already installed (CPU or CUDA). Otherwise a CUDA build where an
# NVIDIA GPU is present, and the small CPU build everywhere else (never a multi-GB CUDA wheel
# on a CPU-only machine).
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    "$PY" -m pip install -q "torch>=2.4"
  else
    "$PY" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
      || "$PY" -m pip install -q "torch==2.13.0"
  fi
fi
if [ "$TEST" = 1 ]; then
  "$PY" -m pip install -q -e ".[test]"
else
  "$PY" -m pip install -q -e .
fi
