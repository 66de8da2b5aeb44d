"""Whole-volume reads through Directory[...]: one reading thread against the default.

    python benchmarks/full_read.py [--size 512] [--level 5] [--rounds 5] [--max-load 1.5]

Writes the benchmark volume once (untimed) at the given zstd level, then reads
all of it with `directory[:]` in one process, alternating read_threads = 1 and
the default (one thread per core this process may use), and prints medians.
The page cache is warm: this measures reading and decoding, not the disk.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, wait_for_quiet  # noqa: E402
from volume import CACHE, benchmark_volume, block_origins  # noqa: E402


def written_volume(size, level):
    """The benchmark volume as a blockfs volume at zstd level, written once."""
    from blockfs_mpi import Directory
    path = os.path.join(CACHE, f"full-read-{size}-zstd{level}.blockfs")
    if not os.path.exists(path):
        volume = benchmark_volume(size)
        with Directory(size, size, size, np.uint16, path, compression_level=level,
                       n_filenames=2) as directory:
            directory.create()
            for x, y, z in block_origins(size):
                directory.write_block(volume[z:z + 64, y:y + 64, x:x + 64], x, y, z)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--level", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    from blockfs_mpi import Directory
    directory = Directory.open(written_volume(args.size, args.level))
    megabytes = args.size ** 3 * 2 / 1e6
    print(f"# {machine_line()}")
    print(f"# load {wait_for_quiet(args.max_load):.2f}; {args.size}^3 uint16, zstd-{args.level}")
    seconds = {"1": [], "default": []}
    for _ in range(args.rounds):
        for threads in seconds:
            directory.read_threads = 1 if threads == "1" else None
            started = time.perf_counter()
            directory[:]
            seconds[threads].append(time.perf_counter() - started)
    for threads, times in seconds.items():
        rounds = " ".join(f"{megabytes / t:.0f}" for t in times)
        print(f"read_threads {threads}: {megabytes / statistics.median(times):.0f} MB/s "
              f"(rounds: {rounds})")


if __name__ == "__main__":
    main()
