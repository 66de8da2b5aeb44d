"""blockfs-cp on 1 and 2 ranks against `cp` of the same files (target: >= 0.9 x cp on one rank).

Generates (untimed) a volume of incompressible 32 MB blocks, then times each
way of copying it into a fresh folder, in rounds that run every way once, so
that a ratio compares runs made close together on this noisy machine. blockfs-cp fsyncs
what it copies unless --no-fsync, so each is paired with its like: `cp`
alone with `blockfs-cp --no-fsync`, `cp` followed by `sync` of the copied
files with plain blockfs-cp. The page cache is warm for every run alike.

Usage:
  benchmarks/copy_volume.py [--gb <n>] [--folder <path>] [--repeats <n>]

Options:
  --gb <n>         Size of the volume in GB [default: 2].
  --folder <path>  Where to put the volume and the copies [default: /tmp/blockfs-bench-copy].
  --repeats <n>    Rounds; medians are reported [default: 5].
"""
import glob
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from docopt import docopt

from blockfs_mpi import Directory

BLOCK = (64, 512, 512)  # (z, y, x) uint16: 32 MiB


def make_volume(path, gb):
    """A format 2 volume of about gb GB that Blosc stores as is (lz4 level 0, noise)."""
    n_blocks = max(2, round(gb * 1e9 / (np.prod(BLOCK) * 2)))
    zb, yb, xb = BLOCK
    noise = np.random.default_rng(0).integers(0, 65536, BLOCK, np.uint16)
    with Directory(xb, yb, zb * n_blocks, np.uint16, path, n_filenames=2, x_block_size=xb,
                   y_block_size=yb, z_block_size=zb, compression="lz4",
                   compression_level=0, shuffle="none") as directory:
        directory.create()
        for k in range(n_blocks):
            directory.write_block(noise + np.uint16(k), 0, 0, k * zb)


def timed(command, dest):
    """Seconds to run command into a fresh, empty dest folder (after an untimed sync, so that
    no run pays for the write-back of the one before)."""
    shutil.rmtree(dest, ignore_errors=True)
    os.mkdir(dest)
    os.sync()
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    args = docopt(__doc__)
    folder = args["--folder"]
    os.makedirs(folder, exist_ok=True)
    source = os.path.join(folder, "src", "v.blockfs")
    os.makedirs(os.path.dirname(source), exist_ok=True)
    if not os.path.exists(source):
        make_volume(source, float(args["--gb"]))
    files = " ".join([source] + sorted(glob.glob(source + ".*")))
    size = sum(os.path.getsize(f) for f in files.split())
    dest = os.path.join(folder, "dest")
    copies = os.path.join(dest, "*")
    bin_dir = os.path.dirname(sys.executable)
    ways = {
        "cp": f"cp {files} {dest}",
        "cp + sync": f"cp {files} {dest} && sync {copies}",
        "blockfs-cp, 1 rank (no mpiexec)": f"{bin_dir}/blockfs-cp {source} {dest}",
        "blockfs-cp, mpiexec -n 1": f"{bin_dir}/mpiexec -n 1 {bin_dir}/blockfs-cp {source} {dest}",
        "blockfs-cp, mpiexec -n 2": f"{bin_dir}/mpiexec -n 2 {bin_dir}/blockfs-cp {source} {dest}",
        "blockfs-cp --no-fsync, 1 rank (no mpiexec)":
            f"{bin_dir}/blockfs-cp --no-fsync {source} {dest}",
        "blockfs-cp --no-fsync, mpiexec -n 2":
            f"{bin_dir}/mpiexec -n 2 {bin_dir}/blockfs-cp --no-fsync {source} {dest}",
    }
    rounds = [{name: timed(command, dest) for name, command in ways.items()}
              for _ in range(int(args["--repeats"]))]
    shutil.rmtree(dest)
    print(f"volume: {size / 1e9:.2f} GB in {len(files.split())} files; medians of "
          f"{len(rounds)} rounds, each running every way once; ratios paired within a round")
    print("| way | seconds | GB/s | x cp | x (cp + sync) |")
    print("|---|---|---|---|---|")
    for name in ways:
        seconds = np.median([r[name] for r in rounds])
        print(f"| {name} | {seconds:.2f} | {size / seconds / 1e9:.2f} | "
              f"{np.median([r['cp'] / r[name] for r in rounds]):.2f} | "
              f"{np.median([r['cp + sync'] / r[name] for r in rounds]):.2f} |")


if __name__ == "__main__":
    main()
