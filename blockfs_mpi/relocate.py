"""Moving or copying a volume to another place, in parallel, safely (the library of
blockfs-mv and blockfs-cp, and of blockfs-downsample --output).

The data files (or byte ranges of large ones) are split across MPI ranks and
copied by the kernel (copy_file_range, else sendfile, else read/write). The
directory file is written last, atomically, by rank 0, once every rank has
reported success: until then the destination has no directory file and is
clearly incomplete, and the source is only removed (mv) after that. A move
within one filesystem hard-links the data files instead of copying them.
"""
import errno
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from . import format as fmt
from . import index, parallel
from .data_files import check_data_files, write_directory
from .errors import BlockfsError
from .lock import volume_locks
from .progress import Progress
from .reader import BlockReader, read_header, resolve_data_file

if TYPE_CHECKING:
    from mpi4py import MPI

Result = TypeVar("Result")
Piece = tuple[int, int, int]  # (data file number, offset, length)

PIECE = 64 << 20  # bytes: the unit of work split across ranks
MAX_COPY_THREADS = 4  # copy streams per rank; more rarely helps one client
# A written block to verify: its index entry, sent to the rank whose share of the data holds it.
TO_VERIFY = np.dtype([("block", "<u8"), ("offset", "<u8"), ("size", "<u4"), ("file", "<u4")])
# copy_file_range / sendfile cannot do this pair of files: try the next way.
NOT_SUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP}


class RelocateError(BlockfsError):
    """A move or copy was refused or failed; the message names the file or rank at fault."""


@dataclass
class Plan:
    """What to copy where, decided by rank 0 and sent to every rank."""

    source: str  # directory file
    target: str  # directory file in the destination
    header: fmt.Header
    sources: list[str]  # data files
    targets: list[str]
    names: list[str]  # data file names in the new directory file (format 1: absolute, since
    # the original blockfs opens them from its working directory)
    sizes: list[int]
    same_filesystem: bool

    @property
    def folder(self) -> str:
        """The destination folder (created by make_folder if missing)."""
        return os.path.dirname(self.target)


def split_destination(source: str,
                      dest: "str | os.PathLike[str]") -> tuple[str, str, bool]:
    """(folder, new directory file, named) for dest: a name ending in .blockfs that is not a
    folder names the new directory file (named=True); anything else is the folder the volume
    goes into under its own name."""
    path = os.path.abspath(dest)
    if str(dest).endswith(".blockfs") and not os.path.isdir(path):
        return os.path.dirname(path), path, True
    return path, os.path.join(path, os.path.basename(source)), False


def refuse_inside(source: str, own: list[str], folder: str) -> None:
    """Refuse a destination folder that is, or lies inside, one of the source volume's own
    files (own: its directory file and data files)."""
    real_folder = os.path.realpath(folder)
    for path in own:
        real = os.path.realpath(path)
        if real_folder == real or real_folder.startswith(real + os.sep):
            raise RelocateError(f"{folder} is inside {path}, a file of the source volume "
                                f"{source}: choose a folder that is not one of its files")


def refuse_overwrite(source: str, own: list[str], new_files: list[str]) -> None:
    """Refuse new files (directory file, data files) that would overwrite or alias one of the
    source volume's own files, also through links."""
    for new in new_files:
        for path in own:
            if os.path.exists(new) and os.path.samefile(path, new):
                alias = "" if os.path.abspath(new) == path else f" (the same file as {path})"
                raise RelocateError(f"{new}{alias} is a file of the source volume {source}: "
                                    f"the destination would overwrite it; choose another one")


