"""What the export programs (blockfs2tif, blockfs2jp2k, blockfs2hdf) share.

Every export stays within a memory budget per rank (--memory, default 1G) for
any plane size. Plane exporters write a group of planes of one z-slab at a
time, by stripes of whole block rows: each plane has a thread of its own fed
its strips, so a rank holds a few stripes of its group, never a whole slab.
When a block row of the whole slab does not fit the budget, or there are
more ranks than slabs, a slab is split into several groups (each reads the
slab's blocks again: decoding traded for memory and for work for every
rank). Groups are dealt out on demand (a rank that finishes one takes the
next). blockfs2hdf cuts the volume into pieces one block deep and one block
row high, as many blocks wide as the budget allows (`Pieces`); its collective
writes need every rank in each call, so there pieces go round-robin and
`rounds` pads the shares to the same length.

Plane exporters never leave a partial plane under its final name: each plane
is written under a hidden temporary name beside it and renamed when complete,
so a plane under its final name is complete, and `--resume` can skip it.
"""
import contextlib
import logging
import multiprocessing
import os
import queue
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from . import parallel
from .convert import amount, rate
from .dealer import Dealer
from .directory import Directory
from .errors import BlockfsError
from .geometry import Geometry
from .options import number_in_range
from .progress import Progress

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("blockfs_mpi")

Work = Callable[[int], Iterable[tuple[int, int]]]  # work(i) of run(): yields (items, bytes)
Piece = tuple[int, int, int, int, int, int]  # (z0, z1, y0, y1, x0, x1), of Pieces
Strip = npt.NDArray[Any]  # rows of one plane, as PlaneStripes feeds a plane writer
# write_plane(path, strips, (ny, nx), dtype, rows) of PlaneStripes: one plane from its strips
WritePlane = Callable[[str, Iterator[Strip], tuple[int, int], np.dtype[Any], int], None]


def check_pattern(pattern: str) -> str:
    """Return pattern if it formats a z index into a file name (`out/img_%04d.tif`), else raise."""
    try:
        names = {pattern % 0, pattern % 1}
    except (TypeError, ValueError) as e:
        raise ValueError(f"output pattern {pattern!r} needs exactly one %d-style field for the "
                         f"z index, e.g. out/img_%04d.tiff ({e})") from None
    if len(names) != 2:
        raise ValueError(f"output pattern {pattern!r} has no %d-style field for the z index, "
                         f"e.g. out/img_%04d.tiff")
    return pattern


class PlanePattern(str):
    """An output pattern whose planes are numbered from `first`: pattern % z names plane z
    with the number z + first (blockfs2tif --start), everywhere a plain pattern is used."""

    first: int

    def __new__(cls, pattern: str, first: int = 0) -> "PlanePattern":
        named = super().__new__(cls, pattern)
        named.first = first
        return named

    def __mod__(self, z: int) -> str:
        return str.__mod__(self, z + self.first)

    def __reduce__(self) -> tuple[type["PlanePattern"], tuple[str, int]]:  # for the workers
        return PlanePattern, (str(self), self.first)


def plane_path(pattern: str, z: int) -> str:
    """The file name of plane z, its folder created if missing."""
    path = pattern % z
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create output folder {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"output folder {folder} is not writable")
    return path


def open_volume(path: str, comm: "MPI.Comm | None") -> Directory:
    """Directory.open(path) on every rank; a volume that cannot be opened is reported once."""
    return parallel.on_every_rank(comm, lambda: Directory.open(path), BlockfsError)


def check_workers(value: str | None) -> int | None:
    """--n-workers as a number, or None when not given (one per core)."""
    return number_in_range("--n-workers", value, 1, 4096) if value else None


