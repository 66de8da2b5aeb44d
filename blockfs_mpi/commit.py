"""Turning the writers' entries into a committed directory file, atomically.

A reader sees the old directory file or the new one, never half of one:
the new one is written under a temporary name in the same folder, fsynced,
renamed over the old name, and the folder is fsynced.
"""
import contextlib
import os
import tempfile

import numpy as np

from . import format as fmt
from .errors import DuplicateBlockError, WriterError
from .parallel import everywhere, idle_barrier
from .writer import WRITTEN


@contextlib.contextmanager
def atomic_file(path, durable=True):
    """A descriptor open for writing whose file replaces path only if the block succeeds.

    Lets large files (a streamed index) be written in pieces with the same guarantee
    as write_atomically: no reader ever sees a partial file. The file and its folder are
    fsynced unless durable=False (still atomic, not crash-safe): on ext4 an fsync, however
    small the file, waits for the journal, which first writes out every data block
    allocated meanwhile.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".commit",
                                     dir=folder)
    try:
        yield fd
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = None
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        os.unlink(temporary)
        raise
    if not durable:
        return
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


def write_atomically(path, *parts):
    """Replace the file at path with the bytes-like parts, one after the other, so that no
    reader ever sees a partial file."""
    with atomic_file(path) as fd:
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                view = view[os.write(fd, view):]


def build_index(geometry, written, base=None, writer_kind="data file", newest_wins=False):
    """A dense format 2 index from WRITTEN rows, on top of a base index.

    Within one data file the newest frame of a block wins. A block in the rows
    of two different files is an error naming the block and both writers,
    unless newest_wins (rebuilding from frames: then the newest frame wins).
    Works through a sort permutation, never a sorted copy of the rows: rank 0
    holds every row of a job at commit.
    """
    index = fmt.empty_index(geometry.n_blocks) if base is None else base.copy()
    rows = np.asarray(written, WRITTEN)
    if len(rows) and rows["block"].max() >= geometry.n_blocks:
        raise WriterError(f"block number {rows['block'].max()} is outside the volume "
                          f"({geometry.n_blocks} blocks)")
    order = np.lexsort((rows["sequence"], rows["block"]))
    blocks = rows["block"][order]
    if not newest_wins:
        _refuse_shared_blocks(geometry, blocks, rows["file"][order], writer_kind)
    newest = np.ones(len(order), bool)  # the last row of each block in sequence order
    np.not_equal(blocks[1:], blocks[:-1], out=newest[:-1])
    blocks, order = blocks[newest], order[newest]
    for name in ("offset", "size", "file"):
        index[name][blocks] = rows[name][order]
    return index


def _refuse_shared_blocks(geometry, blocks, files, writer_kind):
    """Raise DuplicateBlockError if a block has rows of two writers (blocks sorted, files
    in the same order)."""
    same_block = blocks[1:] == blocks[:-1]
    other_file = files[1:] != files[:-1]
    twice = np.unique(blocks[1:][same_block & other_file])
    if not len(twice):
        return
    problems = []
    for block in twice[:10]:
        writers = sorted(set(files[blocks == block].tolist()))
        x, y, z = geometry.block_origin(block)
        problems.append(f"block {block} at (x={x}, y={y}, z={z}) by "
                        + " and ".join(f"{writer_kind} {w}" for w in writers))
    more = f" and {len(twice) - 10} more" if len(twice) > 10 else ""
    raise DuplicateBlockError(f"{len(twice)} block(s) written by more than one writer: "
                              + "; ".join(problems) + more)


def commit(path, header, written, base=None, writer_kind="data file"):
    """Build the index from WRITTEN rows and replace the directory file atomically."""
    index = build_index(header.geometry, written, base, writer_kind)
    write_atomically(path, *fmt.directory2_parts(header, index))
    return index


def _gather_rows(comm, rows):
    """Every rank's WRITTEN rows, concatenated on rank 0 (None elsewhere)."""
    from mpi4py import MPI
    rows = np.ascontiguousarray(rows, WRITTEN)
    counts = comm.gather(rows.nbytes, root=0)
    receive, gathered = None, None
    if comm.Get_rank() == 0:
        gathered = np.empty(sum(counts) // WRITTEN.itemsize, WRITTEN)
        receive = [gathered.view(np.uint8), (counts, np.cumsum([0] + counts[:-1])), MPI.BYTE]
    comm.Gatherv([rows.view(np.uint8), MPI.BYTE], receive, root=0)
    return gathered


def recovered_index(geometry, recovered):
    """The index that frames found in data files describe (newest frame of each block)."""
    return build_index(geometry, recovered, newest_wins=True)


def collective_commit(comm, path, header, rows, local_error=None, recovered=None):
    """close() under MPI: gather every rank's rows to rank 0, which commits; all ranks agree.

    Rank r's data file is file number r. `recovered` are rows a resumed job
    found in the data files; this job's rows override them. Every rank calls
    this exactly once, whatever happened to it before, so no rank can be left
    waiting: a rank's own failure travels as local_error and makes every rank
    raise the same WriterError, naming the ranks at fault. Ranks that wait for the
    others, or for rank 0's commit, sleep instead of spinning (idle_barrier).
    """
    idle_barrier(comm)
    errors = comm.gather(local_error, root=0)
    new_rows = _gather_rows(comm, rows)
    old_rows = _gather_rows(comm, np.zeros(0, WRITTEN) if recovered is None else recovered)
    outcome = None
    if comm.Get_rank() == 0:
        failed = [f"rank {r}: {e}" for r, e in enumerate(errors) if e]
        if failed:
            outcome = "not committed, " + "; ".join(failed)
        else:
            try:
                base = recovered_index(header.geometry, old_rows) if len(old_rows) else None
                commit(path, header, new_rows, base, writer_kind="rank")
            except DuplicateBlockError as e:
                outcome = ("duplicate", str(e))
            except Exception as e:
                outcome = f"rank 0: commit of {path} failed: {e}"
    idle_barrier(comm)
    outcome = comm.bcast(outcome, root=0)
    if isinstance(outcome, tuple):
        raise everywhere(DuplicateBlockError(f"{path} not committed: {outcome[1]}"))
    if outcome:
        raise everywhere(WriterError(f"{path} {outcome}" if outcome.startswith("not") else outcome))
