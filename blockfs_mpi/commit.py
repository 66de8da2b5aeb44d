"""The commit protocol: the writers' entries made the volume's directory file, atomically.

A reader sees the old directory file or the new one, never half of one
(atomic). Under MPI the index is built (index_build) and written in slices,
one per rank, so that no rank needs memory for the whole job's entries: every
rank writes its slice into a new file made beside the old one with MPI-IO,
which is fsynced; rank 0 renames it over the old one and fsyncs the folder.
Every step is collective and a failure on any rank is raised on every rank,
leaving nothing behind (parallel.fail_together).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .atomic import replace_durably, temporary_name, write_atomically
from .errors import DuplicateBlockError, WriterError, brief
from .format import WRITTEN
from .index_build import build_index, duplicate_error, index_spans, route_rows, slices_checksum
from .parallel import agree, everywhere, fail_together, idle_barrier

if TYPE_CHECKING:
    from mpi4py import MPI

CREATE_ATTEMPTS = 8  # names tried for a commit's temporary file before giving up
PIECE_BYTES = 1 << 30  # most bytes of a slice in one collective write (MPI counts are ints)
EMPTY_CHUNK = 1 << 16  # entries of the chunk an empty slice repeats (1 MiB, as format's)

Hints = dict[str, Any]  # MPI-IO hints (striping) for a new file, as given for the volume


def commit(path: str, header: fmt.Header, written: npt.ArrayLike,
           base: npt.NDArray[np.void] | None = None,
           writer_kind: str = "data file") -> npt.NDArray[np.void]:
    """Build the index from WRITTEN rows and replace the directory file atomically."""
    index = build_index(header.geometry, written, base, writer_kind)
    write_atomically(path, *fmt.directory2_parts(header, index))
    return index


# ------------------------------------------------------------ under MPI --

def _not_committed(path: str) -> Callable[[str], WriterError]:
    """The error of a failed commit of path, from the ranks' messages."""
    return lambda errors: WriterError(f"{path} not committed, {errors}")


def _index_checksum(comm: MPI.Comm, pieces: list[npt.NDArray[np.uint8]]) -> int:
    """slices_checksum of this rank's slice, held as pieces in order."""
    mine, length = 0, 0
    for piece in pieces:
        mine, length = fmt.crc32c(piece, mine), length + len(piece)
    return slices_checksum(comm, mine, length)


def _create_beside(comm: MPI.Comm, path: str, hints: Hints | None) -> tuple[MPI.File, str]:
    """(MPI file handle, name) of a new file beside path, readable by all, created and opened
    for writing by every rank of comm at once with the striping hints (Lustre applies them
    only at creation). Rank 0 names it like atomic.temporary_beside; MODE_EXCL keeps it from
    being another commit's, and a name that is taken is replaced by another, by every rank.
    Raises on every rank, naming the file and the ranks, if it cannot be made; then none is
    left."""
    from mpi4py import MPI
    info = MPI.Info.Create()
    info.Set("romio_ds_write", "disable")  # nothing read back; hints from the volume as given
    for key, value in (hints or {}).items():
        info.Set(key, str(value))
    try:
        for _ in range(CREATE_ATTEMPTS):
            temporary = comm.bcast(temporary_name(path) if comm.Get_rank() == 0 else None,
                                   root=0)
            handle = _try_create(comm, path, temporary, info)
            if handle is not None:
                return handle, temporary
    finally:
        info.Free()
    raise everywhere(WriterError(
        f"{path} not committed, rank 0: cannot create a file beside it: {CREATE_ATTEMPTS} "
        f"names were taken, the last {temporary}"))


