#!/usr/bin/env bash
# Build (once) a virtual environment with a parallel h5py for blockfs2hdf's
# collective-write path: Debian's MPICH + parallel HDF5, mpi4py and h5py built
# from source against them (about 9 minutes on 2 cores, measured 2026-11-25).
# It must be a venv of its own: it cannot share a process with the MPICH wheel
# of .venv. Idempotent: an existing working build is reused in a second. Run it with
# /usr/bin/mpiexec.mpich -n N $BLOCKFS_PARALLEL_HDF5_VENV/bin/python -m blockfs_mpi.blockfs2hdf ...
#
#   scripts/setup-parallel-hdf5.sh   -> ~/.cache/blockfs_mpi/venv-parallel-hdf5
#                                       (override with BLOCKFS_PARALLEL_HDF5_VENV=path)
# It lives outside the checkout so that every clone on the machine reuses one build.
#
# Without root/apt-get (e.g. on a cluster) it says so and exits 0: the tests
# that need it are then skipped with that reason. See docs/export.md.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${BLOCKFS_PARALLEL_HDF5_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/blockfs_mpi/venv-parallel-hdf5}
mkdir -p "$(dirname "$V")"
PYTHON=${PYTHON:-python3}
log() { echo "setup-parallel-hdf5: $*" >&2; }

if [ -x "$V/bin/python" ] && "$V/bin/python" -c "import h5py, sys; sys.exit(not h5py.get_config().mpi)" 2>/dev/null; then
    "$V/bin/pip" install --quiet -e .  # picks up new dependencies; the MPI builds stay
    log "reusing $V"
    exit 0
fi
if [ ! -x /usr/bin/mpicc.mpich ] || ! pkg-config --exists hdf5-mpich 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        log "installing libhdf5-mpich-dev (Debian MPICH + parallel HDF5)"
        (apt-get install -y -qq --no-install-recommends libhdf5-mpich-dev pkg-config hdf5-tools >/dev/null 2>&1 \
         || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends libhdf5-mpich-dev pkg-config hdf5-tools >/dev/null 2>&1; }) \
         || { log "could not install libhdf5-mpich-dev; parallel HDF5 tests will be skipped"; exit 0; }
    else
        log "no root/apt-get to install libhdf5-mpich-dev; parallel HDF5 tests will be skipped"
        exit 0
    fi
fi
log "building mpi4py and h5py against Debian's MPICH in $V (several minutes, once)"
rm -rf "$V"
"$PYTHON" -m venv "$V"
"$V/bin/pip" install --quiet --upgrade pip
# --no-cache-dir: pip would otherwise reuse a cached serial build.
MPICC=/usr/bin/mpicc.mpich "$V/bin/pip" install --quiet --no-cache-dir --no-binary=mpi4py mpi4py
"$V/bin/pip" install --quiet 'setuptools>=77' 'Cython>=3,<4' numpy pkgconfig
CC=/usr/bin/mpicc.mpich HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich \
    "$V/bin/pip" install --quiet --no-cache-dir --no-binary=h5py --no-build-isolation h5py
# blockfs_mpi itself; mpi4py and h5py are already satisfied by the builds above.
"$V/bin/pip" install --quiet -e .
"$V/bin/python" -c "import h5py, sys; sys.exit(not h5py.get_config().mpi)"
log "ready in $V"
