#!/usr/bin/env bash
# Set up, then run a real 6-trial sweep on the bundled LM into the local MLflow store (./mlflow.db).
#
#     bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/bibleqa-sweep run search_spaces/smoke.yaml --trials 6 --lm local "$@"
echo "See the run: .venv/bin/mlflow ui --port 5000   (then open http://localhost:5000)"
