"""blockfs-write when one rank runs slower than the others: a straggler node.

    python benchmarks/write_straggler.py [--size 512] [--level 5] [--rounds 8]
                                         [--baseline PACKAGE_PARENT]

On a shared cluster one node of a job is often slower (a noisy neighbour, a
hot CPU, a busy storage link). Here 2 ranks are bound to cores 0 and 1
(`mpiexec -bind-to core`) and a busy loop is pinned to core 1 for the whole
run, so rank 1 gets about half a core. Each round writes the benchmark
volume (.npy source) with this checkout's blockfs_mpi and, with --baseline
(a folder holding another copy of the blockfs_mpi package, put first on
PYTHONPATH), with that one right after; prints the wall time of each whole
`mpiexec` job, medians, and the median of the paired ratios.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, wait_for_quiet  # noqa: E402
from volume import CACHE, benchmark_volume  # noqa: E402

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
ROOT = os.path.dirname(HERE)


def write_job(source, level, output, package_parent):
    """(wall seconds, rank 1's share of the bytes written) of one 2-rank blockfs-write job,
    one rank per core."""
    env = dict(os.environ, PYTHONPATH=package_parent)
    started = time.monotonic()
    subprocess.run([MPIEXEC, "-n", "2", "-bind-to", "core", sys.executable, "-m",
                    "blockfs_mpi.write", source, output, "--overwrite", "--silent", "--level",
                    str(level)], capture_output=True, text=True, check=True, env=env,
                   cwd=CACHE)  # not this checkout: `python -m` looks in its folder first
    seconds = time.monotonic() - started
    sizes = [os.path.getsize(f"{output}.{rank}") for rank in (0, 1)]
    return seconds, sizes[1] / sum(sizes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--level", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--baseline", help="folder holding the blockfs_mpi to compare with")
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    benchmark_volume(args.size)
    source = os.path.join(CACHE, f"synthetic-{args.size}.npy")
    output = os.path.join(CACHE, "straggler-bench.blockfs")
    versions = {"this checkout": ROOT}
    if args.baseline:
        versions["baseline"] = os.path.abspath(args.baseline)
    print(f"# {machine_line()}")
    print(f"# {args.size}^3 uint16 .npy, zstd-{args.level}, 2 ranks bound to cores 0 and 1, "
          f"a busy loop on core 1; load {wait_for_quiet(args.max_load):.2f}")
    seconds = {name: [] for name in versions}
    shares = {name: [] for name in versions}
    hog = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        for _ in range(args.rounds):
            for name, parent in versions.items():
                wall, share = write_job(source, args.level, output, parent)
                seconds[name].append(wall)
                shares[name].append(share)
    finally:
        hog.kill()
        hog.wait()
    print("| blockfs_mpi | job wall s, median | min-max | rank 1's share of the bytes, median |")
    print("|---|---|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} "
              f"| {statistics.median(shares[name]):.2f} |")
    if args.baseline:
        ratios = [a / b for a, b in zip(seconds["this checkout"], seconds["baseline"])]
        print(f"this checkout / baseline, median of {len(ratios)} paired rounds: "
              f"{statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
