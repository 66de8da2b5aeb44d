"""blockfs-fsck's check with and without --quick (no decompression) on the benchmark volume.

    python benchmarks/fsck_quick.py [--size 512] [--levels 1,5] [--rounds 5] [--max-load 1.5]

For each zstd level the benchmark volume is written once (untimed, shared with
full_read.py), then checked in one process, alternating a full check and a
quick one; medians of the rounds. The page cache is warm: this is the CPU
cost of verifying, the part --quick removes, not the disk.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from full_read import written_volume  # noqa: E402
from machine import machine_line, wait_for_quiet  # noqa: E402


def timed_check(path, quick):
    """Seconds of one check of the whole volume; fails loudly if the volume is not clean."""
    from blockfs_mpi.check import check
    started = time.perf_counter()
    report = check(path, quick=quick)
    seconds = time.perf_counter() - started
    assert report.n_problems == 0, report.lines()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--levels", default="1,5")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    print(f"# {machine_line()}")
    print("| zstd level | blocks | full check s | quick check s | full / quick | load |")
    print("|---|---|---|---|---|---|")
    for level in map(int, args.levels.split(",")):
        path = written_volume(args.size, level)
        load = wait_for_quiet(args.max_load)
        timed_check(path, False)  # warm the page cache
        full, quick = [], []
        for _ in range(args.rounds):
            full.append(timed_check(path, False))
            quick.append(timed_check(path, True))
        f, q = statistics.median(full), statistics.median(quick)
        print(f"| {level} | {(args.size // 64) ** 3} | {f:.3f} | {q:.3f} | {f / q:.1f} | "
              f"{load:.2f} |")


if __name__ == "__main__":
    main()
