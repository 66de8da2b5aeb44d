"""How blockfs_mpi's costs grow with the number of blocks and of ranks.

    python benchmarks/scaling.py [--blocks 1e4,1e5,1e6,1e7] [--ranks 1,2,4,8,16]
                                 [--many 2,16,32] [--size 512] [--max-load 1.5]

Three measurements, each an `mpiexec -n N` job of this same script (--child):

commit   The commit at close() against the number of blocks (at 2 ranks) and
         against ranks (at --sweep-blocks blocks), two ways:
         - "rows": collective_commit() called directly with every block of the
           volume written (synthetic WRITTEN rows spread over the ranks, tiny
           payload sizes): the worst case, the whole index gathered to rank 0;
         - "close": a real Directory of that many blocks, create() then each
           rank writes one 64^3 block and close(): what a close of a sparse
           big volume costs (dense index written, few rows gathered).
         Time from a barrier to the end of the commit (fsync and rename
         included), the largest over ranks, and rank 0's CPU time in it
         (oversubscribed ranks waiting in a collective poll and take the
         cores from rank 0); memory as the peak of traced
         allocations (tracemalloc: numpy and Python) during the commit and
         the peak RSS, rank 0 and the largest of the other ranks.
many     N ranks (oversubscribed on 2 cores) write the --size^3 benchmark
         volume, rank r every N-th block; every block is then read back and
         compared (untimed). Wall time split: launch (mpiexec start to the
         first line of the script on the first rank), imports (numpy,
         blockfs_mpi: to the last rank), MPI_Init and a barrier, work (create
         + compress + append), commit (close()), exit (to mpiexec's end).
"""
import argparse
import json
import os
import subprocess
import sys
import time

T_EXEC = time.time()  # before any import: the end of "launch"

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from machine import machine_line, versions, wait_for_quiet  # noqa: E402
from volume import CACHE, benchmark_volume, block_origins  # noqa: E402

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


