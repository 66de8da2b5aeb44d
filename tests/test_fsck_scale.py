"""blockfs-fsck at scale, simulated: under mpiexec each rank reads its slice of the index, not
the whole of it, and the problems listed are the globally lowest blocks of each kind."""
import json
import os
import sys

import numpy as np
import pytest

from blockfs_mpi import format as fmt
from blockfs_mpi.atomic import write_atomically
from blockfs_mpi.fsck import fsck
from blockfs_mpi.index import read_index
from blockfs_mpi.reader import read_header
from conftest import HERE, microscopy_volume, mpiexec, run_checked, write_array

pytestmark = pytest.mark.mpi
RANKS = 4
FILES = 8  # data files: two a rank
LISTED = 10


def damaged_volume(folder):
    """A volume of 2048 blocks in 8 data files with many problems of two kinds across every
    file: every 7th block dropped from the index (uncommitted), every 5th of the others with a
    payload byte flipped (damaged). Returns (path, its index after the damage)."""
    path = str(folder / "volume.blockfs")
    write_array(path, microscopy_volume((64, 128, 128)), block=8, n_filenames=FILES)
    header = read_header(path)
    index = read_index(path, header)
    blocks = np.arange(len(index))
    for block in blocks[(blocks % 7 != 0) & (blocks % 5 == 0)]:
        with open(f"{path}.{index[block]['file']}", "r+b") as f:
            f.seek(int(index[block]["offset"]) + 3)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    index[blocks % 7 == 0] = fmt.empty_index(len(blocks[blocks % 7 == 0]))
    write_atomically(path, *fmt.directory2_parts(header, index))
    return path, index


@pytest.mark.parametrize("run", [None, 100])
def test_fsck_reads_its_slice_of_the_index_and_lists_the_lowest_blocks(tmp_path, run):
    """4 ranks; the index read in one run a slice, or in runs of 100 entries (6 rounds of
    routing, the last one short)."""
    path, index = damaged_volume(tmp_path)
    n_blocks = len(index)
    serial = []
    assert fsck(path, silent=True, out=serial.append, listed=LISTED) == 1
    command = [mpiexec(), "-n", str(RANKS), sys.executable, "-m", "mpi4py",
               str(HERE / "mpi" / "index_reads.py"), path, "fsck", path, "--silent",
               "--max-listed", str(LISTED)]
    result = run_checked(command, env={"INDEX_RUN": str(run)} if run else None)
    lines = result.stdout.splitlines()
    counts = {c["rank"]: c for c in map(json.loads, (x for x in lines if x.startswith('{"rank"')))}
    printed = [x for x in lines if not x.startswith('{"rank"')]

    # the same report as one process's, whose lists are the lowest blocks of each kind
    assert printed == serial, result.stdout
    listed = {kind: [int(x.split()[2]) for x in printed if x.startswith(f"{kind}: block ")]
              for kind in ("damaged", "uncommitted")}
    blocks = np.arange(n_blocks)
    assert listed["uncommitted"] == blocks[blocks % 7 == 0][:LISTED].tolist()
    assert listed["damaged"] == blocks[(blocks % 7 != 0) & (blocks % 5 == 0)][:LISTED].tolist()
    assert sorted(counts) == list(range(RANKS)) and {c["status"] for c in counts.values()} == {1}

    # each rank reads its slice once, and no entry again to verify its block
    share = -(-n_blocks // RANKS) * fmt.ENTRY.itemsize
    for rank, c in counts.items():
        assert c["run_bytes"] <= share and c["entry_bytes"] == 0, (rank, c, "its slice only")
    print(f"SCALE fsck: index {n_blocks * fmt.ENTRY.itemsize} bytes, {RANKS} ranks, read per "
          f"rank in runs " + ", ".join(str(counts[r]["run_bytes"]) for r in range(RANKS))
          + ", an entry at a time " + ", ".join(str(counts[r]["entry_bytes"])
                                                for r in range(RANKS)))
