#!/usr/bin/env bash
# The test command: installs what the tests need, lints, type-checks, runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh --test
# transformers: the suite runs on the newest release the range in pyproject.toml accepts, and
# the model tests once more on its floor (below), so that the range stays true.
SPEC=$("$PY" -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print(next(x for x in d["project"]["dependencies"] if x.startswith("transformers")))')
FLOOR=$(echo "$SPEC" | sed -E 's/.*>=([0-9.]+).*/\1/')
"$PY" -m pip install -q -U "$SPEC"
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
[ "$rc" = 0 ] || exit "$rc"
if [ "$#" = 0 ]; then
  FLOOR_ENV=${TMPDIR:-/tmp}/glmasr-live-transformers-$FLOOR
  [ -x "$FLOOR_ENV/bin/python" ] || "$PY" -m venv --system-site-packages "$FLOOR_ENV"
  "$FLOOR_ENV/bin/python" -m pip install -q "transformers==$FLOOR.0"
  echo "test.sh: the model tests on transformers $FLOOR (the range's floor)"
  "$FLOOR_ENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_streaming.py tests/test_rounds.py
fi
