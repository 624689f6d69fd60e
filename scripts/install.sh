#!/usr/bin/env bash
# Installs the whole stack into .venv (CPU torch here; the same pins give CUDA torch on GPU machines).
# Idempotent: a second run only checks. Usage: bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
STAMP="$VENV/.installed-$(cat scripts/requirements.txt scripts/constraints.txt pyproject.toml | sha1sum | cut -c1-12)"
if [ -f "$STAMP" ]; then
  exit 0
fi
python3 -m venv "$VENV"
PY="$VENV/bin/python"
export PIP_CONSTRAINT="$PWD/scripts/constraints.txt"
"$PY" -m pip install -q --upgrade "pip>=24" "setuptools>=77" wheel 2> >(grep -v "^WARNING: Location" >&2)
echo "[install] step 1/3: core stack (torch, anny, gradio, rerun, ...)"
"$PY" -m pip install -q -r scripts/requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
echo "[install] step 2/3: mediapipe and dlr-moge without their conflicting declared deps"
"$PY" -m pip install -q --no-deps mediapipe==0.10.21 dlr-moge==2.0.0 2> >(grep -v "^WARNING: Location" >&2)
echo "[install] step 3/3: sam2 (CPU build) and this project"
SAM2_BUILD_CUDA=0 "$PY" -m pip install -q --no-deps --no-build-isolation sam2==1.1.0
"$PY" -m pip install -q --no-deps --no-build-isolation -e .
touch "$STAMP"
echo "[install] done: $VENV"