def _try_create(comm: MPI.Comm, path: str, temporary: str, info: MPI.Info) -> MPI.File | None:
    """The MPI file handle of temporary, a new file beside path that every rank of comm
    creates and opens at once (_create_beside); None if another file has that name. Raises
    on every rank if it cannot be made, and then none is left."""
    from mpi4py import MPI
    rank = comm.Get_rank()
    handle, error, taken = None, None, False
    try:
        handle = MPI.File.Open(cast(MPI.Intracomm, comm), temporary,
                               MPI.MODE_WRONLY | MPI.MODE_CREATE | MPI.MODE_EXCL, info)
    except MPI.Exception as e:
        taken = e.Get_error_class() == MPI.ERR_FILE_EXISTS
        error = f"rank {rank}: cannot create {temporary}: {brief(e)}"
    outcomes = comm.allgather((error, taken))
    taken = any(taken for _, taken in outcomes)  # said by the rank that creates it
    if taken and all(error for error, _ in outcomes):
        return None  # another file has that name: try another
    if handle is not None and rank == 0:
        try:
            os.chmod(temporary, 0o644)  # as mkstemp's files are made by temporary_beside
        except OSError as e:
            error = f"rank 0: cannot make {temporary} readable: {e}"

    def discard() -> None:
        if handle is not None and all(error is None for error, _ in outcomes):
            handle.Close()  # opened everywhere: closed everywhere
        if rank == 0 and not taken:  # then it is none or this commit's
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(temporary)

    fail_together(comm, error, _not_committed(path), discard)
    return handle


def _write_rounds(comm: MPI.Comm, handle: MPI.File,
                  pieces: list[tuple[int, npt.NDArray[np.uint8]]]) -> MPI.Exception | None:
    """Write this rank's (offset, bytes) pieces with Write_at_all, one a round, in as many
    rounds as the rank with the most pieces has (a rank out of pieces writes nothing): ROMIO
    gathers each round's pieces into large writes of contiguous file domains, aligned to
    stripes by its Lustre driver. The first MPI error met, after every round, else None."""
    from mpi4py import MPI
    rounds = comm.allreduce(len(pieces), op=MPI.MAX)
    nothing = np.zeros(0, np.uint8)
    error = None
    for k in range(rounds):
        offset, data = pieces[k] if k < len(pieces) else (0, nothing)
        try:
            handle.Write_at_all(offset, [data, MPI.BYTE])
        except MPI.Exception as e:
            error = error or e
    return error


def _write_slices(comm: MPI.Comm, path: str, head: bytes, first: int,
                  pieces: list[npt.NDArray[np.uint8]], hints: Hints | None = None) -> str:
    """Write a directory file collectively with MPI-IO into a new file beside path: every rank
    its slice of the index (its pieces, entries first, first + 1, ...) in place, rank 0 also
    the head. Returns the file's name, fsynced and closed, or raises on every rank with every
    rank's error; nothing is left behind then."""
    from mpi4py import MPI
    rank = comm.Get_rank()
    handle, temporary = _create_beside(comm, path, hints)
    placed, offset = [], len(head) + first * fmt.ENTRY.itemsize
    for piece in pieces:
        placed.append((offset, piece))
        offset += len(piece)
    if rank == 0:  # last: the first round then covers the index from its start, unbroken
        placed.append((0, np.frombuffer(head, np.uint8)))

    def discard() -> None:
        handle.Close()
        if rank == 0:
            os.unlink(temporary)

    steps: list[tuple[Callable[[], MPI.Exception | None], str]] = [
        (lambda: _write_rounds(comm, handle, placed), "write"), (handle.Sync, "fsync")]
    for action, what in steps:
        error = None
        try:
            failure = action()
            if failure is not None:
                raise failure
        except MPI.Exception as e:
            error = f"rank {rank}: cannot {what} {temporary}: {brief(e)}"
        fail_together(comm, error, _not_committed(path), discard)
    handle.Close()
    return temporary


def _put_in_place(comm: MPI.Comm, temporary: str, path: str) -> None:
    """Rank 0 renames the written directory file over path and fsyncs the folder; every rank
    learns whether that worked."""
    error = None
    if comm.Get_rank() == 0:
        try:
            replace_durably(temporary, path)
        except OSError as e:
            error = f"rank 0: commit of {path} failed: {e}"
    fail_together(comm, error, WriterError)


