"""Rank 1 fails inside `with Directory(...)`: the whole job ends with its message, no hang."""
import numpy as np

from blockfs_mpi import Directory
from common import comm, shared_path

path = shared_path("volume.blockfs")
with Directory(64, 64, 64, np.uint16, path) as directory:
    directory.create()
    if comm.rank == 1:
        raise RuntimeError("the stitching on this rank failed")
    comm.Barrier()  # the other ranks would wait here forever without the abort
