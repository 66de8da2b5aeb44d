"""Read a volume over and over while a writer commits: each read must be one generation.

argv: directory file, stop file, ready file (made after the first read). Prints the generations seen; any exception fails the run.
"""
import os
import sys

import numpy as np

from blockfs_mpi import Directory

path, stop, ready = sys.argv[1:4]
seen, reads = set(), 0
while not os.path.exists(stop):
    directory = Directory.open(path)
    values = np.unique(directory[:])
    assert len(values) == 1 and values[0] == directory.metadata["generation"], \
        f"read {reads}: a mix of generations {values.tolist()} " \
        f"(metadata says {directory.metadata['generation']})"
    directory.close()
    seen.add(int(values[0]))
    reads += 1
    if reads == 1:
        open(ready, "w").close()
print(f"reads {reads} generations {sorted(seen)}")
