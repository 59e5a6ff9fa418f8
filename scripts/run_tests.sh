#!/usr/bin/env bash
# Run the test suite; an empty selection (pytest exit 5) is a failure, not a pass.
set -u
python=$1; shift
"$python" -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit $rc
