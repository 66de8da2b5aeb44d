"""The volume object people use: create, open, write and read blocks, numpy slicing.

`Directory` keeps the original blockfs API. Under an MPI launcher (or with a
communicator passed in) every rank writes the blocks it produced into a data
file of its own and `close()` commits collectively. Without MPI, writer
processes own the data files, and any process holding the Directory (forked,
spawned or forkserver workers alike) hands its blocks to them.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import format as fmt
from . import generation, indexing, parallel
from .commit import Hints
from .completion import warn_if_incomplete
from .compression import Compression, blosc_sizes, make_codec
from .errors import (
    BlockCoordinateError,
    BlockfsError,
    BlockShapeError,
    FormatError,
    ReadOnlyError,
)
from .format import WRITTEN
from .geometry import Geometry
from .identify import ReplaceRefusedError, check_replaceable, own_data_files
from .lock import LockedError, VolumeLock, program_name
from .reader import BlockReader, locate_data_files, read_header
from .scan import scan_data_file
from .write_backends import Backend, LocalWriters, RankWriter, StandIn
from .writer_registry import rerunning_main

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("blockfs_mpi")

NEW, WRITING, READING = "new", "writing", "reading"


def check_castable(block: NDArray[Any], dtype: np.dtype[Any], where: str) -> None:
    """Raise BlockShapeError unless every value of block is exactly representable in dtype."""
    if np.can_cast(block.dtype, dtype, casting="safe"):
        return
    if block.dtype.kind in "uib" and dtype.kind in "ui" and block.size:
        info = np.iinfo(dtype)
        if info.min <= block.min() and block.max() <= info.max:
            return
    raise BlockShapeError(f"{where}: a {block.dtype} block cannot be stored as {dtype} without "
                          f"loss; convert it first")


def remove_leftovers(path: str, keep_stems: set[str], keep: set[str],
                     also: Sequence[str] = ()) -> None:
    """Remove the given files and what killed replacements left beside the volume at path
    (generation.leftovers); a file that cannot be removed is a warning, never an error."""
    doomed = list(also) + [p for p in generation.leftovers(path, keep_stems, keep)
                           if p not in also]
    for failure in generation.remove(doomed):
        log.warning("%s: cannot remove %s", path, failure)


class BlockBits:
    """A set of a volume's block numbers, one bit per block (np.packbits order).

    Bits, not a bool per block: resume() keeps one on every rank for the whole volume, and
    a 100 TB volume of 64^3 uint16 blocks has 2 * 10^8 blocks, 24 MB as bits, 190 MB as bools.
    Under MPI the ranks' sets are joined by a bitwise OR of `bits` (MPI.BOR).
    """

    def __init__(self, n_blocks: int) -> None:
        self.bits = np.zeros(-(-n_blocks // 8), np.uint8)

    def add(self, block: int) -> None:
        """Put a block number in the set (at every block written: plain integer arithmetic)."""
        self.bits[block >> 3] |= 0x80 >> (block & 7)

    def add_all(self, blocks: NDArray[np.uint64]) -> None:
        """Put every block number of an array in the set (repeats allowed)."""
        blocks = np.asarray(blocks, np.uint64)
        np.bitwise_or.at(self.bits, blocks >> 3, (0x80 >> (blocks & 7)).astype(np.uint8))

    def __contains__(self, block: int) -> bool:
        return bool(self.bits[block >> 3] & 0x80 >> (block & 7))


class Directory:
    """A blockfs volume: a directory file and its data files.

    Construct it to write a new volume (then `create()`, `write_block`...,
    `close()`), or get one from `Directory.open(path)` to read.
    """

    HEADER = fmt.FORMAT2_MAGIC
    # Threads that read a region of several blocks (directory[...]); None: the cores this
    # process may use, or 1 in an MPI rank or a multiprocessing worker (processes are the
    # parallelism there). Set it on a Directory to choose.
    read_threads: int | None = None
    # Set by _init_state, like every field; declared here for the type checker.
    _backend: Backend | None
    _stand_in: bool

    def __init__(self, x_extent: int, y_extent: int, z_extent: int, dtype: DTypeLike,
                 directory_filename: str | os.PathLike[str], n_filenames: int | None = None,
                 x_block_size: int = 64, y_block_size: int = 64, z_block_size: int = 64,
                 block_filenames: Sequence[str | os.PathLike[str]] | None = None,
                 compression: Compression | str = Compression.zstd, compression_level: int = 1,
                 metadata: Mapping[str, Any] | None = None, comm: MPI.Comm | None = None,
                 shuffle: str = "byte", hints: Hints | None = None,
                 writer: Mapping[str, Any] | None = None, break_lock: bool = False) -> None:
        """Describe a new volume of the given extents (voxels) and numpy dtype.

        Data files default to `<directory_filename>.<n>` and can be put
        anywhere with `block_filenames`. Under MPI there is one data file per
        rank of `comm` (default: MPI.COMM_WORLD when launched by mpiexec or
        srun, else no MPI at all) and `n_filenames` is not used; without MPI,
        `n_filenames` writer processes (default: one per core) share the work.
        `hints` are MPI-IO hints for creating data files and, under MPI, the
        directory file, e.g. Lustre's {"striping_factor": 8, "striping_unit":
        4 << 20}. `writer` adds to what the volume records of who writes it
        (see docs/FORMAT.md): the program's name by default, and whether it
        finished. create() takes the
        volume's lock (see lock.py); `break_lock` takes over one that another
        host's job left, as blockfs-write --break-lock does.
        """
        path = os.path.abspath(directory_filename)
        comm = parallel.world() if comm is None else comm
        size = parallel.size_of(comm)
        if block_filenames is not None:
            block_filenames = [os.path.abspath(name) for name in block_filenames]
            if comm is not None and len(block_filenames) != size:
                raise ValueError(f"{len(block_filenames)} block_filenames for {size} MPI ranks: "
                                 f"under MPI each rank writes one data file")
        else:
            count = size if comm is not None else (n_filenames or parallel.usable_cores())
            block_filenames = [f"{path}.{i}" for i in range(count)]
        folder = os.path.dirname(path)
        header = fmt.Header(
            geometry=Geometry(x_extent, y_extent, z_extent,
                              x_block_size, y_block_size, z_block_size),
            dtype=fmt.parse_dtype(dtype, path),
            data_files=[os.path.relpath(name, folder) for name in block_filenames],
            compression=Compression.parse(compression), compression_level=compression_level,
            shuffle=shuffle, metadata=dict(metadata or {}),
            writer={"program": program_name(), **(writer or {}), "complete": False})
        make_codec(compression, compression_level, shuffle)  # refuse bad settings now
        self._init_state(path, header, comm, hints, break_lock=break_lock)
        if self._stand_in and not self._mpi:  # it writes from the start; see create()
            self._backend = StandIn(path, header, self.block_filenames)

    def _init_state(self, path: str, header: fmt.Header, comm: MPI.Comm | None,
                    hints: Hints | None = None, state: str = NEW,
                    reader: BlockReader | None = None, break_lock: bool = False) -> None:
        """Set every field of a Directory: each way of making one (__init__, open, resume,
        unpickling) starts here, so that no field can differ between them."""
        self.directory_filename = path
        self.header = header
        self.comm = comm
        self.hints = hints
        self._state = state
        self._reader = reader
        # How blocks are written (write_backends): set by create() and resume() until close().
        self._backend = None
        # Made while multiprocessing re-runs the main module in a spawn or forkserver child: a
        # stand-in for the parent's Directory, writing through the parent's writer processes.
        self._stand_in = rerunning_main()
        self._present: BlockBits | None = None  # blocks on disk when resumed
        self._written: BlockBits | None = None  # blocks written through this object here
        self._break_lock = break_lock
        self._lock: VolumeLock | None = None  # held by rank 0 from create() to close()
        self._in_progress: str | None = None  # a replacement's directory file until committed
        self._replaced: list[str] = []  # the old version's data files, removed once committed

    # ------------------------------------------------------------ opening --

    @classmethod
    def open(cls, directory_filename: str | os.PathLike[str], comm: MPI.Comm | None = None,
             open_files: int | None = None) -> Directory:
        """Open an existing volume (format 1 or 2) for reading; a volume whose writer did not
        finish is opened with a warning (its unwritten blocks read as zeros). open_files:
        how many of its data files the reader keeps open at once (reader.data_file_limit
        by default)."""
        self = cls._opened(directory_filename, comm, open_files)
        if parallel.rank_of(parallel.world()) == 0:  # once per job, not once per rank
            warn_if_incomplete(self.directory_filename, self.header)
        return self

    @classmethod
    def _opened(cls, directory_filename: str | os.PathLike[str], comm: MPI.Comm | None,
                open_files: int | None = None) -> Directory:
        """The volume at directory_filename, read-only."""
        path = os.path.abspath(directory_filename)
        reader = BlockReader(path, open_files=open_files)  # header and index of one version
        self = cls.__new__(cls)
        self._init_state(path, reader.header, comm, state=READING, reader=reader)
        return self

    @classmethod
    def resume(cls, directory_filename: str | os.PathLike[str], comm: MPI.Comm | None = None,
               hints: Hints | None = None, break_lock: bool = False) -> Directory:
        """Reopen a format 2 volume to write more: after a killed job, or to add blocks.

        Collective under MPI. Every frame that reached a data file intact
        counts, committed or not, and `has_block` says which blocks need no
        writing; the next close() commits them with the new ones. Rank r
        appends to data file r: files are added when there are more ranks
        than files, and files beyond the ranks are only scanned. After a
        killed replacement (an overwrite) it is the new version in progress
        that is resumed; the old one stays committed until close(). The
        volume's lock is taken as in create() (`break_lock` likewise).
        """
        path = os.path.abspath(directory_filename)
        comm = parallel.world() if comm is None else comm
        lock = VolumeLock(path, program_name(), break_lock)
        parallel.on_rank0(comm, lock.acquire, LockedError)
        try:
            in_progress, replaced = parallel.from_rank0(comm, lambda: cls._resumable(path),
                                                        BlockfsError)
            self = cls._opened(in_progress or path, None)
            self.directory_filename, self._lock = path, lock
            self._in_progress, self._replaced = in_progress, replaced
            self._resume(comm, hints)
        except BaseException:
            lock.release()
            raise
        return self

    @staticmethod
    def _resumable(path: str) -> tuple[str | None, list[str]]:
        """(directory file of a new version in progress or None, the committed version's data
        files that it replaces); removes what killed replacements left besides (rank 0)."""
        if not os.path.exists(path):
            return None, []  # _opened says so on every rank
        header = read_header(path)
        committed = locate_data_files(path, header)[0]
        in_progress = generation.in_progress(path, header.data_files)
        stems, keep = {generation.stem(path, header.data_files)}, set(committed)
        if in_progress is not None:
            log.info("%s: resuming the new version that a killed replacement left in %s",
                     path, in_progress)
            new = read_header(in_progress).data_files
            stems.add(generation.stem(path, new))
            keep.add(in_progress)
        remove_leftovers(path, stems, keep)
        return in_progress, committed if in_progress is not None else []

    def _resume(self, comm: MPI.Comm | None, hints: Hints | None) -> None:
        """The rest of resume(): find this rank's intact frames and open its data file."""
        assert self._reader is not None  # resume() made self with _opened, which opens one
        self._reader.close()
        self._reader = None
        if not self.header.has_frames:
            raise FormatError(f"{self.directory_filename}: format {self.header.version} volumes "
                              f"cannot be resumed; only format 2 keeps frames to resume from")
        self.comm = comm
        self.hints = hints
        size, rank = parallel.size_of(self.comm), parallel.rank_of(self.comm)
        base = os.path.basename(generation.stem(self.directory_filename, self.header.data_files))
        if comm is not None:
            self.header.data_files += [f"{base}.{i}"
                                       for i in range(len(self.header.data_files), size)]
        n_blocks = self.geometry.n_blocks
        paths = self.block_filenames
        scans = [scan_data_file(paths[f], f, n_blocks) for f in range(rank, len(paths), size)
                 if os.path.exists(paths[f])]
        recovered = np.concatenate([s.rows for s in scans] + [np.zeros(0, WRITTEN)])
        present = BlockBits(n_blocks)
        present.add_all(recovered["block"])
        if comm is not None:
            from mpi4py import MPI
            comm.Allreduce(MPI.IN_PLACE, present.bits, op=MPI.BOR)
        self._present = present
        self._start_writing(recovered)

    def has_block(self, x: int, y: int, z: int) -> bool:
        """True if the block at (x, y, z) is stored. Opened for reading (or closed): the
        committed index says. While writing: a block that resume() found intact on disk, or
        one written through this Directory in this process (under MPI: by this rank); blocks
        other ranks or worker processes write count once close() has committed them."""
        block = self.geometry.block_number(x, y, z)
        if self._state == READING:
            return self.reader.entry(block) is not None
        return any(blocks is not None and block in blocks
                   for blocks in (self._present, self._written))

    def _remember_written(self, block: int) -> None:
        """Add block to _written (made at the first write)."""
        if self._written is None:
            self._written = BlockBits(self.geometry.n_blocks)
        self._written.add(block)

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is None:
            self.close()
        else:
            self._abandon(error)

    # What stays in the process that sends a Directory to another: its communicator, open
    # files, lock and what it wrote itself. The back end goes along (its own __getstate__ says
    # how: a rank's writer refuses, writer processes stay with their owner).
    _NOT_SENT = ("comm", "_reader", "_lock", "_written")

    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items()
                if name not in self._NOT_SENT}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init_state(state["directory_filename"], state["header"], None)
        self.__dict__.update(state)

    def __repr__(self) -> str:
        g = self.header.geometry
        return (f"<Directory {self.directory_filename} {g.x_extent}x{g.y_extent}x{g.z_extent} "
                f"{self.dtype} blocks {g.x_block_size}x{g.y_block_size}x{g.z_block_size} "
                f"format {self.header.version} ({self._state})>")

    # --------------------------------------------------------- attributes --

    @property
    def geometry(self) -> Geometry:
        return self.header.geometry

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.header.dtype

    @property
    def x_extent(self) -> int:
        return self.geometry.x_extent

    @property
    def y_extent(self) -> int:
        return self.geometry.y_extent

    @property
    def z_extent(self) -> int:
        return self.geometry.z_extent

    @property
    def x_block_size(self) -> int:
        return self.geometry.x_block_size

    @property
    def y_block_size(self) -> int:
        return self.geometry.y_block_size

    @property
    def z_block_size(self) -> int:
        return self.geometry.z_block_size

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) extents"""
        return self.geometry.shape

    @property
    def block_size(self) -> tuple[int, int, int]:
        """(z, y, x) block size"""
        return self.geometry.block_size

    @property
    def compression(self) -> Compression:
        return self.header.compression

    @property
    def compression_level(self) -> int:
        return self.header.compression_level

    @property
    def metadata(self) -> dict[str, Any]:
        """application metadata"""
        return self.header.metadata

    @property
    def version(self) -> int:
        """on-disk format, 1 or 2"""
        return self.header.version

    @property
    def block_filenames(self) -> list[str]:
        """Absolute paths of the data files."""
        if self._reader is not None:
            return list(self._reader.data_paths)
        folder = os.path.dirname(self.directory_filename)
        return [os.path.join(folder, name) for name in self.header.data_files]

    def get_block_size(self, x: int, y: int, z: int) -> tuple[int, int, int]:
        """The (z, y, x) shape of the block at (x, y, z), clipped at the volume's edge."""
        return self.geometry.block_shape(x, y, z)

    # ------------------------------------------------------------ writing --

    @property
    def _mpi(self) -> bool:
        return self.comm is not None

    def create(self) -> None:
        """Create the data files and commit an empty volume. Collective.

        The volume's lock is taken first (LockedError, nothing touched, if another
        job holds it) and held until close(). Only a blockfs volume is replaced
        (identify.check_replaceable), and never in place: over a committed volume
        the data files get the next generation's names, the empty volume is
        committed as `<name>.g<k>`, and the old version stays whole and readable
        until close() commits the new one (see generation.py).

        In a stand-in (see write_backends.StandIn) it touches nothing: the parent created the
        volume, and truncating it would lose what its writers wrote.
        """
        if self._state != NEW:
            raise BlockfsError(f"{self.directory_filename}: create() on a volume that is "
                               f"{self._state}")
        if self._stand_in and not self._mpi:
            self._state = WRITING
            return
        folder = os.path.dirname(self.directory_filename)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{self.directory_filename}: folder {folder} does not exist")
        self._lock = VolumeLock(self.directory_filename, program_name(), self._break_lock)
        parallel.on_rank0(self.comm, self._lock.acquire, LockedError)
        try:
            self.header.data_files, self._in_progress, self._replaced = parallel.from_rank0(
                self.comm, self._check_replaceable, ReplaceRefusedError)
            self._start_writing(np.zeros(0, WRITTEN),
                                empty_at=self._in_progress or self.directory_filename)
        except BaseException:
            self._lock.release()
            raise

    def _check_replaceable(self) -> tuple[list[str], str | None, list[str]]:
        """(data file names, directory file of the new version in progress or None, the old
        version's data files): refuses before anything is touched unless only a blockfs
        volume would be replaced, and removes what killed replacements left (rank 0)."""
        path, names = self.directory_filename, self.header.data_files
        if not check_replaceable(path, []):
            check_replaceable(path, self.block_filenames)
            remove_leftovers(path, {generation.stem(path, names)}, set())
            return names, None, []
        log.info("%s: replacing the blockfs volume there (the old version stays readable until "
                 "the new one is committed)", path)
        old = own_data_files(path)
        try:
            old_names = read_header(path).data_files
        except (BlockfsError, OSError):
            old_names = []
        k = generation.generation(path, old_names) + 1
        new = [generation.with_generation(p, k) for p in self.block_filenames]
        while set(new) & old:
            k += 1
            new = [generation.with_generation(p, k) for p in self.block_filenames]
        in_progress = generation.in_progress_path(path, k)
        check_replaceable(in_progress, new)
        remove_leftovers(path, {generation.stem(path, old_names)}, old)
        folder = os.path.dirname(path)
        return [os.path.relpath(p, folder) for p in new], in_progress, sorted(old)

    def _start_writing(self, recovered: NDArray[np.void], empty_at: str | None = None) -> None:
        """Open the back end that writes the blocks (see write_backends) with the frames a
        resumed job found on disk (recovered). create() gives empty_at: the data files are
        truncated (collectively under MPI) and an empty volume is committed there; resume()
        appends to them."""
        path, paths, header = self.directory_filename, self.block_filenames, self.header
        if self.comm is not None:
            self._backend = RankWriter(self.comm, path, header, self.hints,
                                       paths[self.comm.Get_rank()], recovered, empty_at)
        elif self._stand_in:
            self._backend = StandIn(path, header, paths)
        elif empty_at is not None:
            self._backend = LocalWriters.create(path, header, paths, empty_at)
        else:
            self._backend = LocalWriters(path, header, paths, recovered)
        self._state = WRITING

    def start_writer_processes(self, queue_depth: int = 10) -> None:
        """Start the local writer processes now (before a multiprocessing pool is made).

        Under MPI each rank writes its own data file and this does nothing; so does a
        stand-in, which writes through its parent's writers (see write_backends.StandIn).
        """
        self._require_writing()
        if isinstance(self._backend, LocalWriters):
            self._backend.start(queue_depth)

    def _require_writing(self) -> Backend:
        """The back end that writes the blocks; ReadOnlyError or BlockfsError if none does."""
        if self._state == READING:
            raise ReadOnlyError(f"{self.directory_filename} was opened for reading")
        if self._backend is None:  # a stand-in has one before create()
            raise BlockfsError(f"{self.directory_filename}: call create() before writing "
                               f"(volume is {self._state})")
        return self._backend

    def write_block(self, block: ArrayLike, x: int, y: int, z: int) -> None:
        """Write the block whose origin is voxel (x, y, z); edge blocks come clipped."""
        backend = self._require_writing()
        block = np.asarray(block)
        block_number = self.geometry.block_number(x, y, z)
        where = f"{self.directory_filename}: block at (x={x}, y={y}, z={z})"
        expected = self.geometry.block_shape(x, y, z)
        if block.shape != expected:
            raise BlockShapeError(f"{where} must have shape {expected} (z, y, x), "
                                  f"not {block.shape}")
        check_castable(block, self.dtype, where)
        backend.write(block_number, np.ascontiguousarray(block, self.dtype))
        self._remember_written(block_number)

    def write_payload(self, payload: bytes, x: int, y: int, z: int) -> None:
        """Write the block whose origin is voxel (x, y, z) as payload, a block already
        encoded with this volume's codec (its Blosc buffer, as a block is stored): framed
        and appended as it is, by this rank's writer or a writer process. Its Blosc header
        must give the block's bytes and the payload's length (a 16-byte check, no decode)."""
        backend = self._require_writing()
        block_number = self.geometry.block_number(x, y, z)
        expected = int(np.prod(self.geometry.block_shape(x, y, z))) * self.dtype.itemsize
        if blosc_sizes(payload) != (expected, len(payload)):
            raise BlockShapeError(
                f"{self.directory_filename}: block at (x={x}, y={y}, z={z}): the payload is "
                f"not a Blosc buffer of its {expected} bytes in {len(payload)} (its header "
                f"says {blosc_sizes(payload)})")
        backend.write_payload(block_number, payload)
        self._remember_written(block_number)

    def close(self) -> None:
        """Finish writing and commit the index atomically (collective under MPI); then the
        files of a version it replaced are removed and the volume's lock is released.

        On a volume opened for reading, closes its files. Calling it again
        does nothing.
        """
        if self._state == WRITING:
            self.header.writer["complete"] = True  # the commit that ends the job says so
            backend, self._backend, self._state = self._backend, None, READING
            assert backend is not None  # every writing Directory has one
            committed = False
            try:
                backend.close()
                committed = True
            finally:
                self._end_writing(committed)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _end_writing(self, committed: bool) -> None:
        """Where the lock is held (rank 0): once the new version is committed, remove the
        version it replaced (its data files, the in-progress directory file); then release
        the lock, committed or not."""
        if self._lock is None or not self._lock.held:
            return
        try:
            if committed:
                new = set(self.block_filenames)
                old = [self._in_progress] if self._in_progress else []
                old += [p for p in self._replaced if p not in new]
                remove_leftovers(self.directory_filename,
                                 {generation.stem(self.directory_filename, self.header.data_files)},
                                 new, old)
        finally:
            self._lock.release()

    def _abandon(self, error: BaseException) -> None:
        """Leave after an exception: write out what was handed over, commit nothing, release
        the lock.

        The frames stay in the data files, where fsck --repair or a resumed
        job finds them (a replacement's old version stays committed). Under MPI
        with several ranks the others cannot be told to skip the collective
        commit, so the job is aborted instead (write_backends.RankWriter.abandon).
        """
        if self._lock is not None:
            self._lock.release()
        backend, self._backend, self._state = self._backend, None, READING
        if backend is not None:
            backend.abandon(error)

    # ------------------------------------------------------------ reading --

    @property
    def reader(self) -> BlockReader:
        """The BlockReader of the committed volume (opened on first use)."""
        if self._reader is None:
            self._reader = BlockReader(self.directory_filename)
        return self._reader

    def read_block(self, x: int, y: int, z: int) -> NDArray[Any]:
        """The block whose origin is (x, y, z) as a (z, y, x) array; zeros if never written."""
        return self.reader.read(self.geometry.block_number(x, y, z),
                                self.geometry.block_shape(x, y, z))

    def _read_thread_count(self) -> int:
        if self.read_threads is not None:
            return self.read_threads
        if parallel.launched_by_mpi() or multiprocessing.parent_process() is not None:
            return 1
        return parallel.usable_cores()

    # NumPy's array attributes, so that numpy, dask and xarray take a volume as an array.
    ndim = 3

    @property
    def size(self) -> int:
        """voxels in the volume"""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """bytes the whole volume takes in memory (np.asarray(volume))"""
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, int, int]:
        """(z, y, x) block shape: dask.array.from_array chunks by multiples of it"""
        return self.block_size

    def __len__(self) -> int:
        return self.z_extent

    def __array__(self, dtype: DTypeLike | None = None,
                  copy: bool | None = None) -> NDArray[Any]:
        """The whole volume in memory (`nbytes` bytes), for np.asarray(volume) (NumPy 2's
        protocol); read like volume[...]. copy=False is refused: reading always makes an array."""
        if copy is False:
            raise ValueError(f"{self.directory_filename}: a blockfs volume is read into a new "
                             f"array; np.asarray(volume, copy=False) cannot avoid that")
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key: object) -> NDArray[Any]:
        """A sub-volume, as numpy would index the whole: volume[z0:z1, y0:y1, x0:x1],
        volume[..., -1], volume[::4, 10:-10] ... (integers, slices with any step, one
        Ellipsis; see indexing.py). A strided read reads only the blocks holding voxels it
        picks.

        The blocks are read and decoded by several threads (see read_threads): pread and
        Blosc release the GIL, so a large region reads about as many times faster as there
        are cores.
        """
        picked, squeeze = indexing.selection(key, self.shape)
        out = np.zeros(tuple(len(p) for p in picked), self.dtype)

        def copy_block(piece: tuple[indexing.Piece, ...]) -> None:
            (z, out_z, in_z), (y, out_y, in_y), (x, out_x, in_x) = piece
            out[out_z, out_y, out_x] = self.read_block(x, y, z)[in_z, in_y, in_x]

        work = indexing.block_pieces(picked, self.block_size)
        threads = min(len(work), self._read_thread_count())
        if threads > 1:
            _ = self.reader  # opened here, not raced for by the threads
            with ThreadPoolExecutor(threads, thread_name_prefix="blockfs-read") as pool:
                for _ in pool.map(copy_block, work):  # raises the first block's error
                    pass
        else:
            for piece in work:
                copy_block(piece)
        if any(p.step < 0 for p in picked):  # read in increasing order; numpy's is backwards
            out = out[tuple(slice(None, None, -1 if p.step < 0 else 1) for p in picked)]
        return out.squeeze(squeeze) if squeeze else out

    def __setitem__(self, key: object, value: ArrayLike) -> None:
        """Write whole blocks: directory[z0:z1, y0:y1, x0:x1] = array, on block boundaries."""
        picked, squeeze = indexing.selection(key, self.shape)
        bounds = indexing.step_one_bounds(
            picked, f"{self.directory_filename}: only step 1 slices can be written")
        for (start, stop), size, extent, axis in zip(bounds, self.block_size, self.shape, "zyx"):
            if start % size or (stop % size and stop != extent):
                raise BlockCoordinateError(
                    f"{self.directory_filename}: {axis} range {start}:{stop} does not cover "
                    f"whole blocks of {size}; only whole blocks can be written")
        value = np.asarray(value)
        if squeeze:
            value = np.expand_dims(value, squeeze)
        value = np.broadcast_to(value, tuple(stop - start for start, stop in bounds))
        for (z, zs, _), (y, ys, _), (x, xs, _) in indexing.block_pieces(picked, self.block_size):
            self.write_block(value[zs, ys, xs], x, y, z)  # zs...: where the block is in value
