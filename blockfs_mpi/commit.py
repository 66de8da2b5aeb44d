"""Turning the writers' entries into a committed directory file, atomically.

A reader sees the old directory file or the new one, never half of one:
the new one is written under a temporary name in the same folder, fsynced,
renamed over the old name, and the folder is fsynced. Under MPI the index is
built and written in slices, one per rank, so that no rank needs memory for
the whole job's entries.
"""
import contextlib
import os
import secrets
import tempfile

import numpy as np

from . import format as fmt
from .errors import DuplicateBlockError, WriterError, brief
from .format import WRITTEN
from .parallel import agree, everywhere, idle_barrier, route

DUPLICATES_NAMED = 10  # blocks a DuplicateBlockError names; it counts all of them


def _temporary_parts(path):
    """(folder, prefix, suffix) of the names of path's next versions: `.<name>.<random>.commit`
    beside it."""
    return os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.", ".commit"


def temporary_name(path):
    """A name for the next version of path, as temporary_beside makes them, that no file is
    likely to have (the caller creates it exclusively)."""
    folder, prefix, suffix = _temporary_parts(path)
    return os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")


def temporary_beside(path):
    """(descriptor, name) of a new, empty file in path's folder, readable by all, whose name
    no other commit uses: where the next version of path is written."""
    folder, prefix, suffix = _temporary_parts(path)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.fchmod(fd, 0o644)
    return fd, temporary


def replace_durably(temporary, path, durable=True):
    """Rename a written, fsynced temporary file over path, then fsync the folder so that the
    rename itself survives a crash (unless durable=False)."""
    os.replace(temporary, path)
    if not durable:
        return
    folder_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


@contextlib.contextmanager
def atomic_file(path, durable=True):
    """A descriptor open for writing whose file replaces path only if the block succeeds.

    Lets large files (a streamed index) be written in pieces with the same guarantee
    as write_atomically: no reader ever sees a partial file. The file and its folder are
    fsynced unless durable=False (still atomic, not crash-safe): on ext4 an fsync, however
    small the file, waits for the journal, which first writes out every data block
    allocated meanwhile.
    """
    fd, temporary = temporary_beside(path)
    try:
        yield fd
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = None
    except BaseException:
        if fd is not None:
            os.close(fd)
        os.unlink(temporary)
        raise
    replace_durably(temporary, path, durable)


def write_atomically(path, *parts):
    """Replace the file at path with the bytes-like parts, one after the other, so that no
    reader ever sees a partial file."""
    with atomic_file(path) as fd:
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                view = view[os.write(fd, view):]


def build_index(geometry, written, base=None, writer_kind="data file", newest_wins=False,
                span=None):
    """A dense format 2 index from WRITTEN rows, on top of a base index.

    Within one data file the newest frame of a block wins. A block in the rows
    of two different files is an error naming the block and both writers,
    unless newest_wins (rebuilding from frames: then the newest frame wins).
    span=(first, end) builds only the entries of blocks first..end-1 (a rank's
    slice in a distributed commit), from rows of those blocks only.
    Works through a sort permutation, never a sorted copy of the rows.
    """
    first, end = span or (0, geometry.n_blocks)
    index = fmt.empty_index(end - first) if base is None else base.copy()
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
    blocks, order = blocks[newest] - first, order[newest]
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
    for block in twice[:DUPLICATES_NAMED]:
        writers = sorted(set(files[blocks == block].tolist()))
        x, y, z = geometry.block_origin(block)
        problems.append(f"block {block} at (x={x}, y={y}, z={z}) by "
                        + " and ".join(f"{writer_kind} {w}" for w in writers))
    raise duplicate_error(len(twice), problems)


def duplicate_error(count, problems):
    """The DuplicateBlockError for `count` blocks written twice, naming the first few."""
    problems = problems[:DUPLICATES_NAMED]
    more = f" and {count - len(problems)} more" if count > len(problems) else ""
    return DuplicateBlockError(f"{count} block(s) written by more than one writer: "
                               + "; ".join(problems) + more, count, problems)


def commit(path, header, written, base=None, writer_kind="data file"):
    """Build the index from WRITTEN rows and replace the directory file atomically."""
    index = build_index(header.geometry, written, base, writer_kind)
    write_atomically(path, *fmt.directory2_parts(header, index))
    return index


def recovered_index(geometry, recovered):
    """The index that frames found in data files describe (newest frame of each block)."""
    return build_index(geometry, recovered, newest_wins=True)


# ------------------------------------------------------------ under MPI --

CREATE_ATTEMPTS = 8  # names tried for a commit's temporary file before giving up
PIECE_BYTES = 1 << 30  # most bytes of a slice in one collective write (MPI counts are ints)
EMPTY_CHUNK = 1 << 16  # entries of the chunk an empty slice repeats (1 MiB, as format's)


