"""BlockReader keeps at most its bound of data files open (an LRU), counted in /proc/self/fd:
with more data files than that, every block still reads right, from threads and after a
fork, and a data file removed or replaced since is an error naming it, never other bytes."""
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from blockfs_mpi.errors import DataFileNotFoundError
from blockfs_mpi.reader import OPEN_DATA_FILES, BlockReader, data_file_limit
from volumes import big_volume

BLOCK = (2, 8, 8)
N_FILES, N_BLOCKS, BOUND = 24, 96, 4


@pytest.fixture
def many_files(tmp_path, monkeypatch):
    """A format 2 volume of N_BLOCKS small blocks dealt over N_FILES data files; readers keep
    BOUND of them open."""
    monkeypatch.setenv(OPEN_DATA_FILES, str(BOUND))
    path = tmp_path / "v.blockfs"
    big_volume(str(path), N_BLOCKS, n_files=N_FILES, block=BLOCK)
    return path


def expected(k):
    """Block k of big_volume: its noise plus k."""
    noise = np.random.default_rng(0).integers(0, 65536, BLOCK, np.uint16)
    return noise + np.uint16(k)


def data_files_open(path):
    """How many descriptors of this process point at the volume's data files."""
    prefix = f"{path}."
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(prefix)
        except OSError:  # the listing's own descriptor, closed meanwhile
            pass
    return count


def test_every_block_reads_within_the_bound(many_files):
    reader = BlockReader(many_files)
    assert data_files_open(many_files) == BOUND  # the first ones, opened eagerly
    most = 0
    for k in [*range(N_BLOCKS), *reversed(range(N_BLOCKS))]:
        np.testing.assert_array_equal(reader.read(k, BLOCK), expected(k))
        most = max(most, data_files_open(many_files))
    assert most == BOUND
    reader.close()
    assert data_files_open(many_files) == 0


def test_threads_read_every_block_within_the_bound(many_files):
    reader = BlockReader(many_files)
    files = reader._open.files  # /proc/self/fd, listed while other threads open and close, is
    with ThreadPoolExecutor(BOUND) as pool:  # no snapshot: the cache counts what it holds
        blocks = list(pool.map(lambda k: (reader.read(k, BLOCK), len(files)),
                               [k % N_BLOCKS for k in range(4 * N_BLOCKS)]))
    for k, (block, held) in enumerate(blocks):
        np.testing.assert_array_equal(block, expected(k % N_BLOCKS))
        assert held <= BOUND  # no more threads than the bound: never beyond it
    assert data_files_open(many_files) <= BOUND and files.opens > N_FILES
    reader.close()


def read_in_child(reader, path, queue):
    """Every block read in a forked child: (all right, most data files held)."""
    most, right = 0, True
    for k in range(N_BLOCKS):
        right &= bool(np.array_equal(reader.read(k, BLOCK), expected(k)))
        most = max(most, data_files_open(path))
    queue.put((right, most))


def test_a_forked_child_opens_its_own_within_the_bound(many_files):
    reader = BlockReader(many_files)
    reader.read(N_BLOCKS - 1, BLOCK)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=read_in_child, args=(reader, many_files, queue))
    child.start()
    right, most = queue.get(timeout=60)
    child.join(60)
    assert right and most <= 2 * BOUND  # its own and its parent's, inherited
    for k in range(N_BLOCKS):  # the child closed none of the parent's
        np.testing.assert_array_equal(reader.read(k, BLOCK), expected(k))
    reader.close()


def test_a_data_file_removed_after_it_was_closed_is_named(many_files):
    reader = BlockReader(many_files)
    first = reader.entry(0)[0]
    np.testing.assert_array_equal(reader.read(0, BLOCK), expected(0))
    for k in range(N_BLOCKS - 1, N_BLOCKS - 1 - BOUND, -1):  # other files push it out
        reader.read(k, BLOCK)
    path = reader.data_paths[first]
    os.unlink(path)  # as a replacement removes the old version's data files
    with pytest.raises(DataFileNotFoundError, match="was removed since this reader opened") as e:
        reader.read(0, BLOCK)
    assert e.value.path == path and path in str(e.value)


def test_a_data_file_replaced_after_it_was_closed_is_refused(many_files):
    reader = BlockReader(many_files)
    first = reader.entry(0)[0]
    reader.read(0, BLOCK)
    for k in range(N_BLOCKS - 1, N_BLOCKS - 1 - BOUND, -1):
        reader.read(k, BLOCK)
    path = reader.data_paths[first]
    other = f"{path}.new"
    with open(path, "rb") as old, open(other, "wb") as new:  # the same bytes, another file
        new.write(old.read())
    os.replace(other, path)
    with pytest.raises(DataFileNotFoundError, match="replaced by another file") as e:
        reader.read(0, BLOCK)
    assert path in str(e.value)


def test_the_bound_from_the_environment(monkeypatch):
    monkeypatch.setenv(OPEN_DATA_FILES, "7")
    assert data_file_limit() == 7
    monkeypatch.setenv(OPEN_DATA_FILES, "0")
    with pytest.raises(ValueError, match=OPEN_DATA_FILES):
        data_file_limit()
    monkeypatch.delenv(OPEN_DATA_FILES)
    assert data_file_limit() >= 8
