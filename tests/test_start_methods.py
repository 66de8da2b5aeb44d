"""Lab scripts on the original API under fork, spawn and forkserver (Python 3.14's default).

Spawn and forkserver children re-run the main module, so a script that makes its
Directory at module level makes it again in every worker. The scripts here are
written as a user would and run as real programs: the module-level pattern
writes every block, wrong patterns end at once with a message saying what to
do, and nothing committed earlier is lost.
"""
import re
import sys
import time

import numpy as np
import pytest

from blockfs_mpi import BlockfsError, Directory
from conftest import run_checked

METHODS = ["fork", "spawn", "forkserver"]
FAILS_WITHIN = 30  # seconds: a wrong pattern ends at its first write, not by a timeout

COMMON = '''
import itertools
import multiprocessing
import os
import sys

import numpy as np
from blockfs_mpi import Directory

EDGE = 32
ORIGINS = list(itertools.product(range(0, 3 * EDGE, EDGE), repeat=3))


def volume(path):
    return Directory(3 * EDGE, 3 * EDGE, 3 * EDGE, np.uint16, path, n_filenames=2,
                     x_block_size=EDGE, y_block_size=EDGE, z_block_size=EDGE)


def block_at(x, y, z):
    return np.arange(EDGE ** 3, dtype=np.uint16).reshape(EDGE, EDGE, EDGE) + x + 3 * y + 5 * z
'''
helpers = {}
exec(COMMON, helpers)  # the test checks the blocks the scripts write with the scripts' own code

MODULE_LEVEL = COMMON + '''
with open("runs.txt", "a") as runs:  # every process that runs this module says so
    print(os.getpid(), file=runs)

directory = volume("v.blockfs")
directory.create()
directory.start_writer_processes()  # need this for multithreading setup


def work(x, y, z):
    directory.write_block(block_at(x, y, z), x, y, z)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    with multiprocessing.Pool(2) as pool:
        pool.starmap(work, ORIGINS)
    directory.close()
'''

CREATED_UNDER_MAIN = COMMON + '''
directory = volume("v.blockfs")


def work(x, y, z):
    directory.write_block(block_at(x, y, z), x, y, z)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    directory.create()
    directory.start_writer_processes()
    with multiprocessing.Pool(2) as pool:
        pool.starmap(work, ORIGINS)
    directory.close()
'''

# A first pool writes and commits kept.blockfs the right way; a second pool then writes
# through {wrong}, made at module level the wrong way.
TWO_POOLS = COMMON + '''
kept = volume("kept.blockfs")
kept.create()
kept.start_writer_processes()
{setup}


def keep(x, y, z):
    kept.write_block(block_at(x, y, z), x, y, z)


def work(x, y, z):
    {wrong}.write_block(block_at(x, y, z), x, y, z)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    with multiprocessing.Pool(2) as pool:
        pool.starmap(keep, ORIGINS)
    kept.close()
    with multiprocessing.Pool(2) as pool:
        pool.starmap(work, ORIGINS)
    {wrong}.close()
'''

# Its writers are started only after the pool's workers got (or re-made) the Directory.
STARTED_TOO_LATE = TWO_POOLS.format(wrong="late", setup='''
late = volume("late.blockfs")
late.create()''')

# Every process names the volume anew, so a re-made Directory is another volume.
NAMED_PER_PROCESS = TWO_POOLS.format(wrong="run", setup='''
run = volume(f"run-{os.getpid()}.blockfs")
run.create()
run.start_writer_processes()''')

WHAT_TO_DO = ('start_writer_processes() under `if __name__ == "__main__":` before making the '
              'pool, and pass the Directory to the workers as an argument')


def run_script(tmp_path, text, method, expect_failure=False):
    script = tmp_path / "lab.py"
    script.write_text(text)
    return run_checked([sys.executable, str(script), method], timeout=90, cwd=tmp_path,
                       expect_failure=expect_failure)


def assert_every_block_written(path):
    directory = Directory.open(path)
    for x, y, z in helpers["ORIGINS"]:
        np.testing.assert_array_equal(directory.read_block(x, y, z), helpers["block_at"](x, y, z),
                                      err_msg=f"{path}: block at {(x, y, z)}")


@pytest.mark.parametrize("method", METHODS)
def test_module_level_directory_writes_every_block(tmp_path, method):
    """Directory, create() and start_writer_processes() at module level, workers using the
    module's `directory`: spawn and forkserver children re-make it and write through the
    parent's writers; the writers themselves never run the script."""
    run_script(tmp_path, MODULE_LEVEL, method)
    assert_every_block_written(tmp_path / "v.blockfs")
    runs = (tmp_path / "runs.txt").read_text().split()
    # the script itself and at most one re-run per pool worker (or by the forkserver, in
    # Pythons whose forkserver preloads the main module), never one by a writer process
    assert len(runs) <= (1 if method == "fork" else 3), runs


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_module_level_directory_created_under_main(tmp_path, method):
    """Only the Directory at module level, create() and the writers under __main__: the
    workers' re-made Directory (never created there) writes through the parent's writers."""
    run_script(tmp_path, CREATED_UNDER_MAIN, method)
    assert_every_block_written(tmp_path / "v.blockfs")


def check_failed_run(tmp_path, script, method, volume):
    """Run a wrong pattern: it ends quickly with the message naming the volume and what to
    do, and the volume committed by the script's first pool is intact."""
    start = time.monotonic()
    result = run_script(tmp_path, script, method, expect_failure=True)
    elapsed = time.monotonic() - start
    assert elapsed < FAILS_WITHIN, f"a wrong pattern took {elapsed:.0f} s to fail"
    assert re.search(f"WriterError: {re.escape(str(tmp_path))}/{volume}", result.stderr), \
        result.stderr
    assert WHAT_TO_DO in result.stderr, result.stderr
    assert_every_block_written(tmp_path / "kept.blockfs")
    return result


@pytest.mark.parametrize("method", METHODS)
def test_writers_started_after_the_pool_fail_at_once(tmp_path, method):
    result = check_failed_run(tmp_path, STARTED_TOO_LATE, method, "late.blockfs")
    reason = ("got the Directory before start_writer_processes() was called" if method == "fork"
              else "found no writer processes of its parent for this volume")
    assert reason in result.stderr, result.stderr
    assert not Directory.open(tmp_path / "late.blockfs")[:].any()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_volume_named_anew_in_each_process_fails_at_once(tmp_path, method):
    result = check_failed_run(tmp_path, NAMED_PER_PROCESS, method, r"run-\d+\.blockfs")
    assert "writer processes found for: " in result.stderr, result.stderr
    made = sorted(path.name for path in tmp_path.glob("run-*.blockfs"))
    assert len(made) == 1, f"re-made Directories created files: {made}"  # the parent's only


def test_create_refuses_a_volume_whose_writers_run(tmp_path):
    """create() never truncates data files that running writer processes append to."""
    path = tmp_path / "v.blockfs"
    first = Directory(64, 64, 64, np.uint16, path, n_filenames=1)
    first.create()
    block = helpers["block_at"](0, 0, 0)
    first.write_block(np.tile(block, (2, 2, 2)), 0, 0, 0)
    second = Directory(64, 64, 64, np.uint16, path, n_filenames=1)
    # The volume's lock refuses first (the same process is changing it); the running
    # writers' own check stands behind it.
    with pytest.raises(BlockfsError, match="is being changed by this process already"):
        second.create()
    first.close()
    np.testing.assert_array_equal(Directory.open(path).read_block(0, 0, 0),
                                  np.tile(block, (2, 2, 2)))
    second.create()  # once they stopped, the volume can be made anew
    second.close()
