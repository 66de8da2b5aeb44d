"""The benchmark volume: the synthetic microscopy-like volume, generated once and memory-mapped.

Generation is never timed: the volume is written to a .npy in the cache
folder the first time and mapped afterwards.
"""
import os

import numpy as np

from blockfs_mpi.synthetic import SyntheticVolume

CACHE = os.environ.get("BLOCKFS_BENCH_CACHE", "/tmp/blockfs-bench")


def benchmark_volume(size=512):
    """A read-only memory map of the size^3 uint16 volume."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"synthetic-{size}.npy")
    if not os.path.exists(path):
        source = SyntheticVolume((size, size, size))
        out = np.lib.format.open_memmap(path + ".partial", "w+", np.uint16, (size,) * 3)
        for z in range(0, size, 64):
            out[z:z + 64] = source[z:z + 64]
        out.flush()
        del out
        os.replace(path + ".partial", path)
    return np.load(path, mmap_mode="r")


def block_origins(size, block=64):
    """Every block origin (x, y, z) of a size^3 volume, x fastest."""
    return [(x, y, z) for z in range(0, size, block) for y in range(0, size, block)
            for x in range(0, size, block)]
