"""--overwrite and Directory.create() over a volume never break a reader (issues 20 and 22.2):
the new version is written under generation names and committed atomically, and only then
are the old data files removed; a killed overwrite leaves the old version whole, and the
next --overwrite or --resume cleans up or completes the new one."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from blockfs_mpi import Directory
from blockfs_mpi.lock import lock_path
from blockfs_mpi.synthetic import SyntheticVolume
from conftest import kill_group, run_checked
from test_lock import write_volume
from test_serve import Served
from test_write import rank_pids, run_write, write_command

pytestmark = pytest.mark.timeout(600)

OLD, NEW = (128, 256, 256), (128, 256, 252)
# Frames reach the data files 256 KiB at a time (not 8 MiB): the 1 MiB a killed job waits
# for is then written early in the job, never only by the flush before its commit.
SMALL_APPENDS = dict(os.environ, BLOCKFS_BUFFER_SIZE=str(256 << 10))  # two sources: the new one differs in x


def files(folder):
    return sorted(os.listdir(folder))


def fsck(volume):
    return run_checked([sys.executable, "-m", "blockfs_mpi.fsck", str(volume), "--silent"],
                       env={"BLOCKFS_MPI": "0"})


def killed_overwrite(output):
    """Start a 2-rank --overwrite of output from the NEW source and SIGKILL its ranks once
    frames of the new generation reach its data files."""
    job = subprocess.Popen(write_command(2, "synthetic:" + "x".join(map(str, NEW)), output,
                                         "--overwrite", "--silent", "--level", "9"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True, env=SMALL_APPENDS)
    deadline = time.monotonic() + 60
    new = [f"{output}.g1.{r}" for r in range(2)]
    while sum(os.path.getsize(p) for p in new if os.path.exists(p)) < (1 << 20):
        assert job.poll() is None, f"the overwrite ended before it was killed: {job.communicate()}"
        assert time.monotonic() < deadline, "no frames of the new version in 60 s"
        time.sleep(0.05)
    ranks = rank_pids(output)
    for pid in ranks:
        os.kill(pid, signal.SIGSTOP)  # no rank runs on between the check and the kill
    for pid in ranks:
        os.kill(pid, signal.SIGKILL)
    kill_group(job.pid)
    job.communicate(timeout=60)


@pytest.fixture
def old_volume(tmp_path):
    """A committed 2-rank volume of the OLD source; (path, a reader opened on it)."""
    output = tmp_path / "v.blockfs"
    run_write(2, "synthetic:" + "x".join(map(str, OLD)), output, "--silent")
    assert files(tmp_path) == ["v.blockfs", "v.blockfs.0", "v.blockfs.1"]  # fresh: plain names
    return output, Directory.open(str(output))


def assert_voxels(directory, shape):
    volume = SyntheticVolume(shape)
    for z in range(0, shape[0], 64):
        np.testing.assert_array_equal(directory[z:z + 64], volume[z:z + 64])


@pytest.mark.mpi
def test_a_reader_opened_before_an_overwrite_reads_the_old_version_after_it(old_volume):
    output, reader = old_volume
    run_write(2, "synthetic:" + "x".join(map(str, NEW)), output, "--overwrite", "--silent")
    assert files(output.parent) == ["v.blockfs", "v.blockfs.g1.0", "v.blockfs.g1.1"]
    assert_voxels(reader, OLD)  # through the descriptors it opened
    assert_voxels(Directory.open(str(output)), NEW)
    assert fsck(output).returncode == 0
    run_write(2, "synthetic:" + "x".join(map(str, OLD)), output, "--overwrite", "--silent")
    assert files(output.parent) == ["v.blockfs", "v.blockfs.g2.0", "v.blockfs.g2.1"]


@pytest.mark.mpi
@pytest.mark.parametrize("then", ["--overwrite", "--resume"])
def test_a_killed_overwrite_leaves_the_old_version_whole(old_volume, then):
    output, reader = old_volume
    killed_overwrite(output)
    assert_voxels(reader, OLD)
    assert_voxels(Directory.open(str(output)), OLD)
    checked = fsck(output)  # clean, and it has found the new version's frames
    warning = [line for line in checked.stdout.splitlines() if "new version in progress" in line]
    assert warning and " 0 intact frames" not in warning[0] and "--resume" in warning[0], \
        checked.stdout
    result = run_write(2, "synthetic:" + "x".join(map(str, NEW)), output, then, "--silent",
                       timeout=300)
    summary = [line for line in result.stderr.splitlines() if "blocks written" in line][-1]
    if then == "--resume":  # the new version continued, not the old one
        assert "resuming the new version" in result.stderr
        assert " 0 already present" not in summary, summary
    else:
        assert " 0 already present" in summary, summary
    assert files(output.parent) == ["v.blockfs", "v.blockfs.g1.0", "v.blockfs.g1.1"]
    assert_voxels(Directory.open(str(output)), NEW)
    assert "new version in progress" not in fsck(output).stdout


@pytest.mark.mpi
def test_blockfs_serve_keeps_serving_the_old_version_during_an_overwrite(old_volume, tmp_path):
    output, _ = old_volume
    served = Served(tmp_path, tmp_path / "serve.log", "--quiet")
    chunk = "/v.blockfs/1_1_1/64-128_64-128_64-128"
    try:
        status, _, before = served.get(chunk)
        assert status == 200
        killed_overwrite(output)
        assert served.get(chunk)[2] == before
        run_write(2, "synthetic:" + "x".join(map(str, NEW)), output, "--resume", "--silent",
                  timeout=300)
        status, _, after = served.get(chunk)
        assert status == 200
        expected = SyntheticVolume(NEW)[64:128, 64:128, 64:128]
        voxels = np.frombuffer(after, expected.dtype.newbyteorder("<")).reshape(expected.shape)
        np.testing.assert_array_equal(voxels, expected)
    finally:
        served.stop()


KILLED_CREATE = """
import os, sys
import numpy as np
from blockfs_mpi import Directory
directory = Directory(60, 50, 40, np.uint16, sys.argv[1], n_filenames=2, x_block_size=16,
                      y_block_size=16, z_block_size=16)
directory.create()
directory[:, :16, :] = 9
os.kill(os.getpid(), 9)
"""


def test_create_over_a_volume_killed_before_close_loses_nothing(tmp_path):
    """Directory(...).create() replaces a volume (the original API), but the old version
    stays committed and readable until the new one is; a later create() cleans up."""
    volume = tmp_path / "v.blockfs"
    write_volume(volume, 7)
    reader = Directory.open(str(volume))
    killed = subprocess.run([sys.executable, "-c", KILLED_CREATE, str(volume)],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, BLOCKFS_MPI="0"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "v.blockfs.g1" in files(tmp_path)  # the new version in progress
    for directory in (reader, Directory.open(str(volume))):
        assert (directory[:, :, :] == 7).all()
    assert fsck(volume).returncode == 0
    write_volume(volume, 8)  # the stale lock of the killed process is taken over
    assert files(tmp_path) == ["v.blockfs", "v.blockfs.g1.0", "v.blockfs.g1.1"]
    assert (Directory.open(str(volume))[:, :, :] == 8).all() and (reader[:, :, :] == 7).all()
    assert not os.path.exists(lock_path(volume))
