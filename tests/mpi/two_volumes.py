"""Two volumes written at once by the two halves of the job (a communicator split, as a job
writing two channels would): each Directory's collective calls and its commit stay within
its own ranks, its data files are numbered by rank within them.

argv: folder. Needs an even number of ranks.
"""
import numpy as np

from blockfs_mpi import Directory
from common import comm, say, shared_path

paths = [shared_path(f"channel{c}.blockfs") for c in (0, 1)]
channel = comm.rank % 2
group = comm.Split(color=channel, key=comm.rank)
with Directory(96, 64, 32, np.uint16, paths[channel], comm=group, x_block_size=32,
               y_block_size=32, z_block_size=32) as directory:
    directory.create()
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if i % group.size == group.rank:
            directory.write_block(np.full((32, 32, 32), 100 * channel + i, np.uint16), x, y, z)
group.Free()
comm.Barrier()
for c, path in enumerate(paths):
    volume = Directory.open(path)
    assert len(volume.block_filenames) == comm.size // 2, volume.block_filenames
    for i, (x, y, z) in enumerate(volume.geometry.block_origins()):
        assert (volume.read_block(x, y, z) == 100 * c + i).all(), (path, i)
say("ok")