def rounds(n_items: int, comm: "MPI.Comm | None") -> list[int | None]:
    """This rank's item per round (None when it has none); the same length on every rank."""
    rank, size = parallel.rank_of(comm), parallel.size_of(comm)
    count = -(-n_items // size)
    return [i if i < n_items else None for i in range(rank, count * size, size)]


def run(work: Work, n_items: int, total: int, comm: "MPI.Comm | None" = None,
        n_workers: int | None = None, desc: str = "export", unit: str = "plane",
        silent: bool = False) -> tuple[int, int, float]:
    """Do work(i) for every i in range(n_items), with one progress bar for the job.

    work(i) is a generator yielding (items, bytes) as it goes, counted towards
    `total`. Without MPI, n_workers > 1 spreads the items over local worker
    processes (work must then be picklable; default: one per core); under MPI the
    ranks are the workers, each taking the next item as it finishes one (Dealer).
    Returns (items, bytes, seconds) of the whole job (collective).
    """
    if comm is None:
        n_workers = min(n_workers or parallel.usable_cores(), n_items)
        if n_workers > 1:
            return _run_in_processes(work, range(n_items), n_workers, total, desc, unit, silent)
    elif n_workers:
        log.info("under mpiexec every rank is one worker; --n-workers is not used")
    progress = Progress(comm, total, desc, unit=unit, disable=silent)
    with Dealer(n_items, comm) as dealt:
        for i in dealt:
            for items, nbytes in work(i):
                progress.update(items, nbytes)
    return progress.close()


def _run_in_processes(work: Work, items: Iterable[int], n_workers: int, total: int, desc: str,
                      unit: str, silent: bool) -> tuple[int, int, float]:
    """run() over local worker processes. The workers are forked before the progress bar
    starts its monitor thread, a worker's error cancels the work not yet started, and a
    worker that dies (the OOM killer) ends the job with BrokenProcessPool instead of a hang."""
    with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_drain, work, i) for i in items]
        progress = Progress(None, total, desc, unit=unit, disable=silent)
        try:
            for future in as_completed(futures):
                progress.update(*future.result())
        finally:  # after an error, the work not yet started is dropped
            pool.shutdown(cancel_futures=True)
            totals = progress.close()
    return totals


def _drain(work: Work, item: int) -> tuple[int, int]:
    """work(item) run to the end in a worker process; its total (items, bytes)."""
    items = nbytes = 0
    for done, size in work(item):
        items += done
        nbytes += size
    return items, nbytes


def report(comm: "MPI.Comm | None", what: str, unit: str, items: int, nbytes: int,
           seconds: float) -> None:
    """Log the job's totals on rank 0."""
    if parallel.rank_of(comm) == 0 and not items:
        log.info("%s: no %s left to write (%.1f s)", what, unit, seconds)
    elif parallel.rank_of(comm) == 0:
        log.info("%s: %d %ss, %s in %.2f s (%s) on %d rank(s)", what, items, unit,
                 amount(nbytes), seconds, rate(nbytes, seconds), parallel.size_of(comm))


PARTIAL = ".partial-"  # in the temporary name of an output plane: .<name>.partial-<pid><ext>


