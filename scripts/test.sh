#!/usr/bin/env bash
# Set up everything the tests need (scripts/setup.sh) and run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k format -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${BLOCKFS_VENV:-.venv}/bin/python" -m pytest -q -p no:cacheprovider "$@"