def make_plan(src: "str | os.PathLike[str]", dest: "str | os.PathLike[str]",
              force: bool) -> Plan:
    """Check the request and the source volume and decide what goes where; changes nothing
    (make_folder creates the destination folder). Raises on any bad input.

    dest is a folder (the volume keeps its file names) or, ending in .blockfs, the new
    directory file, whose data files are then named after it (<name>.0, <name>.1 ...). Only
    the last folder may be missing. A volume is its files, not its folder: a destination
    beside the source or inside its folder is fine, one that would overwrite the source's own
    files or lie inside one of them is refused.
    """
    source = os.path.abspath(src)
    header = read_header(source)
    folder, target, named = split_destination(source, dest)
    sources = [resolve_data_file(source, name, header.version) for name in header.data_files]
    refuse_inside(source, [source, *sources], folder)
    parent = os.path.dirname(folder)
    if not os.path.isdir(parent):
        raise RelocateError(f"{folder}: parent folder {parent} does not exist")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise RelocateError(f"{folder} exists and is not a folder")
    if named:
        targets = [f"{target}.{number}" for number in range(len(sources))]
    else:
        basenames = [os.path.basename(name) for name in header.data_files]
        if len(set(basenames)) < len(basenames):
            raise RelocateError(f"{source}: two data files have the same name: {basenames}; "
                                f"name the new directory file (<dest>/<name>.blockfs) instead")
        targets = [os.path.join(folder, name) for name in basenames]
    check_data_files(source, header, sources)
    refuse_overwrite(source, [source, *sources], [target, *targets])
    if os.path.exists(target) and not force:
        raise RelocateError(f"{target} already exists: use --overwrite to replace that volume")
    # A missing folder will be made in its parent, on the parent's filesystem.
    device = os.stat(folder if os.path.isdir(folder) else parent).st_dev
    return Plan(source, target, header, sources, targets,
                [os.path.basename(t) for t in targets] if header.relative_data_files else targets,
                [os.stat(path).st_size for path in sources],
                all(os.stat(path).st_dev == device for path in [source, *sources]))


def make_folder(plan: Plan) -> None:
    """Create the destination folder if it is missing (its parent exists: make_plan)."""
    if not os.path.isdir(plan.folder):
        os.mkdir(plan.folder)


def clear_target(plan: Plan) -> None:
    """--force: the volume at the destination is gone before its files are replaced."""
    if os.path.exists(plan.target):
        os.unlink(plan.target)


def on_rank0_shared(comm: "MPI.Comm | None", task: Callable[[], Result]) -> Result:
    """parallel.from_rank0 with relocate's error: task runs on rank 0, every rank returns
    its result or raises its failure as a RelocateError."""
    return parallel.from_rank0(comm, task, RelocateError)


def on_every_rank_asleep(comm: "MPI.Comm | None", task: Callable[[], object]) -> None:
    """Run task on every rank, the ranks done early waiting asleep for the others (copies
    leave them their cores); if any fails, every rank raises one RelocateError listing each
    failed rank's error (unlike parallel.on_every_rank, which says a shared message once)."""
    try:
        task()
        error = None
    except Exception as e:
        error = f"rank {parallel.rank_of(comm)}: {e}"
    parallel.idle_barrier(comm)  # ranks done early leave their cores to those still working
    errors = parallel.agree(comm, error)
    if errors:
        raise parallel.everywhere(RelocateError("; ".join(errors)))


def copy_range(source_fd: int, target_fd: int, offset: int, length: int) -> None:
    """Copy length bytes at offset to the same offset of another file, in the kernel where it
    can."""
    def kernel_copy(n: int) -> int:
        return os.copy_file_range(source_fd, target_fd, n, offset, offset)

    def send(n: int) -> int:
        os.lseek(target_fd, offset, os.SEEK_SET)
        return os.sendfile(target_fd, source_fd, offset, n)

    def read_write(n: int) -> int:
        return os.pwrite(target_fd, os.pread(source_fd, min(n, 8 << 20), offset), offset)

    end = offset + length
    ways = [kernel_copy, send, read_write]
    while offset < end:
        try:
            copied = ways[0](end - offset)
        except OSError as e:
            if e.errno not in NOT_SUPPORTED or len(ways) == 1:
                raise
            ways.pop(0)
            continue
        if copied == 0:
            raise RelocateError(f"source ended at byte {offset}, {end} expected")
        offset += copied


