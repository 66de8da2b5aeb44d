"""--overwrite and Directory.create() replace only a blockfs volume and its own data files:
anything else given as the output is refused, naming what it is, before anything is touched."""
import hashlib
import os
import sys

import h5py
import numpy as np
import pytest
import tifffile

from blockfs_mpi import Directory
from blockfs_mpi.identify import ReplaceRefusedError, describe
from conftest import microscopy_volume, mpiexec, run_checked, write_array

VOLUME = microscopy_volume((20, 30, 40), seed=5)


def fingerprint(folder):
    """{name: sha1 of the content} of every file under folder: what must stay as it was."""
    return {os.path.relpath(os.path.join(root, name), folder):
            hashlib.sha1(open(os.path.join(root, name), "rb").read()).hexdigest()
            for root, _, files in os.walk(folder) for name in files}


def write_command(ranks, *args):
    program = [sys.executable, "-m", "blockfs_mpi.write", *map(str, args)]
    return program if ranks == 0 else [mpiexec(), "-n", str(ranks), *program]


@pytest.fixture
def user_files(tmp_path):
    """A lab's folder: a 3-D TIFF, an HDF5 file, a folder of planes and a blockfs volume."""
    tifffile.imwrite(tmp_path / "stack.tif", VOLUME)
    with h5py.File(tmp_path / "raw.h5", "w") as f:
        f["data"] = VOLUME
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim.0").write_bytes(b"not a data file of any volume")
    write_array(str(tmp_path / "old.blockfs"), VOLUME)
    return tmp_path


@pytest.mark.parametrize("ranks", [0, 2])
@pytest.mark.parametrize("output, what", [("stack.tif", "a TIFF file"),
                                          ("raw.h5", "an HDF5 file"),
                                          ("victim", "a folder")])
def test_overwrite_refuses_what_is_not_a_volume(user_files, ranks, output, what):
    before = fingerprint(user_files)
    result = run_checked(write_command(ranks, user_files / "stack.tif", user_files / output,
                                       "--overwrite", "--silent"),
                         expect_failure=True, cwd=user_files)
    assert f"{user_files / output} is {what}, not a blockfs volume" in result.stderr
    assert result.stderr.count("not a blockfs volume") == 1, result.stderr  # once, not per rank
    assert fingerprint(user_files) == before  # nothing created, truncated or replaced


def test_a_foreign_file_in_a_data_file_place_is_refused(user_files):
    tifffile.imwrite(user_files / "new.blockfs.1", VOLUME[0])
    before = fingerprint(user_files)
    directory = Directory(40, 30, 20, np.uint16, str(user_files / "new.blockfs"), n_filenames=2)
    with pytest.raises(ReplaceRefusedError, match=r"new\.blockfs\.1 is a TIFF file: it would "
                                                  r"become data file 1 of"):
        directory.create()
    assert fingerprint(user_files) == before


def test_create_still_replaces_a_volume(user_files, caplog):
    old = str(user_files / "old.blockfs")
    with caplog.at_level("INFO", logger="blockfs_mpi"):
        write_array(old, VOLUME[::-1].copy())
    assert "replacing the blockfs volume there" in caplog.text
    assert np.array_equal(Directory.open(old)[:, :, :], VOLUME[::-1])


def test_describe_names_what_a_path_is(user_files):
    os.makedirs(user_files / "pyr" / "1_1_1")
    write_array(str(user_files / "pyr" / "1_1_1" / "precomputed.blockfs"), VOLUME)
    assert describe(str(user_files / "stack.tif")) == "a TIFF file"
    assert describe(str(user_files / "old.blockfs")) == "a blockfs volume (format 2)"
    assert describe(str(user_files / "old.blockfs.0")) == \
        f"data file 0 of the volume {user_files / 'old.blockfs'}"
    assert describe(str(user_files / "pyr")).startswith("a pyramid folder (its level 1 is ")
    assert describe(str(user_files / "victim.0")) == "a file that is not a blockfs volume"
