"""Block 0 written by every rank: close() raises on every rank, naming the block and ranks.

Also: a block written twice by the same rank keeps its last version.
"""
import os

import numpy as np

from blockfs_mpi import Directory, DuplicateBlockError
from common import comm, new_volume, say, shared_path, write_blocks

path = shared_path("volume.blockfs")
directory, source = new_volume(path)
write_blocks(directory, source, lambda i: i % comm.size == comm.rank)
# Every rank writes block 1 once more; rank 1's is the only second writer.
ones = np.ones(directory.get_block_size(32, 0, 0), np.uint16)
if comm.rank == 1 % comm.size:
    directory.write_block(ones * 7, 32, 0, 0)
    directory.write_block(ones * 9, 32, 0, 0)
if comm.size > 1 and comm.rank == 0:
    directory.write_block(ones, 0, 0, 0)  # block 0 already belongs to rank 0: fine
if comm.size > 1 and comm.rank == comm.size - 1:
    directory.write_block(ones, 0, 0, 0)  # ... and now also to the last rank: an error

try:
    directory.close()
    raised = None
except DuplicateBlockError as e:
    raised = str(e)

if comm.size > 1:
    assert raised is not None, "no DuplicateBlockError"
    assert "block 0 at (x=0, y=0, z=0)" in raised, raised
    assert f"rank 0 and rank {comm.size - 1}" in raised, raised
    # Nothing committed or written is destroyed: the empty commit of create() stands,
    # and every rank's frames are still in its data file.
    assert not Directory.open(path)[:].any()
    assert os.path.getsize(f"{path}.{comm.rank}") > 0
else:
    assert raised is None, raised
    assert (Directory.open(path).read_block(32, 0, 0) == 9).all()
say(f"ok {raised}")
