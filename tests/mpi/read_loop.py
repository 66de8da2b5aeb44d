"""Read a volume over and over while a writer commits: each read must be one generation.

argv: directory file, stop file, ready file (made after the first read). Prints the generations
seen (the first read's, 1, and at least the last read's, after the stop file appeared, the
writer's last, however little this process ran meanwhile); any exception fails the run.
"""
import os
import sys

import numpy as np

from blockfs_mpi import Directory

path, stop, ready = sys.argv[1:4]
seen, reads = set(), 0
while True:
    last = os.path.exists(stop)  # the writer is done: one more read, of its last generation
    directory = Directory.open(path)
    values = np.unique(directory[:])
    assert len(values) == 1 and values[0] == directory.metadata["generation"], \
        f"read {reads}: a mix of generations {values.tolist()} " \
        f"(metadata says {directory.metadata['generation']})"
    directory.close()
    seen.add(int(values[0]))
    reads += 1
    if reads == 1:
        open(ready, "w").close()  # the writer commits generation 2 on only after this
    if last:
        break
print(f"reads {reads} generations {sorted(seen)}")
