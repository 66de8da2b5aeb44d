"""Run a blockfs_mpi program on this rank, then print what the rank used, as one JSON line.

    measure.py <module>[:<function>] <args>...    (e.g. measure.py blockfs2hdf vol.blockfs out.h5 /v;
                                                   the function is main unless named)

Printed: {"rank", "peak_rss_kib" (getrusage), "opens" (Python-level opens, seen by an audit
hook, of files under $MEASURE_UNDER), "syncs" (data-file syncs by blockfs_mpi.writer)}.
Counting costs no system call, so the figures are the program's own.
"""
import importlib
import json
import os
import resource
import sys

from blockfs_mpi import writer

counts = {"opens": 0, "syncs": 0}
under = os.path.abspath(os.environ.get("MEASURE_UNDER", "/nonexistent")) + os.sep


def count_opens(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        if os.path.abspath(os.fsdecode(args[0])).startswith(under):
            counts["opens"] += 1


def counted(sync):
    def wrapper(self):
        counts["syncs"] += 1
        return sync(self)
    return wrapper


for kind in (writer.PosixFile, writer.MPIFile):
    kind.sync = counted(kind.sync)
sys.addaudithook(count_opens)

rank = 0
if "PMI_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.rank
try:
    module, _, function = sys.argv[1].partition(":")  # e.g. write, or relocate:cp_main
    getattr(importlib.import_module(f"blockfs_mpi.{module}"), function or "main")(sys.argv[2:])
except SystemExit as e:
    if e.code not in (0, None):
        raise
finally:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(json.dumps({"rank": rank, "peak_rss_kib": peak, **counts}) + "\n")
    sys.stdout.flush()