def grid(n_blocks):
    """(x, y, z) extents in voxels of a volume of n_blocks 64^3 blocks (100 x 100 x n/1e4 blocks)."""
    if n_blocks < 10_000:
        return 64 * n_blocks, 64, 64
    return 6400, 6400, 64 * (n_blocks // 10_000)


# ----------------------------------------------------------- children --

def child_commit(args):
    """One commit measurement; rank 0 prints a JSON line."""
    import resource
    import tracemalloc

    from mpi4py import MPI

    from blockfs_mpi import Directory
    from blockfs_mpi import format as fmt
    from blockfs_mpi.commit import collective_commit
    from blockfs_mpi.geometry import Geometry
    from blockfs_mpi.writer import WRITTEN
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    x, y, z = grid(args.n)
    path = os.path.join(args.out, "volume.blockfs")
    create = 0.0
    if args.mode == "rows":
        header = fmt.Header(Geometry(x, y, z, 64, 64, 64), np.dtype(np.uint16),
                            [f"volume.blockfs.{r}" for r in range(size)])
        mine = np.arange(rank, header.geometry.n_blocks, size, dtype=np.uint64)
        rows = np.zeros(len(mine), WRITTEN)
        rows["block"] = mine
        rows["size"] = 16
        frames = np.arange(len(mine), dtype=np.uint64) * (fmt.FRAME_SIZE + 16)
        rows["offset"] = fmt.FRAME_SIZE + frames
        rows["file"] = rank
        rows["sequence"] = np.arange(len(mine))
        commit = lambda: collective_commit(comm, path, header, rows,  # noqa: E731
                                           recovered=np.zeros(0, WRITTEN))
    else:
        directory = Directory(x, y, z, np.uint16, path, comm=comm)
        comm.Barrier()
        started = time.perf_counter()
        directory.create()
        create = comm.reduce(time.perf_counter() - started, MPI.MAX, root=0)
        block = np.zeros((64, 64, 64), np.uint16)
        n_x = x // 64
        directory.write_block(block, 64 * (rank % n_x), 64 * (rank // n_x), 0)
        commit = directory.close
    comm.Barrier()
    tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    commit()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stats = comm.gather((seconds, traced, rss, cpu), root=0)
    if rank == 0:
        print(json.dumps({
            "mode": args.mode, "blocks": args.n, "ranks": size, "create_s": create,
            "commit_s": max(s[0] for s in stats), "cpu_rank0": stats[0][3],
            "traced_rank0": stats[0][1], "traced_other": max([s[1] for s in stats[1:]] or [0]),
            "rss_rank0": stats[0][2], "rss_other": max([s[2] for s in stats[1:]] or [0]),
            "directory_bytes": os.path.getsize(path)}))


def child_write(args):
    """N ranks write the benchmark volume; rank 0 checks every block and prints the time split."""
    from blockfs_mpi import Directory
    imported = time.time()
    from mpi4py import MPI  # MPI_Init
    comm = MPI.COMM_WORLD
    volume = benchmark_volume(args.size)
    comm.Barrier()
    ready = time.time()
    path = os.path.join(args.out, "volume.blockfs")
    directory = Directory(args.size, args.size, args.size, np.uint16, path)
    directory.create()
    for x, y, z in block_origins(args.size)[comm.rank::comm.size]:
        directory.write_block(volume[z:z + 64, y:y + 64, x:x + 64], x, y, z)
    wrote = time.time()
    directory.close()
    committed = time.time()
    times = comm.gather((T_EXEC, imported, ready, wrote, committed), root=0)
    if comm.rank == 0:
        check = Directory.open(path)
        wrong = [o for o in block_origins(args.size)
                 if not np.array_equal(check.read_block(*o),
                                       volume[o[2]:o[2] + 64, o[1]:o[1] + 64, o[0]:o[0] + 64])]
        print(json.dumps({
            "ranks": comm.size, "exec": min(t[0] for t in times),
            "imported": max(t[1] for t in times), "ready": max(t[2] for t in times),
            "wrote": max(t[3] for t in times), "committed": max(t[4] for t in times),
            "blocks_wrong": len(wrong),
            "data_files": len(check.block_filenames)}))
        sys.stdout.flush()


# ------------------------------------------------------------- parent --

def run_child(ranks, *child_args):
    """Run this script under mpiexec -n ranks; (JSON of rank 0, wall seconds, launch time)."""
    launched = time.time()
    result = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, os.path.abspath(__file__),
                             "--child", *child_args], capture_output=True, text=True)
    wall = time.time() - launched
    if result.returncode:
        raise RuntimeError(f"mpiexec -n {ranks} {' '.join(child_args)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall, launched


def mib(n):
    return f"{n / 2 ** 20:.1f}"


def commit_tables(args):
    print("\n## Commit cost at close()\n")
    print("| mode | blocks | ranks | commit s | rank 0 CPU s | us per block | create s | "
          "directory MiB | traced MiB rank 0 / other | peak RSS MiB rank 0 / other | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    points = [(n, 2) for n in args.blocks] + [(args.sweep_blocks, r) for r in args.ranks if r != 2]
    for mode in ("rows", "close"):
        for n, ranks in points:
            out = os.path.join(args.out, "commit")
            os.makedirs(out, exist_ok=True)
            for name in os.listdir(out):
                os.unlink(os.path.join(out, name))
            r, _, _ = run_child(ranks, "commit", "--mode", mode, "--n", str(n), "--out", out)
            print(f"| {mode} | {n:.0e} | {ranks} | {r['commit_s']:.3f} | {r['cpu_rank0']:.3f} | "
                  f"{r['commit_s'] / n * 1e6:.2f} | {r['create_s']:.3f} | "
                  f"{mib(r['directory_bytes'])} | {mib(r['traced_rank0'])} / "
                  f"{mib(r['traced_other'])} | {mib(r['rss_rank0'])} / {mib(r['rss_other'])} | "
                  f"{os.getloadavg()[0]:.2f} |", flush=True)


def many_table(args):
    print(f"\n## Many ranks writing {args.size}^3 ({args.size ** 3 * 2 / 1e6:.0f} MB, "
          f"{len(block_origins(args.size))} blocks), oversubscribed on {os.cpu_count()} cores\n")
    print("| ranks | correct | data files | launch s | imports s | MPI_Init + barrier s | work s | "
          "commit s | exit s | total s | work share | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ranks in args.many:
        out = os.path.join(args.out, "many")
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(out):
            os.unlink(os.path.join(out, name))
        r, wall, launched = run_child(ranks, "write", "--size", str(args.size), "--out", out)
        launch, imports = r["exec"] - launched, r["imported"] - r["exec"]
        startup = r["ready"] - r["imported"]
        work, commit = r["wrote"] - r["ready"], r["committed"] - r["wrote"]
        exit_ = wall - (r["committed"] - launched)
        correct = "yes" if r["blocks_wrong"] == 0 else f"NO ({r['blocks_wrong']} wrong)"
        print(f"| {ranks} | {correct} | {r['data_files']} | {launch:.2f} | {imports:.2f} | {startup:.2f} | {work:.2f} | {commit:.2f} | "
              f"{exit_:.2f} | {wall:.2f} | {work / wall:.2f} | {os.getloadavg()[0]:.2f} |",
              flush=True)


def numbers(text, kind=int):
    return [kind(float(v)) for v in text.split(",") if v]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=numbers, default=numbers("1e4,1e5,1e6,1e7"))
    parser.add_argument("--ranks", type=numbers, default=numbers("1,2,4,8,16"))
    parser.add_argument("--sweep-blocks", type=lambda v: int(float(v)), default=10 ** 6,
                        help="blocks of the ranks sweep")
    parser.add_argument("--many", type=numbers, default=numbers("2,16,32"))
    parser.add_argument("--size", type=int, default=512, help="volume of the many-ranks test")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--out", default=os.path.join(CACHE, "scaling"))
    parser.add_argument("--child", choices=("commit", "write"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("rows", "close"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return (child_commit if args.child == "commit" else child_write)(args)
    benchmark_volume(args.size)
    wait_for_quiet(args.max_load)
    print(f"# {machine_line()}")
    print(f"# {versions(('numpy', 'numcodecs', 'mpi4py'))}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    commit_tables(args)
    wait_for_quiet(args.max_load)
    many_table(args)
    print(f"\n# done, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
