"""The distributed commit: every rank builds and writes only its slice of the index.

argv: folder, scenario. On any number of ranks, one scenario per job:
  tiny        a volume with fewer blocks than ranks (ranks with empty slices) commits and
              reads back;
  rows        rows for blocks all over the volume from every rank: the committed index holds
              each block's newest frame, its checksum matches, and no rank's allocations
              during the commit come near what holding every row and the whole index takes;
  duplicates  blocks written by two ranks in every slice: one DuplicateBlockError on every
              rank that counts all of them and names the first ten in block order.
"""
import re
import sys
import tracemalloc

import numpy as np

from blockfs_mpi import Directory, DuplicateBlockError
from blockfs_mpi import format as fmt
from blockfs_mpi.commit import collective_commit
from blockfs_mpi.geometry import Geometry
from blockfs_mpi.index import read_index
from blockfs_mpi.reader import read_header
from blockfs_mpi.writer import WRITTEN
from common import comm, say, shared_path

rank, size = comm.rank, comm.size


def tiny():
    """Fewer blocks than ranks."""
    path = shared_path("tiny.blockfs")
    with Directory(48, 16, 16, np.uint16, path, comm=comm, x_block_size=16, y_block_size=16,
                   z_block_size=16) as directory:
        directory.create()
        for i in range(rank, 3, size):
            directory.write_block(np.full((16, 16, 16), i + 1, np.uint16), 16 * i, 0, 0)
    assert [int(Directory.open(path)[0, 0, 16 * i]) for i in range(3)] == [1, 2, 3]


def rows_everywhere():
    """Rank r writes blocks r, r + size, ..., each twice (the second frame is the newest), so
    every rank sends rows to every slice."""
    n_blocks = 200_000
    header = fmt.Header(Geometry(n_blocks * 16, 16, 16, 16, 16, 16), np.dtype(np.uint16),
                        [f"rows.blockfs.{r}" for r in range(size)])
    path = shared_path("rows.blockfs")
    mine = np.arange(rank, n_blocks, size, dtype=np.uint64)
    rows = np.zeros(2 * len(mine), WRITTEN)
    rows["block"] = np.concatenate([mine, mine])
    rows["offset"] = np.arange(len(rows)) * 64 + fmt.FRAME_SIZE
    rows["size"], rows["file"] = 32, rank
    rows["sequence"] = np.arange(len(rows))
    tracemalloc.start()
    collective_commit(comm, path, header, rows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    committed = read_header(path)
    index = read_index(path, committed)
    assert fmt.crc32c(index.tobytes()) == committed.index_crc32c, "index checksum mismatch"
    assert (index["file"] == np.arange(n_blocks) % size).all()
    newest = rows[len(mine):]
    mine_in_index = index[mine.astype(np.int64)]
    assert (mine_in_index["offset"] == newest["offset"]).all(), "an older frame won"
    assert (mine_in_index["size"] == 32).all()
    # ~80 B per row a rank holds at commit (its rows in owner order, the rows it receives,
    # sort permutations, its slice of the index); gathering the whole job's rows to rank 0 cost
    # rank 0 that much for every row of every rank.
    share = 100 * len(rows)  # every rank has as many rows: this is 100 B per row / ranks
    assert peak < share + 2 ** 20, f"rank {rank}: {peak} bytes traced at commit, expected < {share}"


def duplicates():
    """Duplicates in every slice but the last: the last rank also writes 6 blocks at the start
    of each other rank's slice (the ones that are its own anyway are no duplicates)."""
    path = shared_path("duplicates.blockfs")
    header = fmt.Header(Geometry(1000 * 16, 16, 16, 16, 16, 16), np.dtype(np.uint16),
                        [f"duplicates.blockfs.{r}" for r in range(size)])
    starts = [1000 * r // size for r in range(size - 1)]
    again = [start + k for start in starts for k in range(6)]
    mine = list(range(rank, 1000, size)) + (again if rank == size - 1 else [])
    rows = np.zeros(len(mine), WRITTEN)
    rows["block"], rows["file"], rows["size"] = mine, rank, 32
    rows["sequence"] = np.arange(len(rows))
    try:
        collective_commit(comm, path, header, rows)
        raised = None
    except DuplicateBlockError as e:
        raised = str(e)
    expected = sorted(block for block in again if block % size != size - 1)
    if expected:
        assert f": {len(expected)} block(s) written by more than one writer" in raised, raised
        assert [int(b) for b in re.findall(r"block (\d+) at", raised)] == expected[:10], raised
        assert len(expected) <= 10 or raised.endswith(f" and {len(expected) - 10} more"), raised
    else:
        assert raised is None, raised


{"tiny": tiny, "rows": rows_everywhere, "duplicates": duplicates}[sys.argv[2]]()
say("ok")
