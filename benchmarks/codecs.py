"""The codec table: Blosc compressors, levels and shuffles on the benchmark volume.

    python benchmarks/codecs.py [--size 512] [--max-load 1.5]

For each of zstd 1/3/5, lz4 and lz4hc (level 5) with no shuffle, byte shuffle
and bit shuffle, on the same synthetic uint16 volume (benchmarks/volume.py):
  - write MB/s: blockfs_mpi writing the whole volume under mpiexec -n 2
    (one Blosc thread per rank, fsync and commit included, timed inside the
    job after a barrier; the same helper as benchmarks/write_read.py);
  - read MB/s: Directory.open(...)[:, :, :] in one process (warm page cache,
    frame checksums verified), and decode MB/s: the payloads already in
    memory, decoded in one process (the codec alone);
  - ratio: uncompressed bytes / bytes of the data files (frames included).
The default codec of new volumes is chosen from this table (benchmarks/README.md).
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, versions, wait_for_quiet  # noqa: E402
from peers import footprint, fresh, megabytes  # noqa: E402
from volume import CACHE, benchmark_volume, block_origins  # noqa: E402
from write_read import blockfs_write  # noqa: E402

CODECS = [("zstd", 1), ("zstd", 3), ("zstd", 5), ("lz4", 5), ("lz4hc", 5)]
SHUFFLES = ["none", "byte", "bit"]


def read_rates(size, path):
    """(full read MB/s through Directory, decode-only MB/s), one process."""
    from blockfs_mpi import Directory
    from blockfs_mpi.compression import single_threaded
    single_threaded()
    directory = Directory.open(path)
    started = time.perf_counter()
    everything = directory[:, :, :]
    read = megabytes(size) / (time.perf_counter() - started)
    if not np.array_equal(everything, benchmark_volume(size)):
        raise AssertionError(f"{path} reads back wrong")
    reader, geometry = directory.reader, directory.geometry
    payloads = [reader.payload(geometry.block_number(x, y, z)) for x, y, z in block_origins(size)]
    out = np.empty((64, 64, 64), np.uint16)
    started = time.perf_counter()
    for payload in payloads:
        reader.codec.decode(payload, out=out)
    return read, megabytes(size) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--out", default=os.path.join(CACHE, "codecs"))
    args = parser.parse_args()
    benchmark_volume(args.size)
    wait_for_quiet(args.max_load)
    print(f"# {machine_line()}")
    print(f"# {versions(('numpy', 'numcodecs', 'mpi4py'))}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"\n## Codecs, {args.size}^3 uint16 ({megabytes(args.size):.0f} MB), 64^3 blocks\n")
    print("| codec | shuffle | write MB/s (2 ranks) | read MB/s (1 proc) | decode MB/s (1 proc) "
          "| ratio | load |")
    print("|---|---|---|---|---|---|---|")
    for compression, level in CODECS:
        for shuffle in SHUFFLES:
            folder = fresh(args.out)
            path = os.path.join(folder, "volume.blockfs")
            write = blockfs_write(args.size, level, 2, path, codec=(compression, shuffle))
            read, decode = read_rates(args.size, path)
            on_disk, _ = footprint(folder)
            data = on_disk - os.path.getsize(path)
            print(f"| {compression}-{level} | {shuffle} | {write:.0f} | {read:.0f} | {decode:.0f} | "
                  f"{megabytes(args.size) * 1e6 / data:.3f} | {os.getloadavg()[0]:.2f} |",
                  flush=True)
    shutil.rmtree(args.out, ignore_errors=True)
    print(f"\n# done, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
