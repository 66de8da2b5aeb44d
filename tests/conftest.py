"""Shared test helpers: real mpiexec jobs with a time limit, the format-1 fixture."""
import contextlib
import glob
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import Directory

HERE = Path(__file__).parent
ROOT = HERE.parent
FORMAT1_FIXTURE = HERE / "data" / "format1"  # written by the original blockfs (its README)
MPI_TIMEOUT = 120  # seconds; a hung collective fails the test instead of stalling CI


HYDRA_LEFTOVERS = "/tmp/hydra_hwloc_xmlfile_*"  # MPICH's launcher leaves one per aborted job


@pytest.fixture(scope="session", autouse=True)
def no_launcher_leftovers():
    """Remove the topology files that Hydra left in /tmp for the suite's aborted jobs (those
    that appeared during the run and are ours; a job of the suite is never running then)."""
    before = set(glob.glob(HYDRA_LEFTOVERS))
    yield
    for path in set(glob.glob(HYDRA_LEFTOVERS)) - before:
        with contextlib.suppress(OSError):
            if os.stat(path).st_uid == os.getuid():
                os.unlink(path)


def mpiexec():
    """The mpiexec of this environment (the MPICH wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def run_checked(command, timeout=MPI_TIMEOUT, env=None, expect_failure=False, cwd=None):
    """Run a command in its own process group; kill the group when it overruns."""
    environment = dict(os.environ, **(env or {}))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=environment, cwd=cwd)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{command} hung for more than {timeout} s\n{out}\n{err}")
    if expect_failure:
        assert process.returncode != 0, f"{command} should have failed\n{out}\n{err}"
    else:
        assert process.returncode == 0, f"{command} failed ({process.returncode})\n{out}\n{err}"
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def kill_group(pgid, timeout=30):
    """SIGKILL the process group pgid (a job started with start_new_session=True) and wait
    until none of its processes runs any more (each gone or a zombie): a killed rank is not
    gone the moment the signal is sent, and a lock it held is not stale until it is."""
    os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(state != "Z" for state in group_states(pgid)):
        assert time.monotonic() < deadline, f"processes of group {pgid} outlived SIGKILL"
        time.sleep(0.02)


def group_states(pgid):
    """The states (R, S, Z...) of the processes in process group pgid, from /proc."""
    states = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                states.append(fields[0])
    return states


def run_mpi(n, script, *args, timeout=MPI_TIMEOUT, expect_failure=False, env=None,
            abort_on_exception=True):
    """Run tests/mpi/<script> on n ranks under a real mpiexec.

    By default through `python -m mpi4py`, so an uncaught exception on any rank
    aborts the whole job; abort_on_exception=False runs plain `python`, to
    show that blockfs_mpi itself never leaves ranks hanging.
    """
    runner = ["-m", "mpi4py"] if abort_on_exception else []
    command = [mpiexec(), "-n", str(n), sys.executable, *runner,
               str(HERE / "mpi" / script), *map(str, args)]
    return run_checked(command, timeout, env, expect_failure)


@pytest.fixture
def glymur():
    """The glymur module (JPEG 2000), which scripts/setup.sh installs: a test fails loudly,
    never skips, when it is missing."""
    from blockfs_mpi.export_jp2k import require_glymur
    try:
        return require_glymur()
    except RuntimeError as e:
        pytest.fail(str(e))


def import_peer(name, python=(3, 10)):
    """pytest.importorskip(name), except under CI (CI=true, as CI services set it) on a Python
    the peer installs on (python and later), where the test environment scripts/test.sh sets
    up is meant to be complete: there a missing peer fails the test instead of skipping."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") \
            or sys.version_info < python:
        return pytest.importorskip(name)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        pytest.fail(f"{name} is missing with CI set (scripts/test.sh installs it): {e}")


@pytest.fixture
def format1_copy(tmp_path):
    """A writable copy of the real format-1 volume written by the original blockfs."""
    target = tmp_path / "format1"
    shutil.copytree(FORMAT1_FIXTURE, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


WIDE_PLANE = (1024, 2048)  # 4 MiB of uint16: 64 planes would take 256 MiB a rank


def peak_rss_of_write(folder, output, *options):
    """Write 64 TIFF planes of WIDE_PLANE (made in folder/planes) to output with a 2-rank
    blockfs-write under tests/mpi/peak_rss.py; (each rank's peak RSS in KiB, the plane)."""
    import tifffile
    plane = microscopy_volume((1, *WIDE_PLANE))[0]
    (folder / "planes").mkdir()
    for z in range(64):
        tifffile.imwrite(folder / "planes" / f"p{z:03d}.tif", plane)
    result = run_checked([mpiexec(), "-n", "2", sys.executable, str(HERE / "mpi" / "peak_rss.py"),
                          str(folder / "planes" / "p*.tif"), str(output), *options],
                         timeout=300)
    peaks = [int(kib) for kib in re.findall(r"peak RSS (\d+) KiB", result.stdout)]
    assert len(peaks) == 2, result.stdout
    return peaks, plane


def write_array(path, voxels, block=32, n_filenames=2, **options):
    """Write a (z, y, x) array as a new blockfs volume at path (no MPI); returns path."""
    z, y, x = voxels.shape
    with Directory(x, y, z, voxels.dtype, path, n_filenames=n_filenames, x_block_size=block,
                   y_block_size=block, z_block_size=block, **options) as directory:
        directory.create()
        directory[:, :, :] = voxels
    return path


def microscopy_volume(shape, seed=0, dtype=np.uint16):
    """A small smooth-plus-noise volume that compresses like real data."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    smooth = 200 + 100 * np.sin(x / 17) * np.cos(y / 23) + z
    return (smooth + rng.poisson(20, shape)).astype(dtype)
