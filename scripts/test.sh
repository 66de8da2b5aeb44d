#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite: scripts/setup.sh
# (the environment, MPI included), scripts/setup-test-system.sh (SLURM,
# the shellcheck linter, HDF5 tools, the parallel-HDF5 environment), then ruff and mypy,
# then pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k format -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-test-system.sh
venv=${BLOCKFS_VENV:-.venv}
"$venv/bin/ruff" check blockfs_mpi tests benchmarks scripts   # settings in pyproject.toml
"$venv/bin/mypy"                                                # checks blockfs_mpi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider --durations=25 "$@"   # the slowest 25 in the log
