#!/usr/bin/env bash
# The main job on its embedded default: set up (scripts/setup.sh), then write
# a synthetic 512^3 uint16 microscopy-like volume of 64^3 blocks with 2 MPI
# ranks, read it back, verify every voxel and print the throughput.
#
#   scripts/run.sh                       # volume in /tmp/blockfs-demo
#   BLOCKFS_OUT=/scratch/me scripts/run.sh
#   RANKS=4 SOURCE='planes/*.tif' scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV=${BLOCKFS_VENV:-.venv}
OUT=${BLOCKFS_OUT:-/tmp/blockfs-demo}
mkdir -p "$OUT"
exec "$VENV/bin/mpiexec" -n "${RANKS:-2}" "$VENV/bin/python" -m blockfs_mpi.write \
    "${SOURCE:-synthetic:512x512x512}" "$OUT/volume.blockfs" --overwrite --verify "$@"
