#!/bin/bash
# Install what the tests need, then run the whole test suite (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-demo
exec .venv/bin/python -m pytest -v -p no:cacheprovider --timeout=300 "$@" tests
