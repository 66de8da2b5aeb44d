"""Commit generation after generation: generation g fills every block with the value g.

argv: folder, number of generations, number of readers. Readers running meanwhile must
see one generation per read of the volume, never a mix. Writes `started` once the first
commit is done, then waits for ready.<i> of every reader before going on.
"""
import os
import sys
import time

import numpy as np

from blockfs_mpi import Directory
from common import comm, say, shared_path

folder, generations, readers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = shared_path("volume.blockfs")
for g in range(1, generations + 1):
    if g == 1:
        directory = Directory(96, 64, 64, np.uint16, path, x_block_size=32, y_block_size=32,
                              z_block_size=32, metadata={"generation": 0})
        directory.create()
    else:
        directory = Directory.resume(path)
    directory.header.metadata["generation"] = g  # the metadata's length changes too
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if i % comm.size == comm.rank:
            directory.write_block(np.full(directory.get_block_size(x, y, z), g, np.uint16), x, y, z)
    directory.close()
    if g == 1 and comm.rank == 0:
        open(os.path.join(folder, "started"), "w").close()
        while not all(os.path.exists(os.path.join(folder, f"ready.{i}")) for i in range(readers)):
            time.sleep(0.05)
    comm.Barrier()
say("ok")
