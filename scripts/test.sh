#!/usr/bin/env bash
# Set up (if needed), lint, and run every test: unit tests, and integration tests that start the real
# bundled LM server and a real `mlflow server` on free ports of 127.0.0.1.
#
#     bash scripts/test.sh            # everything
#     bash scripts/test.sh -m "not lm" # only what needs no LM server
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# tests/test_cluster_up.py runs `ray up` over SSH to this machine: it needs sshd and rsync. Install them where
# we are root with apt-get (CI's fresh machine; about 20 s), without starting the package's own sshd service
# (a policy-rc.d for the install); elsewhere, or if apt fails, the test is skipped and says why.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && { [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null; }; then
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1; fi
    install="apt-get install -y -qq --no-install-recommends openssh-server rsync"
    DEBIAN_FRONTEND=noninteractive $install >/dev/null 2>&1 \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $install >/dev/null 2>&1; } \
        || echo "test.sh: could not install openssh-server and rsync; tests/test_cluster_up.py will be skipped"
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
fi
.venv/bin/ruff check bibleqa sweeps tests scripts bench examples
.venv/bin/ruff format --check bibleqa sweeps tests scripts bench examples
.venv/bin/python -m pytest "$@"
