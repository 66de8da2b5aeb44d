"""blockfs-write on a volume that is half background: do both ranks stay busy to the end?

    python benchmarks/write_balance.py [--size 512] [--level 5]

Cleared tissue rarely fills a microscope's field: around it lies background,
whose blocks compress several times faster. Here the lower half (in z) of
the benchmark volume sits under an upper half of flat background (made once,
untimed, and memory-mapped from a .npy). Prints, in one run, the compression
ceiling of its blocks in 1 and 2 processes (every other block to each, so
both get equal parts of tissue and background) and the MB/s blockfs-write
reports for the same file on 1 and 2 ranks, with their ratio.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from volume import CACHE, benchmark_volume  # noqa: E402
from write_read import compression_ceiling, size_and_level  # noqa: E402
from write_tiff import blockfs_write, heading  # noqa: E402

BACKGROUND = 100  # a camera's dark level


def half_background_path(size):
    """The .npy of the half-background volume, made on first use."""
    path = os.path.join(CACHE, f"half-background-{size}.npy")
    if not os.path.exists(path):
        tissue = benchmark_volume(size)
        out = np.lib.format.open_memmap(path + ".partial", "w+", np.uint16, (size,) * 3)
        out[:size // 2] = BACKGROUND
        out[size // 2:] = tissue[:size - size // 2]
        out.flush()
        del out
        os.replace(path + ".partial", path)
    return path


def half_background(size):
    return np.load(half_background_path(size), mmap_mode="r")


def main():
    args = size_and_level(__doc__)
    source = half_background_path(args.size)
    output = os.path.join(CACHE, "balance-bench.blockfs")
    print(heading(f"{args.size}^3 uint16, upper half background", args.level))
    for n in (1, 2):
        ceiling = compression_ceiling(args.size, args.level, n, half_background)
        writing = blockfs_write(source, n, args.level, output)
        print(f"{n} rank(s): compression ceiling {ceiling:6.1f} MB/s, blockfs-write "
              f"{writing:6.1f} MB/s = {writing / ceiling:.2f} x ceiling")


if __name__ == "__main__":
    main()
