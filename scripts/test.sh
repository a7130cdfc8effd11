#!/usr/bin/env bash
# Set up (if needed), lint, and run every test: unit tests, and integration tests that start the real
# bundled LM server and a real `mlflow server` on free ports of 127.0.0.1.
#
#     bash scripts/test.sh            # everything
#     bash scripts/test.sh -m "not lm" # only what needs no LM server
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check bibleqa sweeps tests scripts bench examples
.venv/bin/ruff format --check bibleqa sweeps tests scripts bench examples
.venv/bin/python -m pytest "$@"
