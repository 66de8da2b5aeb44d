"""What a pyramid costs blockfs-write: the time of `--levels 5` over the time of level 1 alone.

    python benchmarks/pyramid_one_pass.py [--size 512] [--ranks 2] [--rounds 3]
                                          [--level 1] [--max-load 1.5]

Both runs convert the same source on the same ranks: `synthetic:SxSxS` (made
on the fly by every rank) and S uncompressed TIFF planes of S^2 uint16 (made
once, untimed, as write_tiff.py does). Each round times level 1 alone and
--levels 5 (in turn first), by wall clock of the whole mpiexec job (Python start-up
included, as a user waits for it); before every run the outputs are deleted and the
disk synced, untimed, so that each run creates new files and none writes back
another's pages; the package is compiled to bytecode first, as an installed copy is.
Prints the median and range of each, the ratio of the medians (issue 19's target:
<= 1.2) and the median and range of the ratios of each round's pair.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import compile_package, machine_line, wait_for_quiet  # noqa: E402
from volume import CACHE  # noqa: E402
from write_tiff import tiff_planes  # noqa: E402


def timed_write(source, output, ranks, level, extra=()):
    """Seconds of one `mpiexec -n ranks blockfs-write source output` job, output new."""
    for path in [output] + [os.path.join(CACHE, name) for name in os.listdir(CACHE)
                            if name.startswith(os.path.basename(output) + ".")]:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.sync()  # no run pays for writing back the pages of the one before
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    started = time.perf_counter()
    job = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "blockfs_mpi.write",
                          source, output, "--silent", "--level", str(level), *extra],
                         capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if job.returncode:
        sys.exit(f"blockfs-write {source} {output} failed:\n{job.stderr}")
    return seconds


def spread(times):
    """'median s (min-max)' of some timings."""
    return f"{statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--level", type=int, default=1, help="compression level")
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    sources = {f"synthetic {args.size}^3": f"synthetic:{args.size}x{args.size}x{args.size}",
               f"{args.size} TIFF planes": tiff_planes(args.size)}
    compile_package()
    print(f"# {machine_line()}")
    print(f"# load {wait_for_quiet(args.max_load):.2f}; {args.ranks} ranks, zstd-{args.level}, "
          f"64^3 blocks, {args.rounds} alternating rounds")
    print("| source | level 1 alone | --levels 5 | ratio of medians | per-round ratios |")
    print("|---|---|---|---|---|")
    for name, source in sources.items():
        alone, pyramid = [], []
        runs = [(alone, "one-level.blockfs", []), (pyramid, "pyramid", ["--levels", "5"])]
        for round_number in range(args.rounds):
            for times, output, extra in runs if round_number % 2 == 0 else runs[::-1]:
                times.append(timed_write(source, os.path.join(CACHE, output), args.ranks,
                                         args.level, extra))
        ratio = statistics.median(pyramid) / statistics.median(alone)
        rounds = [p / a for p, a in zip(pyramid, alone)]  # each pair ran back to back
        print(f"| {name} | {spread(alone)} | {spread(pyramid)} | {ratio:.2f} | "
              f"{statistics.median(rounds):.2f} ({min(rounds):.2f}-{max(rounds):.2f}) |",
              flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
