#!/usr/bin/env bash
# Make (once) a virtual environment with a parallel h5py for blockfs2hdf's
# collective-write path, from Debian's own build: python3-h5py-mpi (h5py on
# parallel HDF5) and python3-mpi4py, both on Debian's Open MPI, seen through
# --system-site-packages (about 30 s; nothing is compiled). It must be a venv
# of its own: it cannot share a process with the MPICH wheel of .venv. Run it with
#   /usr/bin/mpiexec.openmpi -n N $V/bin/python -m blockfs_mpi.blockfs2hdf ...
# (as root, Open MPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
#
#   scripts/setup-parallel-hdf5.sh   -> ~/.cache/blockfs_mpi/venv-h5py-mpi
#                                       (override with BLOCKFS_PARALLEL_HDF5_VENV=path)
# It lives outside the checkout so that every clone on the machine reuses it.
# To remake it, the script deletes only that cache folder or an environment it
# made itself (marked inside), never another folder the variable names.
# Installing Open MPI can take over the system's mpiexec/mpicc alternatives;
# whatever they pointed to before is put back.
#
# Without root/apt-get (e.g. on a cluster) it says so and exits 0: the tests
# that need it are then skipped with that reason. docs/export.md shows how to
# build a parallel h5py against a site's MPI instead.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh
CACHE_V=${XDG_CACHE_HOME:-$HOME/.cache}/blockfs_mpi/venv-h5py-mpi
V=${BLOCKFS_PARALLEL_HDF5_VENV:-$CACHE_V}
MARK=.blockfs-parallel-hdf5  # written into every environment this script makes
log() { echo "setup-parallel-hdf5: $*" >&2; }

parallel_h5py() {  # Debian's h5py picks its MPI build when H5PY_ALWAYS_USE_MPI is set
    H5PY_ALWAYS_USE_MPI=1 "$V/bin/python" -c "import h5py, sys; sys.exit(not h5py.get_config().mpi)" 2>/dev/null
}

chosen() {  # what a Debian alternative (mpirun, mpi) points to now; nothing if it does not exist
    { update-alternatives --query "$1" 2>/dev/null || true; } | sed -n 's/^Value: //p'
}

install_blockfs() {
    "$V/bin/pip" install --quiet -e .
    # pip pulls in the PyPI h5py (Debian registers its build under another name);
    # removing the venv's copy leaves Debian's parallel one in charge.
    quietly setup-parallel-hdf5 "$V/bin/pip" uninstall --yes h5py || true
}

remove_old_venv() {  # before remaking $V: delete it only if it is the cache folder or ours
    [ -e "$V" ] || [ -L "$V" ] || return 0
    if [ "$(realpath -m -- "$V")" = "$(realpath -m -- "$CACHE_V")" ] \
        || { [ -f "$V/$MARK" ] && [ -f "$V/pyvenv.cfg" ]; }; then
        rm -rf -- "$V"
    else
        log "refusing to delete $V to remake it: it is neither $CACHE_V nor an environment" \
            "this script made ($MARK inside); remove it yourself or set" \
            "BLOCKFS_PARALLEL_HDF5_VENV to a new folder"
        exit 1
    fi
}

if [ -x "$V/bin/python" ] && parallel_h5py; then
    install_blockfs  # picks up new dependencies
    log "reusing $V"
    exit 0
fi
if [ ! -x /usr/bin/mpiexec.openmpi ] || ! /usr/bin/python3 -c "import ensurepip, h5py._debian_h5py_mpi" 2>/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        log "installing python3-h5py-mpi (Debian's parallel h5py on Open MPI)"
        mpirun_before=$(chosen mpirun) mpi_before=$(chosen mpi)
        quietly setup-parallel-hdf5 apt_install python3-h5py-mpi python3-venv openmpi-bin \
            || { log "could not install python3-h5py-mpi; parallel HDF5 tests will be skipped"; exit 0; }
        [ -z "$mpirun_before" ] || update-alternatives --quiet --set mpirun "$mpirun_before"
        [ -z "$mpi_before" ] || update-alternatives --quiet --set mpi "$mpi_before"
    else
        log "no root/apt-get to install python3-h5py-mpi; parallel HDF5 tests will be skipped"
        exit 0
    fi
fi
remove_old_venv
log "making $V on Debian's python3 with its parallel h5py"
mkdir -p "$(dirname "$V")"
/usr/bin/python3 -m venv --system-site-packages "$V"
touch "$V/$MARK"
install_blockfs
parallel_h5py || { log "h5py in $V is not parallel"; exit 1; }
log "ready in $V"