def collective_commit(comm: MPI.Comm, path: str, header: fmt.Header, rows: npt.ArrayLike,
                      local_error: str | None = None, recovered: npt.ArrayLike | None = None,
                      hints: Hints | None = None) -> None:
    """close() under MPI: the index is built and written by every rank, a slice each, and
    committed atomically; all ranks agree on the outcome.

    Rank r's data file is file number r. Every WRITTEN row goes to the rank whose
    slice holds its block, so no rank ever holds more than its share of rows and
    of the index, however large the volume. `recovered` are rows a resumed job
    found in the data files; this job's rows override them. Every rank calls
    this exactly once, whatever happened to it before, so no rank can be left
    waiting: a rank's own failure travels as local_error and makes every rank
    raise the same WriterError, naming the ranks at fault. Ranks that wait for the
    others sleep instead of spinning (idle_barrier). `hints`: MPI-IO hints (striping)
    for the new directory file, as for the data files.
    """
    rank = comm.Get_rank()
    not_committed = _not_committed(path)
    idle_barrier(comm)
    fail_together(comm, f"rank {rank}: {local_error}" if local_error else None, not_committed)
    geometry = header.geometry
    spans = index_spans(geometry.n_blocks, comm.Get_size())
    span = int(spans[rank]), int(spans[rank + 1])
    new_rows = route_rows(comm, rows, spans)
    old_rows = route_rows(comm, np.zeros(0, WRITTEN) if recovered is None else recovered, spans)
    index: npt.NDArray[np.void] | None = None
    error: str | tuple[str, int, list[str]] | None = None
    try:
        base = build_index(geometry, old_rows, newest_wins=True, span=span) if len(old_rows) \
            else None
        index = build_index(geometry, new_rows, base, writer_kind="rank", span=span)
    except DuplicateBlockError as e:
        error = ("duplicate", e.count, e.problems)
    except Exception as e:
        error = f"rank {rank}: {e}"
    del new_rows, old_rows
    errors = agree(comm, error)
    duplicates = [e for e in errors if isinstance(e, tuple)]
    if duplicates:
        found = duplicate_error(sum(count for _, count, _ in duplicates),
                                [problem for _, _, problems in duplicates for problem in problems])
        raise everywhere(DuplicateBlockError(f"{path} not committed: {found}"))
    if errors:
        raise everywhere(not_committed("; ".join(str(e) for e in errors)))
    assert index is not None  # no rank failed
    commit_slices(comm, path, header, span[0], index, hints)


def commit_slices(comm: MPI.Comm, path: str, header: fmt.Header, first: int,
                  index: Any, hints: Hints | None = None) -> None:
    """Replace the directory file at path atomically by header and the index of which each
    rank holds a slice (its entries of blocks first, first + 1, ...), written in place
    collectively into a new file made with the MPI-IO hints."""
    # index: Any, not npt.NDArray[np.void]: repair_collectively passes it as the array it is
    # on every rank once all agreed, without narrowing it from None; the array once it does.
    index_bytes = index.view(np.uint8)
    _commit_pieces(comm, path, header, first,
                   [index_bytes[start:start + PIECE_BYTES]
                    for start in range(0, len(index_bytes), PIECE_BYTES)], hints)


def commit_empty_slices(comm: MPI.Comm, path: str, header: fmt.Header,
                        hints: Hints | None = None) -> None:
    """create() under MPI: commit at path a directory file in which no block is written yet,
    every rank writing its slice of the index (index_spans) as commit_slices does. A slice is
    written as one shared chunk of missing entries, again and again: no rank holds more."""
    rank = comm.Get_rank()
    spans = index_spans(header.geometry.n_blocks, comm.Get_size())
    first, end = int(spans[rank]), int(spans[rank + 1])
    chunk = EMPTY_CHUNK
    missing = fmt.empty_index(min(end - first, chunk)).view(np.uint8)
    pieces = [missing[:min(chunk, end - start) * fmt.ENTRY.itemsize]
              for start in range(first, end, chunk)]
    _commit_pieces(comm, path, header, first, pieces, hints)


def _commit_pieces(comm: MPI.Comm, path: str, header: fmt.Header, first: int,
                   pieces: list[npt.NDArray[np.uint8]], hints: Hints | None) -> None:
    """Replace the directory file at path atomically by header and the index of which each
    rank holds a slice from entry first on, as consecutive byte pieces."""
    head = fmt.encode_head2(header, header.geometry.n_blocks, _index_checksum(comm, pieces))
    temporary = _write_slices(comm, path, head, first, pieces, hints)
    _put_in_place(comm, temporary, path)