def index_spans(n_blocks, size):
    """Where each rank's slice of the index starts: rank r builds and writes entries
    spans[r] to spans[r + 1] - 1 in a distributed commit."""
    return np.array([n_blocks * r // size for r in range(size + 1)], np.uint64)


def route_rows(comm, rows, spans):
    """Send every WRITTEN row to the rank whose slice of the index holds its block; the rows
    this rank receives."""
    rows = np.asarray(rows, WRITTEN)
    owners = np.searchsorted(spans[1:-1], rows["block"], side="right")  # past the end: last
    return route(comm, rows, owners)


def slices_checksum(comm, crc, length):
    """CRC-32C of the whole index from each rank's CRC-32C of its slice and the slice's
    length in bytes, combined in rank order on every rank (one allgather; nobody reads
    another's slice)."""
    whole = 0
    for slice_crc, slice_length in comm.allgather((crc, length)):
        whole = fmt.crc32c_combine(whole, slice_crc, slice_length)
    return whole


def _index_checksum(comm, pieces):
    """slices_checksum of this rank's slice, held as pieces in order."""
    mine, length = 0, 0
    for piece in pieces:
        mine, length = fmt.crc32c(piece, mine), length + len(piece)
    return slices_checksum(comm, mine, length)


def _create_beside(comm, path, hints):
    """(MPI file handle, name) of a new file beside path, readable by all, created and opened
    for writing by every rank of comm at once with the striping hints (Lustre applies them
    only at creation). Rank 0 names it like temporary_beside; MODE_EXCL keeps it from being
    another commit's, and a name that is taken is replaced by another, by every rank. Raises
    on every rank, naming the file and the ranks, if it cannot be made; then none is left."""
    from mpi4py import MPI
    rank = comm.Get_rank()
    info = MPI.Info.Create()
    info.Set("romio_ds_write", "disable")  # nothing read back; hints from the volume as given
    for key, value in (hints or {}).items():
        info.Set(key, str(value))
    try:
        for _ in range(CREATE_ATTEMPTS):
            temporary = comm.bcast(temporary_name(path) if rank == 0 else None, root=0)
            handle, error, taken = None, None, False
            try:
                handle = MPI.File.Open(comm, temporary,
                                       MPI.MODE_WRONLY | MPI.MODE_CREATE | MPI.MODE_EXCL, info)
            except MPI.Exception as e:
                taken = e.Get_error_class() == MPI.ERR_FILE_EXISTS
                error = f"rank {rank}: cannot create {temporary}: {brief(e)}"
            outcomes = comm.allgather((error, taken))
            taken = any(taken for _, taken in outcomes)  # said by the rank that creates it
            if taken and all(error for error, _ in outcomes):
                continue  # another file has that name: try another
            if handle is not None and rank == 0:
                try:
                    os.chmod(temporary, 0o644)  # as mkstemp's files are made by temporary_beside
                except OSError as e:
                    error = f"rank 0: cannot make {temporary} readable: {e}"
            errors = agree(comm, error)
            if not errors:
                return handle, temporary
            if all(error is None for error, _ in outcomes):  # opened everywhere: close it
                handle.Close()
            if rank == 0 and not taken:  # then it is none or this commit's
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    os.unlink(temporary)
            raise everywhere(WriterError(f"{path} not committed, " + "; ".join(errors)))
    finally:
        info.Free()
    raise everywhere(WriterError(
        f"{path} not committed, rank 0: cannot create a file beside it: {CREATE_ATTEMPTS} "
        f"names were taken, the last {temporary}"))


def _write_rounds(comm, handle, pieces):
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


def _write_slices(comm, path, head, first, pieces, hints=None):
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
    errors = []
    for action, what in ((lambda: _write_rounds(comm, handle, placed), "write"),
                         (lambda: handle.Sync(), "fsync")):
        error = None
        try:
            failure = action()
            if failure is not None:
                raise failure
        except MPI.Exception as e:
            error = f"rank {rank}: cannot {what} {temporary}: {brief(e)}"
        errors = agree(comm, error)
        if errors:
            break
    handle.Close()
    if errors:
        if rank == 0:
            os.unlink(temporary)
        raise everywhere(WriterError(f"{path} not committed, " + "; ".join(errors)))
    return temporary


def _put_in_place(comm, temporary, path):
    """Rank 0 renames the written directory file over path and fsyncs the folder; every rank
    learns whether that worked."""
    error = None
    if comm.Get_rank() == 0:
        try:
            replace_durably(temporary, path)
        except OSError as e:
            error = f"rank 0: commit of {path} failed: {e}"
    error = comm.bcast(error, root=0)
    if error:
        raise everywhere(WriterError(error))


def collective_commit(comm, path, header, rows, local_error=None, recovered=None, hints=None):
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
    idle_barrier(comm)
    failed = agree(comm, f"rank {rank}: {local_error}" if local_error else None)
    if failed:
        raise everywhere(WriterError(f"{path} not committed, " + "; ".join(failed)))
    geometry = header.geometry
    spans = index_spans(geometry.n_blocks, comm.Get_size())
    span = int(spans[rank]), int(spans[rank + 1])
    new_rows = route_rows(comm, rows, spans)
    old_rows = route_rows(comm, np.zeros(0, WRITTEN) if recovered is None else recovered, spans)
    index, error = None, None
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
        raise everywhere(WriterError(f"{path} not committed, " + "; ".join(errors)))
    commit_slices(comm, path, header, span[0], index, hints)


def commit_slices(comm, path, header, first, index, hints=None):
    """Replace the directory file at path atomically by header and the index of which each
    rank holds a slice (its entries of blocks first, first + 1, ...), written in place
    collectively into a new file made with the MPI-IO hints."""
    index_bytes = index.view(np.uint8)
    _commit_pieces(comm, path, header, first,
                   [index_bytes[start:start + PIECE_BYTES]
                    for start in range(0, len(index_bytes), PIECE_BYTES)], hints)


def commit_empty_slices(comm, path, header, hints=None):
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


def _commit_pieces(comm, path, header, first, pieces, hints):
    """Replace the directory file at path atomically by header and the index of which each
    rank holds a slice from entry first on, as consecutive byte pieces."""
    head = fmt.encode_head2(header, header.geometry.n_blocks, _index_checksum(comm, pieces))
    temporary = _write_slices(comm, path, head, first, pieces, hints)
    _put_in_place(comm, temporary, path)
