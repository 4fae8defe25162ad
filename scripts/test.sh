#!/usr/bin/env bash
# The test command: installs what the tests need, lints, type-checks, runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh --test
"$PY" -m ruff check glmasr_live tests scripts
"$PY" -m mypy glmasr_live
set +e
"$PY" -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
