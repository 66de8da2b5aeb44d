"""A writer on a small filesystem: commit half a volume, then resume and write noise until
the disk is full. close() must raise a clear WriterError on every rank.

argv: folder (on a small tmpfs).
"""
import numpy as np

from blockfs_mpi import Directory, WriterError
from common import comm, new_volume, say, shared_path, write_blocks

path = shared_path("volume.blockfs")
directory, source = new_volume(path, shape=(64, 64, 128))
write_blocks(directory, source, lambda i: i % 2 == 0 and (i // 2) % comm.size == comm.rank)
directory.close()

directory = Directory.resume(path)
noise = np.random.default_rng(comm.rank).integers(0, 65535, (64, 64, 128), np.uint16)
for _ in range(10):  # 10 rounds x 2 blocks x 64 KiB per rank: far more than the disk holds
    write_blocks(directory, noise, lambda i: i % comm.size == comm.rank)
try:
    directory.close()
    say("committed")
except WriterError as e:
    say(f"error: {e}")
