#!/usr/bin/env bash
# Set up (or update) the project's virtual environment: blockfs_mpi, its
# dependencies, MPI itself (the MPICH wheel gives .venv/bin/mpiexec) and the
# test tools. Idempotent; a second run takes a few seconds.
#
#   scripts/setup.sh            -> .venv (override with BLOCKFS_VENV=path)
#   BLOCKFS_SYSTEM_MPI=1 ...    -> use the cluster's MPI: mpi4py is built
#                                  against the mpicc on PATH, no MPICH wheel
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh
VENV=${BLOCKFS_VENV:-.venv}
PYTHON=${PYTHON:-python3}

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || {
    echo "setup: blockfs_mpi needs Python >= 3.10; '$PYTHON' is $("$PYTHON" -V 2>/dev/null || echo "not found")." \
         "Run with PYTHON=python3.X set to a newer one." >&2
    exit 1
}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
fi
# Reinstall only when the packaging changed (the install is editable: code changes need none).
stamp="$VENV/.blockfs-setup-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)-${BLOCKFS_SYSTEM_MPI:-0}"
if [ ! -e "$stamp" ]; then
    if [ "${BLOCKFS_SYSTEM_MPI:-0}" = 1 ]; then
        "$VENV/bin/pip" install --quiet --no-binary=mpi4py mpi4py
        "$VENV/bin/pip" install --quiet -e ".[jp2k,test]"
    else
        "$VENV/bin/pip" install --quiet -e ".[jp2k,mpich,test]"
    fi
    rm -f "$VENV"/.blockfs-setup-*
    touch "$stamp"
fi
# glymur needs an OpenJPEG shared library; Debian's is the simplest source.
if ! "$VENV/bin/python" -c "import glymur, sys; from packaging.version import Version as V; sys.exit(V(glymur.version.openjpeg_version) < V('2.4'))" 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        quietly setup apt_install libopenjp2-7 \
            || echo "setup: could not install libopenjp2-7; blockfs2jp2k will say how to get OpenJPEG" >&2
    else
        echo "setup: OpenJPEG >= 2.4 not found; install libopenjp2 for blockfs2jp2k" >&2
    fi
fi

echo "setup: ready in $VENV ($("$VENV/bin/python" -m mpi4py --mpi-library 2>/dev/null | head -n 1))"
