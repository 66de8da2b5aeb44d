"""A commit whose new directory file does not fit: the old one and the frames stay.

argv: folder (on a 2 MiB tmpfs). The volume's index takes 1.2 MB, so create() fits but the
new directory file written beside it at close() does not. close() must raise a WriterError
on every rank, leave the committed (empty) volume readable and no temporary file behind.
"""
import os

import numpy as np

from blockfs_mpi import Directory, WriterError
from common import comm, say, shared_path

path = shared_path("volume.blockfs")
directory = Directory(16 * 750, 16 * 100, 16, np.uint16, path, x_block_size=16,
                      y_block_size=16, z_block_size=16)  # 75,000 blocks: 1.2 MB of index
directory.create()
directory.write_block(np.full((16, 16, 16), comm.rank + 1, np.uint16), 16 * comm.rank, 0, 0)
try:
    directory.close()
    say("committed")
except WriterError as e:
    say(f"error: {e}")
comm.Barrier()
assert not Directory.open(path)[:, :16, :16 * comm.size].any(), "a block was committed"
left = [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".commit")]
assert not left, f"temporary files left: {left}"
