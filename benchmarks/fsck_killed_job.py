"""blockfs-fsck --repair after a job that wrote every block and never committed.

    python benchmarks/fsck_killed_job.py [--blocks 1e6] [--ranks 2] [--max-listed 1000]

A volume of --blocks 8^3 uint8 blocks is created, written by --ranks ranks and
committed; then its empty directory file (saved after create()) is put back, so
every frame is uncommitted, as after a job killed just before close(). Then
`fsck(..., fix=True)` runs on --ranks ranks: time, lines printed by rank 0
and the peak RSS of every rank. Rank 0's memory is what grows with the
number of problems.
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, versions, wait_for_quiet  # noqa: E402

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
BLOCK = 8


def child_write(path, n_blocks):
    """Every rank writes its share of the blocks; rank 0 puts the empty directory file back."""
    import numpy as np
    from mpi4py import MPI

    from blockfs_mpi import Directory
    comm = MPI.COMM_WORLD
    side = 100  # blocks along x and y
    directory = Directory(side * BLOCK, side * BLOCK, BLOCK * (n_blocks // side ** 2), np.uint8,
                          path, comm=comm, x_block_size=BLOCK, y_block_size=BLOCK,
                          z_block_size=BLOCK)
    directory.create()
    if comm.rank == 0:
        shutil.copy(path, path + ".empty")
    block = np.ones((BLOCK,) * 3, np.uint8)
    origins = list(directory.geometry.block_origins())
    for x, y, z in origins[comm.rank::comm.size]:
        directory.write_block(block, x, y, z)
    directory.close()
    comm.Barrier()
    if comm.rank == 0:
        os.replace(path + ".empty", path)


def child_fsck(path, listed):
    """fsck --repair; rank 0 prints seconds, lines and every rank's peak RSS."""
    from mpi4py import MPI

    from blockfs_mpi.fsck import fsck
    comm = MPI.COMM_WORLD
    lines = [0]
    started = time.perf_counter()
    status = fsck(path, comm, fix=True, silent=True, listed=listed,
                  out=lambda line: lines.__setitem__(0, lines[0] + 1))
    seconds = time.perf_counter() - started
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, root=0)
    if comm.rank == 0:
        print(f"| {status} | {lines[0]} | {seconds:.1f} | {' / '.join(map(str, rss))} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=float, default=1e6)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--max-listed", type=int, default=1000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, number = args.child
        if kind == "write":
            child_write(path, int(number))
        else:
            child_fsck(path, int(number))
        return
    print(f"# {machine_line()}")
    print(f"# {versions(('numpy', 'numcodecs', 'mpi4py'))}")
    n_blocks = int(args.blocks) // 10_000 * 10_000
    with tempfile.TemporaryDirectory(prefix="blockfs-bench-") as folder:
        path = os.path.join(folder, "v.blockfs")
        run = [MPIEXEC, "-n", str(args.ranks), sys.executable, __file__, "--child"]
        subprocess.run(run + ["write", path, str(n_blocks)], check=True)
        print(f"# load {wait_for_quiet():.2f}; {n_blocks} uncommitted blocks, {args.ranks} ranks, "
              f"--max-listed {args.max_listed}")
        print("| exit status | lines | seconds | peak RSS MiB per rank |")
        print("|---|---|---|---|")
        subprocess.run(run + ["fsck", path, str(args.max_listed)], check=True)


if __name__ == "__main__":
    main()
