"""blockfs-mv's verification by data file: a rank opens only the data files of its share of
the copy, and a move of more data files than `ulimit -n` allows succeeds and is verified."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi.relocate import make_folder, make_plan, share, verify_frames
from conftest import mpiexec, run_checked
from volumes import big_volume, voxels

pytestmark = pytest.mark.mpi
HERE = Path(__file__).parent
BLOCK = (2, 8, 8)


def copied(source, dest):
    """The plan of a copy of source into dest, its data files copied by hand."""
    plan = make_plan(source, dest, force=False)
    make_folder(plan)
    for a, b in zip(plan.sources, plan.targets):
        shutil.copyfile(a, b)
    return plan


def test_each_rank_opens_only_its_share_of_the_data_files(tmp_path):
    source = tmp_path / "v.blockfs"
    big_volume(str(source), 80, n_files=20, block=BLOCK)  # blocks dealt round-robin to files
    plan = copied(source, tmp_path / "copy")
    verify_frames(plan, None)  # one process: every file
    n = 3
    result = run_checked([mpiexec(), "-n", str(n), sys.executable,
                          str(HERE / "mpi" / "verify_opens.py"), str(source), str(tmp_path / "copy")])
    reports = sorted((json.loads(line) for line in result.stdout.splitlines()
                      if line.startswith("{")), key=lambda report: report["rank"])
    assert len(reports) == n
    pieces = [share(plan.sizes, n, rank) for rank in range(n)]
    for report in reports:  # each file once, by the rank whose share it is in
        assert report["files"] == sorted({number for number, _, _ in pieces[report["rank"]]})
        assert report["opens"] == len(report["files"]) <= 20 // n + 1
    assert sorted(f for report in reports for f in report["files"]) == list(range(20))


@pytest.fixture
def other_filesystem(tmp_path):
    """A fresh tmpfs folder: a move there copies and verifies."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)])


def test_mv_of_more_data_files_than_ulimit_n(tmp_path, other_filesystem):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    big_volume(str(source), 200, n_files=100, block=BLOCK)
    data = voxels(source)
    limit = 64  # below the 100 data files; mpiexec and two Python ranks start within it
    command = (f"ulimit -n {limit} && exec {mpiexec()} -n 2 {sys.executable} -m blockfs_mpi.mv "
               f"{source} {other_filesystem / 'v'}")
    run_checked(["bash", "-c", command])
    moved = other_filesystem / "v" / "v.blockfs"
    np.testing.assert_array_equal(voxels(moved), data)
    assert os.listdir(source.parent) == []
