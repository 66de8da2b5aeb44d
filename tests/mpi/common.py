"""Helpers for scripts run under mpiexec: shared names from rank 0, a checked volume."""
import os
import sys

import numpy as np
from mpi4py import MPI

from blockfs_mpi import Directory
from blockfs_mpi.synthetic import SyntheticVolume

comm = MPI.COMM_WORLD


def shared_path(name):
    """A path in the folder given as argv[1], named by rank 0 and broadcast to all."""
    path = os.path.join(sys.argv[1], name) if comm.rank == 0 else None
    return comm.bcast(path, root=0)


def new_volume(path, shape=(90, 100, 150), block=32, **kwargs):
    """A created (not yet written) volume of the synthetic source's shape."""
    z, y, x = shape
    directory = Directory(x, y, z, np.uint16, path, x_block_size=block, y_block_size=block,
                          z_block_size=block, **kwargs)
    directory.create()
    return directory, SyntheticVolume(shape)


def write_blocks(directory, source, owns):
    """Write the blocks for which owns(block index) is true."""
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if owns(i):
            zs, ys, xs = directory.get_block_size(x, y, z)
            directory.write_block(source[z:z + zs, y:y + ys, x:x + xs], x, y, z)


def commit_every(path, step):
    """A new volume at path with blocks 0, step, 2 step, ... written (dealt over the ranks)
    and committed: the first job of a resume test."""
    directory, source = new_volume(path)
    write_blocks(directory, source,
                 lambda i: i % step == 0 and (i // step) % comm.size == comm.rank)
    directory.close()


def say(message):
    """One line of output per rank, for the test to check: written whole in one write (print
    writes the line and its end apart when unbuffered, and the launcher may interleave the
    ranks' output between any two writes)."""
    sys.stdout.write(f"rank {comm.rank}/{comm.size}: {message}\n")
    sys.stdout.flush()
