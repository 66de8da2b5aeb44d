"""Every rank writes its share (round-robin, all-on-one, or uneven), then all verify."""
import sys

import numpy as np

from blockfs_mpi import Directory
from common import comm, new_volume, say, shared_path, write_blocks

pattern = sys.argv[2]
path = shared_path("volume.blockfs")
directory, source = new_volume(path)
owns = {
    "round-robin": lambda i: i % comm.size == comm.rank,
    "rank0-only": lambda i: comm.rank == 0,
    "uneven": lambda i: (i * i) % (comm.size + 1) == comm.rank,  # last rank may get nothing
    "reversed": lambda i: (i // 7) % comm.size == comm.size - 1 - comm.rank,
}[pattern]
write_blocks(directory, source, owns)
directory.close()

expected = source[:, :, :]
if pattern == "uneven":  # blocks whose owner would be rank comm.size were never written
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if (i * i) % (comm.size + 1) == comm.size:
            zs, ys, xs = directory.get_block_size(x, y, z)
            expected[z:z + zs, y:y + ys, x:x + xs] = 0
opened = Directory.open(path)
assert opened.block_filenames == [f"{path}.{r}" for r in range(comm.size)]
np.testing.assert_array_equal(opened[:], expected)
say("ok")
