"""Repair a volume after a check: rebuild its index from the newest intact frames the check
found and commit it atomically (alone, or in slices under MPI). It never deletes data.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import format as fmt
from . import parallel
from .atomic import write_atomically
from .commit import commit_slices
from .describe import data_paths
from .errors import BlockfsError, FormatError
from .index import read_index
from .index_build import build_index, index_spans, route_rows
from .reader import read_header
from .report import Report

if TYPE_CHECKING:
    from mpi4py import MPI


def repaired_header(path: str, repairable: bool) -> fmt.Header:
    """The header a repair commits: the volume's own, also naming the unnamed data files
    found beside it. Raises FormatError if the volume cannot be repaired."""
    if not repairable:
        raise FormatError(f"{path}: cannot repair: the directory file's header or metadata is "
                          f"damaged, so the volume's geometry is unknown")
    header: fmt.Header = read_header(path)
    if not header.has_frames:
        raise FormatError(f"{path}: cannot repair a format 1 volume: it has no frames to "
                          f"rebuild the index from")
    folder = os.path.dirname(os.path.abspath(path))
    header.data_files += [os.path.relpath(p, folder)
                          for p in data_paths(path, header)[len(header.data_files):]]
    return header


def repair(path: str, report: Report) -> int:
    """Rebuild the index from the frames a check found and commit it atomically.

    The newest intact frame of each block wins; a block without any keeps its
    entry, so that it still reads as an error rather than as zeros. Unnamed
    data files found beside the volume are added to it. Nothing is deleted.
    Returns the number of index entries changed.
    """
    header = repaired_header(path, report.repairable)
    old = read_index(path, header)
    index = build_index(header.geometry, report.rows, base=old, newest_wins=True)
    write_atomically(path, *fmt.directory2_parts(header, index))
    return int((index != old).sum())


def repair_collectively(path: str, comm: MPI.Comm, rows: npt.NDArray[np.void],
                        repairable: bool) -> int:
    """repair() under MPI, distributed like a writers' commit: each rank's frame rows go to
    the rank that rebuilds their slice of the index, so no rank holds more than its share.
    Every rank returns the number of entries changed, or raises the same error."""
    rank, index, changed, error = comm.Get_rank(), None, 0, None
    try:
        header = repaired_header(path, repairable)
        spans = index_spans(header.geometry.n_blocks, comm.Get_size())
        span = int(spans[rank]), int(spans[rank + 1])
    except (BlockfsError, OSError) as e:
        error = f"rank {rank}: {e}"
    failed = parallel.agree(comm, error)
    if failed:
        raise parallel.everywhere(FormatError(failed[0]))
    rows = route_rows(comm, rows, spans)
    try:
        old = read_index(path, header, span)
        index = build_index(header.geometry, rows, base=old, newest_wins=True, span=span)
        changed = int((index != old).sum())
    except (BlockfsError, OSError) as e:
        error = f"rank {rank}: {path}: {e}"
    failed = parallel.agree(comm, error)
    if failed:
        raise parallel.everywhere(FormatError("; ".join(failed)))
    commit_slices(comm, path, header, span[0], index)
    result: int = comm.allreduce(changed)
    return result
