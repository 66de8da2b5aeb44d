#!/usr/bin/env bash
# What the test suite uses beyond scripts/setup.sh. Into the environment: the
# real Neuroglancer and OME-Zarr clients (TensorStore, cloud-volume, neuroglancer
# + selenium, ome-zarr-py: the neuroglancer-test extra, in one pip call so that
# pip resolves cloud-volume's boto3 and ome-zarr's s3fs together). System
# packages, installed with apt-get when running as root on Debian and missing:
#   slurmctld slurmd slurm-client munge  a local SLURM cluster for tests/test_slurm.py
#   (package) shellcheck                 linting the sbatch templates
#   hdf5-tools                           h5dump / h5ls to read exported HDF5 back
#   chromium chromium-driver             Neuroglancer in a headless browser
# Without root or apt-get it says what is missing; the tests that need it skip.
# Then it makes the parallel-HDF5 environment (scripts/setup-parallel-hdf5.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh
VENV=${BLOCKFS_VENV:-.venv}
stamp="$VENV/.blockfs-test-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
    "$VENV/bin/pip" install --quiet -e ".[neuroglancer-test]"
    rm -f "$VENV"/.blockfs-test-*
    touch "$stamp"
fi
packages=()
command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || packages+=(slurmctld)
command -v slurmd >/dev/null || [ -x /usr/sbin/slurmd ] || packages+=(slurmd)
command -v sbatch >/dev/null || packages+=(slurm-client)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || packages+=(munge)
command -v shellcheck >/dev/null || packages+=(shellcheck)
command -v h5dump >/dev/null || packages+=(hdf5-tools)
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
if [ ${#packages[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "setup-test-system: installing ${packages[*]}"
        quietly setup-test-system apt_install "${packages[@]}" \
            || echo "setup-test-system: could not install ${packages[*]}; their tests will skip" >&2
    else
        echo "setup-test-system: missing ${packages[*]} (needs root and apt-get); their tests will skip" >&2
    fi
fi
scripts/setup-parallel-hdf5.sh
