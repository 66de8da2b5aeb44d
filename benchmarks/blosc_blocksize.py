"""Blosc's internal block size: encode and decode speed and bytes of every 64^3 block.

    python benchmarks/blosc_blocksize.py [--size 512] [--cname zstd] [--level 5] [--rounds 5]
                                         [--max-load 1.5]

Same codec as blockfs_mpi writes (Blosc, byte shuffle, one thread), with
Blosc's own choice of block size (0) against fixed ones. One process, the
blocks copied into memory first; rounds interleave the block sizes so that
each sees the same moments of this drifting VM, and medians are printed.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, versions, wait_for_quiet  # noqa: E402
from volume import benchmark_volume, block_origins  # noqa: E402

BLOCK_SIZES = (0, 32768, 65536, 131072, 262144, 524288)


def one_round(codec, blocks):
    """(encode MB/s, decode MB/s, compressed bytes) of every block once."""
    started = time.perf_counter()
    payloads = [codec.encode(block) for block in blocks]
    encoded = time.perf_counter()
    for payload in payloads:
        codec.decode(payload)
    decoded = time.perf_counter()
    nbytes = sum(block.nbytes for block in blocks) / 1e6
    return nbytes / (encoded - started), nbytes / (decoded - encoded), sum(map(len, payloads))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--cname", default="zstd", help="Blosc compressor")
    parser.add_argument("--level", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    from blockfs_mpi.compression import numcodecs_blosc, single_threaded
    single_threaded()
    Blosc = numcodecs_blosc().Blosc
    volume = benchmark_volume(args.size)
    blocks = [np.ascontiguousarray(volume[z:z + 64, y:y + 64, x:x + 64])
              for x, y, z in block_origins(args.size)]
    print(f"# {machine_line()}\n# {versions(('numpy', 'numcodecs'))}")
    print(f"# load {wait_for_quiet(args.max_load):.2f}; {args.size}^3 uint16, {args.cname}-{args.level} byte shuffle")
    figures = {size: [] for size in BLOCK_SIZES}
    for _ in range(args.rounds):
        for size in BLOCK_SIZES:
            codec = Blosc(args.cname, args.level, Blosc.SHUFFLE, blocksize=size)
            figures[size].append(one_round(codec, blocks))
    print("| Blosc block size | encode MB/s | decode MB/s | bytes |\n|---|---|---|---|")
    for size, rounds in figures.items():
        encode, decode = (statistics.median(r[i] for r in rounds) for i in (0, 1))
        print(f"| {size or 'auto (0)'} | {encode:.0f} | {decode:.0f} | {rounds[0][2]} |")


if __name__ == "__main__":
    main()
