"""Verify a copy as blockfs-mv does (relocate.verify_frames) and print, per rank, which data
files of the copy the verification opened, as one JSON line.

    verify_opens.py <source directory file> <destination folder>

The destination's data files must already hold copies of the source's.
"""
import json
import os
import sys

from mpi4py import MPI

from blockfs_mpi import relocate

comm = MPI.COMM_WORLD
source, dest = sys.argv[1:3]
plan = comm.bcast(relocate.make_plan(source, dest, force=True) if comm.rank == 0 else None)
targets = set(plan.targets)
opened = []


def count_opens(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path in targets:
            opened.append(path)


rows = relocate.index_share(plan, comm)
sys.addaudithook(count_opens)
relocate.verify_frames(plan, comm, rows)
mine = {"rank": comm.rank, "opens": len(opened),
        "files": sorted(plan.targets.index(path) for path in set(opened))}
reports = comm.gather(mine, root=0)  # printed by rank 0 alone: ranks' stdout may interleave
if comm.rank == 0:
    sys.stdout.write("".join(json.dumps(report) + "\n" for report in reports))
    sys.stdout.flush()
