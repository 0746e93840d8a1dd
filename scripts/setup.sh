#!/usr/bin/env bash
# Sets up omnivec in ./.venv (idempotent). `--test` also installs the test extras and the system tools the tests
# use (ffmpeg, espeak-ng, chromium for the browser tests). torch is pinned in the same pip command as everything that depends on it, so pip never
# swaps in another multi-GB build; 2.14.1 + 0.29.1 is the pair whose torchvision imports (open_clip needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras="openclip"
if [ "${1:-}" = "--test" ]; then
  extras="test"
  missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check \
  "torch==2.14.1" "torchvision==0.29.1" -e ".[${extras}]"
# The clip-retrieval package pins old numpy/pyarrow/open_clip; the tests only need its client module (requests).
# Likewise CLIP_benchmark (the metric tests import its code) and ImageBind's reference model code (parity tests;
# its model needs only einops, iopath and timm, in the test extra).
[ "$extras" != "test" ] || .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
  "clip-retrieval==2.45.0" "clip_benchmark==1.6.2" "imagebind-unofficial==0.1.1"
