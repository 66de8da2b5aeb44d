"""Commit a new version of the 40^3 uint16 volume argv[1]/argv[2] in 16^3 blocks.

argv[3]: "replace" writes a new volume over it (every block 2), "resume" adds the blocks
it lacks (2 each). Blocks are dealt round-robin over the ranks.
"""
import sys

import numpy as np

from blockfs_mpi import Directory
from common import comm, say, shared_path

path = shared_path(sys.argv[2])
replace = sys.argv[3] == "replace"
if replace:
    directory = Directory(40, 40, 40, np.uint16, path, x_block_size=16, y_block_size=16,
                          z_block_size=16)
    directory.create()
else:
    directory = Directory.resume(path)
for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
    if i % comm.size == comm.rank and (replace or not directory.has_block(x, y, z)):
        directory.write_block(np.full(directory.get_block_size(x, y, z), 2, np.uint16), x, y, z)
directory.close()
say("committed")
