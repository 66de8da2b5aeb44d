"""One timed blockfs_mpi write of the benchmark volume, run under mpiexec by write_read.py.

Rank r writes every size-th block from r on; the time runs from a barrier
to the end of the collective commit (fsync and rename included). Before the
barrier, as in the compression ceiling's untimed set-up, the codec library is
imported and the output of an earlier run is removed, so that the write creates
a new volume instead of truncating old files.

    mpi_write.py SIZE LEVEL OUTPUT [COMPRESSION [SHUFFLE]]

LEVEL "default" (with no COMPRESSION) leaves the codec to Directory's defaults.
"""
import glob
import os
import sys
import time

import numpy as np
from mpi4py import MPI

from blockfs_mpi import Directory
from blockfs_mpi.compression import numcodecs_blosc
from volume import benchmark_volume, block_origins

comm = MPI.COMM_WORLD
size, level, output = int(sys.argv[1]), sys.argv[2], sys.argv[3]
codec = {} if level == "default" else {"compression_level": int(level)}
codec.update(zip(("compression", "shuffle"), sys.argv[4:6]))
volume = benchmark_volume(size)
numcodecs_blosc()
if comm.rank == 0:
    for path in glob.glob(output) + glob.glob(output + ".*"):
        os.remove(path)
comm.Barrier()
started = time.perf_counter()
directory = Directory(size, size, size, np.uint16, output, **codec)
directory.create()
for x, y, z in block_origins(size)[comm.rank::comm.size]:
    directory.write_block(volume[z:z + 64, y:y + 64, x:x + 64], x, y, z)
directory.close()
comm.Barrier()
if comm.rank == 0:
    print(f"seconds {time.perf_counter() - started:.4f}")
