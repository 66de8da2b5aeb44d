"""Run a blockfs_mpi program on this rank, then print how much of a volume's index it read,
as one JSON line after whatever the program printed.

    index_reads.py <directory file> <module> <args>...   (e.g. ... v.blockfs fsck v.blockfs)

$INDEX_RUN, if set, is the number of index entries read at a time (blockfs_mpi.index.RUN).

Printed: {"rank", "status" (the program's exit status), "run_bytes" (index bytes read by
preads of more than one entry: passes over the index), "entry_bytes" (index bytes read one
entry at a time: a block's entry looked up)}. Every pread of the directory file is counted
(os.open and os.pread wrapped); bytes of its header and metadata are not index bytes.
"""
import importlib
import json
import os
import sys

from blockfs_mpi import index
from blockfs_mpi.reader import read_header

target = os.path.realpath(sys.argv[1])
header = read_header(target)
index_start = header.index_offset
index_end = index_start + header.n_entries * header.entry_size
counts = {"run_bytes": 0, "entry_bytes": 0}
watched = set()  # descriptors open on the directory file
real_open, real_close, real_pread = os.open, os.close, os.pread


def counting_open(path, *args, **kwargs):
    fd = real_open(path, *args, **kwargs)
    if isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(path) == target:
        watched.add(fd)
    return fd


def counting_close(fd):
    watched.discard(fd)
    return real_close(fd)


def counting_pread(fd, length, offset):
    data = real_pread(fd, length, offset)
    if fd in watched:
        index_bytes = max(0, min(offset + len(data), index_end) - max(offset, index_start))
        counts["entry_bytes" if length <= header.entry_size else "run_bytes"] += index_bytes
    return data


if os.environ.get("INDEX_RUN"):
    index.RUN = int(os.environ["INDEX_RUN"])
os.open, os.close, os.pread = counting_open, counting_close, counting_pread

rank = 0
if "PMI_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.rank
status = 0
try:
    importlib.import_module(f"blockfs_mpi.{sys.argv[2]}").main(sys.argv[3:])
except SystemExit as e:
    status = e.code or 0
finally:
    sys.stdout.flush()
    sys.stdout.write(json.dumps({"rank": rank, "status": status, **counts}) + "\n")
    sys.stdout.flush()