def partial_path(path: str) -> str:
    """The temporary name of output path while it is being written: hidden (globs such as
    img_*.tif do not match it), in the same folder (the rename cannot cross file systems),
    unique to this process, and ending in path's extension (glymur picks its format by it)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{PARTIAL}{os.getpid()}{os.path.splitext(name)[1]}")


def partial_of(entry: str) -> str | None:
    """The final name a temporary name from partial_path() stands for, else None."""
    if not entry.startswith(".") or PARTIAL not in entry:
        return None
    name, rest = entry[1:].rsplit(PARTIAL, 1)
    suffix = os.path.splitext(name)[1]
    pid = rest[:len(rest) - len(suffix)]
    return name if rest.endswith(suffix) and pid.isdigit() else None


def write_atomically(path: str, write: Callable[[str], object]) -> None:
    """write(temporary) then rename it to path: a file under its final name is always
    complete. The temporary file is removed when write fails or is interrupted."""
    temporary = partial_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def existing_outputs(pattern: str, n: int) -> tuple[list[int], list[str]]:
    """([z of every plane whose final name exists], [temporary files left by an interrupted
    run]) among the n planes of pattern, with one listing per output folder."""
    folders: dict[str, dict[str, int]] = {}
    for z in range(n):
        folder, name = os.path.split(pattern % z)
        folders.setdefault(folder, {})[name] = z
    done, leftovers = [], []
    for folder, names in folders.items():
        try:
            entries = os.listdir(folder or ".")
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry in names:
                done.append(names[entry])
            elif partial_of(entry) in names:
                leftovers.append(os.path.join(folder, entry))
    return sorted(done), leftovers


def check_outputs(pattern: str, n: int, overwrite: bool = False,
                  resume: bool = False) -> frozenset[int]:
    """The planes to leave out (the existing ones with resume, else none), or a BlockfsError
    naming the first existing output when neither overwrite nor resume allows them.
    Temporary files an interrupted run left behind are removed."""
    if overwrite and resume:
        raise BlockfsError("--overwrite and --resume exclude each other")
    done, leftovers = existing_outputs(pattern, n)
    if done and not (overwrite or resume):
        raise BlockfsError(f"{len(done)} of the {n} output planes exist already, the first "
                           f"{pattern % done[0]}: use --overwrite to replace them or --resume "
                           f"to write only the missing ones")
    for path in leftovers:
        os.unlink(path)
    if leftovers:
        log.info("removed %d temporary file(s) left by an interrupted run, e.g. %s",
                 len(leftovers), leftovers[0])
    if resume:
        log.info("--resume: %d of the %d planes exist already and are kept; writing %d",
                 len(done), n, n - len(done))
        return frozenset(done)
    return frozenset()


DEFAULT_MEMORY = "1G"  # --memory of every export, as blockfs-write's
STRIPE_COPIES = 6  # a stripe being read, one queued, one being encoded, its output, temporaries


def memory_option(text: str | None) -> int:
    """--memory as bytes (DEFAULT_MEMORY when not given), parsed as blockfs-write parses it."""
    from .write import parse_size  # the one parser of sizes; imported here, not at start-up
    return parse_size(text or DEFAULT_MEMORY)


class PlaneStripes:
    """work(i) of the plane exporters: write group i -- planes of one z-slab -- by stripes.

    Every plane of the group is written at once, one thread per plane, fed its strips of
    `rows` rows (whole block rows) through a queue of depth one: a rank holds about
    STRIPE_COPIES (`copies`) stripes of its group, group planes x rows x X voxels each,
    within `memory`. write_plane(path, strips, shape, dtype, rows) writes one plane from an
    iterator of its strips (picklable). `done` holds the planes not to write (--resume); a
    slab with none left is not read at all. `ranks`: groups are made small enough that
    every rank has one, where the volume has fewer slabs than that.
    """

    def __init__(self, directory: Directory, pattern: str, write_plane: WritePlane, memory: int,
                 copies: int = STRIPE_COPIES, ranks: int = 1, rows: int | None = None,
                 done: Container[int] = frozenset()) -> None:
        self.directory = directory
        self.pattern = pattern
        self.write_plane = write_plane
        _, ny, nx = directory.shape
        yb = min(directory.geometry.y_block_size, ny)
        row = nx * directory.dtype.itemsize * copies  # budget taken by one row of one plane
        fit = memory // (yb * row)  # planes one block row high within the budget
        if fit < 1:
            raise parallel.everywhere(BlockfsError(
                f"--memory {memory / 2 ** 20:.0f} MiB is too small for planes "
                               f"{nx} voxels wide: a block row ({yb} rows) of one plane takes "
                               f"{copies} x {yb * row // copies / 2 ** 20:.1f} MiB; give at "
                f"least {-(-yb * row // 2 ** 20)}M"))
        todo = [z for z in range(directory.shape[0]) if z not in done]
        deepest = directory.geometry.z_block_size
        share = -(-len(todo) // ranks) if todo else 1
        self.depth = max(1, min(fit, deepest, share))  # planes in a group, at most
        self.groups = list(plane_groups(todo, deepest, self.depth))
        most = max([len(g) for g in self.groups], default=1)
        self.rows = min(ny, yb * max(1, memory // (most * yb * row)))
        if rows:  # a cap (blockfs2tif --y-stripe), in whole block rows
            self.rows = min(self.rows, -(-rows // yb) * yb)

    def planes(self) -> int:
        """How many planes the job writes."""
        return sum(map(len, self.groups))

    def __len__(self) -> int:
        return len(self.groups)

    def _write(self, z: int, feed: "queue.Queue[Strip | None]") -> None:
        _, ny, nx = self.directory.shape
        write_atomically(plane_path(self.pattern, z), lambda temporary: self.write_plane(
            temporary, _strips(feed), (ny, nx), self.directory.dtype, self.rows))

    def __call__(self, i: int) -> Iterator[tuple[int, int]]:
        todo = self.groups[i]
        z0, z1 = todo[0], todo[-1] + 1
        ny = self.directory.shape[1]
        feeds: list[queue.Queue[Strip | None]] = [queue.Queue(maxsize=1) for _ in todo]
        pool = ThreadPoolExecutor(len(feeds), thread_name_prefix="blockfs-plane")
        writers = [pool.submit(self._write, z, feed) for z, feed in zip(todo, feeds)]
        try:
            for y in range(0, ny, self.rows):
                stripe = self.directory[z0:z1, y:y + self.rows]
                for z, feed, writer in zip(todo, feeds, writers):
                    _put(feed, stripe[z - z0], writer)
                yield 0, stripe[0].nbytes * len(todo)
                del stripe
        finally:  # end every plane, also when reading failed, so that no thread waits forever
            for feed, writer in zip(feeds, writers):
                _put(feed, None, writer)
            pool.shutdown()
        for writer in writers:
            writer.result()
        yield len(todo), 0


def plane_groups(planes: Iterable[int], slab_depth: int, depth: int) -> Iterator[list[int]]:
    """The planes (ascending z) in groups within one z-slab, each spanning depth planes or
    fewer: a group's read covers its span."""
    group: list[int] = []
    for z in planes:
        if group and (z - group[0] >= depth or z // slab_depth != group[0] // slab_depth):
            yield group
            group = []
        group.append(z)
    if group:
        yield group


def _strips(feed: "queue.Queue[Strip | None]") -> Iterator[Strip]:
    """A plane's strips as its writer thread receives them, until the end (None)."""
    while (strip := feed.get()) is not None:
        yield strip


def _put(feed: "queue.Queue[Strip | None]", item: Strip | None, writer: "Future[None]") -> None:
    """Queue item for a writer thread, unless the thread has ended (its result tells why)."""
    while not writer.done():
        try:
            return feed.put(item, timeout=0.1)
        except queue.Full:
            pass


class MakeWork(Protocol):
    """make_work of export_planes: the PlaneStripes of the job, given the planes to leave out
    and the number of workers."""

    def __call__(self, *, done: frozenset[int], ranks: int) -> PlaneStripes: ...


class Pieces:
    """The pieces (z0, z1, y0, y1, x0, x1) of a volume one block deep and one block row high,
    as many blocks along x as fit `memory` with `copies` copies of each: a sequence computed
    from the piece number, never listed whole."""

    def __init__(self, geometry: Geometry, itemsize: int, memory: int, copies: int) -> None:
        self.geometry = geometry
        zb, yb, xb = (min(b, n) for b, n in zip(geometry.block_size, geometry.shape))
        block = zb * yb * xb * itemsize * copies
        columns = memory // block
        if columns < 1:
            raise parallel.everywhere(BlockfsError(
                f"--memory {memory / 2 ** 20:.0f} MiB is too small for {zb}x{yb}x{xb} blocks "
                f"of {itemsize} bytes: give at least {-(-block // 2 ** 20)}M"))
        self.columns = min(columns, geometry.n_x_blocks)
        self.per_row = -(-geometry.n_x_blocks // self.columns)
        self.rows = geometry.n_z_blocks * geometry.n_y_blocks

    def __len__(self) -> int:
        return self.rows * self.per_row

    def __getitem__(self, i: int) -> Piece:
        if not 0 <= i < len(self):
            raise IndexError(i)
        g = self.geometry
        zb, yb, xb = g.block_size
        row, column = divmod(i, self.per_row)
        zi, yi = divmod(row, g.n_y_blocks)
        x0 = column * self.columns * xb
        return (zi * zb, min(zi * zb + zb, g.z_extent), yi * yb, min(yi * yb + yb, g.y_extent),
                x0, min(x0 + self.columns * xb, g.x_extent))


def export_planes(directory: Directory, pattern: str, make_work: MakeWork,
                  comm: "MPI.Comm | None" = None, n_workers: int | None = None,
                  silent: bool = False, what: str = "export", overwrite: bool = False,
                  resume: bool = False) -> tuple[int, int, float]:
    """Run a plane exporter's work, make_work(done=planes to leave out, ranks=workers) -- a
    PlaneStripes --, over the volume; (planes, bytes, seconds) of the job.

    Before any rank writes, rank 0 looks for existing outputs: they are refused unless
    overwrite (replace them) or resume (leave them out) says otherwise.
    """
    plane_path(pattern, 0)  # an output folder that cannot be made fails here, before any work
    n = directory.shape[0]
    done = parallel.from_rank0(comm, lambda: check_outputs(pattern, n, overwrite, resume),
                               BlockfsError)
    workers = parallel.size_of(comm) if comm is not None else (n_workers or
                                                                 parallel.usable_cores())
    work = make_work(done=done, ranks=workers)
    totals = run(work, len(work), work.planes(), comm, n_workers, desc=what, unit="plane",
                 silent=silent)
    report(comm, what, "plane", *totals)
    return totals
