#!/usr/bin/env bash
# Create .venv and install damoc with everything the demo and the tests need (CPU torch from this disk).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,embed,fidelity,ray,datasets]"
