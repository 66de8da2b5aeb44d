"""Run blockfs-write on this rank, then print the rank's peak resident set size."""
import resource
import sys

from mpi4py import MPI

from blockfs_mpi.write import main

try:
    main(sys.argv[1:])
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(f"rank {MPI.COMM_WORLD.rank}: peak RSS {peak} KiB\n")  # one write: no interleaving
    sys.stdout.flush()
