"""The original blockfs README example runs on blockfs_mpi, under every start method."""
import sys

import numpy as np
import pytest

from blockfs_mpi import Directory
from conftest import ROOT, run_checked

# The original README's example, verbatim but for the import line. The test
# shrinks 1024 to 256 so that it writes 32 MB instead of 2 GB.
ORIGINAL = '''
import numpy as np
from blockfs_mpi import Directory
import multiprocessing # not neccessary, demo its use though
import itertools

directory = Directory(1024, 1024, 1024, np.uint16, "volume.blockfs",
                      x_block_size=64, y_block_size=64, z_block_size=64)
directory.create()
directory.start_writer_processes() # need this for multithreading setup

def do_something_awesome(x, y, z):
    block = np.random.randint(0, 65535, (64, 64, 64), np.uint16)
    directory.write_block(block, x, y, z)

with multiprocessing.Pool() as pool:
    pool.starmap(do_something_awesome, itertools.product(range(0, 1024, 64),
                                                         range(0, 1024, 64),
                                                         range(0, 1024, 64)))
directory.close()

block_128_64_0 = Directory.open("volume.blockfs").read_block(128, 64, 0)
'''


def check_volume(path, size):
    directory = Directory.open(path)
    assert directory.shape == (size, size, size)
    for x, y, z in directory.geometry.block_origins():
        block = directory.read_block(x, y, z)
        assert block.std() > 10000, f"block {(x, y, z)} was not written"


def test_original_example_verbatim_with_fork(tmp_path):
    script = tmp_path / "example.py"
    script.write_text("import multiprocessing\nmultiprocessing.set_start_method('fork')\n"
                      + ORIGINAL.replace("1024", "256"))
    run_checked([sys.executable, str(script)], timeout=120, cwd=tmp_path)
    check_volume(tmp_path / "volume.blockfs", 256)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_seed_example_under_every_start_method(tmp_path, method):
    path = tmp_path / "volume.blockfs"
    result = run_checked([sys.executable, str(ROOT / "scripts" / "seed_example.py"), str(path),
                          "--size", "256", "--start-method", method], timeout=120)
    assert "block (128, 64, 0) has shape (64, 64, 64)" in result.stdout
    check_volume(path, 256)


def test_directory_without_writers_refuses_in_workers(tmp_path):
    """A worker that got the Directory before start_writer_processes() must not write
    into writers of its own that nobody would ever commit."""
    import multiprocessing
    directory = Directory(64, 64, 64, np.uint8, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        with pytest.raises(Exception, match="start_writer_processes"):
            pool.apply(directory.write_block, (np.zeros((64, 64, 64), np.uint8), 0, 0, 0))
    directory.close()