def share(sizes: list[int], n_ranks: int, rank: int) -> list[Piece]:
    """This rank's (file number, offset, length) pieces of up to PIECE bytes: the ranks take
    runs of about equal bytes in file order, a piece the rank whose run its first byte is in.
    Computed from the files' sizes alone: no rank lists the whole job's pieces (1.5 * 10^6
    of them for 100 TB)."""
    total = max(1, sum(sizes))
    low = -(-rank * total // n_ranks)  # the first piece start that is this rank's
    high = -(-(rank + 1) * total // n_ranks) if rank < n_ranks - 1 else None
    mine: list[Piece] = []
    start = 0
    for number, size in enumerate(sizes):
        first = -(-max(0, low - start) // PIECE) * PIECE
        end = size if high is None else min(size, high - start)
        mine.extend((number, offset, min(PIECE, size - offset))
                    for offset in range(first, end, PIECE))
        start += size
    return mine


def piece_count(sizes: list[int]) -> int:
    """How many pieces the whole copy is."""
    return sum(-(-size // PIECE) for size in sizes)


def share_owners(sizes: list[int], n_ranks: int, files: npt.NDArray[np.integer],
                 offsets: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
    """The rank whose share (as share deals them) holds byte offsets[i] of data file files[i]
    (arrays; a file number past the volume's is rank 0's)."""
    starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    known = files < len(sizes)
    offsets = offsets.astype(np.int64)
    done = np.where(known, starts[np.where(known, files, 0)] + offsets - offsets % PIECE, 0)
    # int64 throughout (starts, offsets); numpy types a ufunc of a scalar and an array Any
    owners: npt.NDArray[np.int64] = np.minimum(n_ranks - 1, done * n_ranks // max(1, sum(sizes)))
    return owners


def link_files(plan: Plan) -> bool:
    """Hard-link the data files into the destination; False if this filesystem cannot."""
    for source, target in zip(plan.sources, plan.targets):
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.link(source, target)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
            parallel.log.warning("cannot hard-link %s (%s): copying instead", source, e)
            return False
    return True


def prepare_targets(plan: Plan) -> None:
    """Fresh empty data files in the destination (never truncating a file a link may share)."""
    for target in plan.targets:
        if os.path.lexists(target):
            os.unlink(target)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def copy_threads(comm: "MPI.Comm | None") -> int:
    """Copy streams per rank: the cores this rank may use, shared with the ranks on its node,
    at most MAX_COPY_THREADS. Collective."""
    cores = parallel.usable_cores()
    ranks_here = 1
    if comm is not None:
        from mpi4py import MPI
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        ranks_here = node.Get_size()
        node.Free()
    return max(1, min(MAX_COPY_THREADS, cores // ranks_here))


def copy_piece(plan: Plan, number: int, offset: int, length: int) -> int:
    """Copy one piece of data file `number`, on descriptors of its own (safe in any thread)."""
    source, target = plan.sources[number], plan.targets[number]
    try:
        with open(source, "rb", buffering=0) as src, open(target, "r+b", buffering=0) as dst:
            copy_range(src.fileno(), dst.fileno(), offset, length)
    except OSError as e:
        raise RelocateError(f"copying {source} to {target}: {e.strerror or e}") from None
    return length


def across_files(pieces: Iterable[Piece]) -> list[Piece]:
    """Pieces ordered so that consecutive ones, which the threads copy at the same time, are of
    different files where there are several: buffered writes to one file take its inode lock
    (ext4, XFS), so two threads in one file copy no faster than one, and here slower."""
    return sorted(pieces, key=lambda piece: (piece[1], piece[0]))  # (offset, file number)


def copy_share(plan: Plan, comm: "MPI.Comm | None", fsync: bool = True,
               threads: int | None = None, silent: bool = False) -> None:
    """Copy this rank's pieces on `threads` streams (None: copy_threads) and, with fsync, push
    what it wrote to disk. Collective (the progress bar)."""
    n_ranks = parallel.size_of(comm)
    mine = across_files(share(plan.sizes, n_ranks, parallel.rank_of(comm)))
    n_pieces = piece_count(plan.sizes)
    threads = threads or copy_threads(comm)
    if parallel.rank_of(comm) == 0:
        parallel.log.info("copying %d piece(s) of up to %d MiB on %d rank(s), %d thread(s) on "
                          "rank 0", n_pieces, PIECE >> 20, n_ranks, threads)
    progress = Progress(comm, n_pieces, "copy", unit="piece", disable=silent)
    try:
        with ThreadPoolExecutor(threads, thread_name_prefix="copy") as pool:
            copies = [pool.submit(copy_piece, plan, *piece) for piece in mine]
            try:
                for copy in as_completed(copies):
                    progress.update(1, copy.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        if fsync:
            for number in sorted({number for number, _, _ in mine}):
                with open(plan.targets[number], "r+b", buffering=0) as target:
                    os.fsync(target.fileno())
    finally:
        progress.close()


def index_share(plan: Plan, comm: "MPI.Comm | None") -> npt.NDArray[np.void]:
    """The written blocks (TO_VERIFY rows) of this rank's slice of the index, read in runs."""
    rank, size, n_blocks = parallel.rank_of(comm), parallel.size_of(comm), plan.header.n_entries
    found = [np.empty(0, TO_VERIFY)]
    span = (n_blocks * rank // size, n_blocks * (rank + 1) // size)
    for first, entries in index.entry_runs(plan.source, plan.header, span=span):
        written = np.flatnonzero(~fmt.is_missing(entries))
        rows = np.empty(len(written), TO_VERIFY)
        rows["block"] = first + written
        for field in ("offset", "size", "file"):
            rows[field] = entries[field][written]
        found.append(rows)
    return np.concatenate(found)


def verify_frames(plan: Plan, comm: "MPI.Comm | None",
                  rows: npt.NDArray[np.void] | None = None) -> None:
    """Read every block of the copy back and check its format 2 frame and checksum.

    Collective. Each rank checks the frames that start in its share of the data (share), in
    file order, so it opens only the data files of its share, not all of them: it reads its
    slice of the index (rows: index_share's, read beforehand so that a rank failing to read it
    fails before the exchange) and sends each entry to the rank that checks it."""
    if rows is None:
        rows = index_share(plan, comm)
    frames = rows["offset"].astype(np.int64) - plan.header.frame_size
    rows = parallel.route(comm, rows, share_owners(plan.sizes, parallel.size_of(comm), rows["file"],
                                          np.maximum(frames, 0)))
    rows.sort(order=["file", "offset"])
    reader = BlockReader(plan.source, plan.header, plan.targets)
    try:
        for block, offset, size, file_number in rows.tolist():
            reader.payload_at(block, file_number, offset, size, reuse=True)
    finally:
        reader.close()


def finish(plan: Plan, move: bool, fsync: bool = True) -> None:
    """Check the copy's sizes, write its directory file (without fsync when the data had
    none either); for a move, then remove the source."""
    for target, size in zip(plan.targets, plan.sizes):
        copied = os.stat(target).st_size
        if copied != size:
            raise RelocateError(f"{target} is {copied} bytes, its source {size}: not committed")
    write_directory(plan.source, plan.target, plan.header, plan.names, durable=fsync)
    if move:
        for path in [plan.source, *plan.sources]:  # the directory file first: never a volume
            os.unlink(path)                       # whose data files are gone


def relocate(src: "str | os.PathLike[str]", dest: "str | os.PathLike[str]", move: bool,
             force: bool = False, comm: "MPI.Comm | None" = None, fsync: bool = True,
             threads: int | None = None, silent: bool = False, break_lock: bool = False) -> str:
    """Move (move=True) or copy the volume whose directory file is src to dest: a folder, or
    a new directory file name ending in .blockfs (see make_plan).

    Collective over comm (None: this process alone). Returns the new directory file's path.
    fsync=False leaves a copy's data to the kernel's write-back (never for a move, which
    removes the source only once the copy is on disk). threads: copy streams per rank
    (None: copy_threads). silent: no progress bar. The destination (and a move's source) is
    locked meanwhile, as by every program that changes a volume (break_lock: see lock.py).
    """
    if move and not fsync:
        raise ValueError("a move always fsyncs its copy before it removes the source")
    plan = on_rank0_shared(comm, lambda: make_plan(src, dest, force))
    on_rank0_shared(comm, lambda: make_folder(plan))  # before the lock: its file goes there
    with volume_locks([plan.source, plan.target] if move else [plan.target], comm, break_lock):
        on_rank0_shared(comm, lambda: clear_target(plan))
        linked = move and plan.same_filesystem and on_rank0_shared(
            comm, lambda: link_files(plan))
        if not linked:
            on_rank0_shared(comm, lambda: prepare_targets(plan))
            on_every_rank_asleep(comm, lambda: copy_share(plan, comm, fsync, threads, silent))
            if move and plan.header.has_frames:
                rows: list[npt.NDArray[np.void]] = []
                on_every_rank_asleep(comm, lambda: rows.append(index_share(plan, comm)))
                on_every_rank_asleep(comm, lambda: verify_frames(plan, comm, rows[0]))
        on_rank0_shared(comm, lambda: finish(plan, move, fsync))
    return plan.target
