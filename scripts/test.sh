#!/usr/bin/env bash
# The whole test suite: lint, format, types, then every test tier in one pytest run.
# Called by `make test` (after scripts/setup.sh) and, through it, by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
source .env.tools
echo "== ruff check"; "$VENV/bin/ruff" check operator tests scripts
echo "== ruff format --check"; "$VENV/bin/ruff" format --check operator tests scripts
echo "== mypy --strict"; "$VENV/bin/mypy"
echo "== import-linter (layers)"; "$VENV/bin/lint-imports" --no-cache
echo "== pytest"
exec "$VENV/bin/pytest" -p no:cacheprovider "$@"
