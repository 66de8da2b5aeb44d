"""Converting a source volume into blockfs on every rank at once (blockfs-write's engine).

The volume is cut into work units of whole blocks -- a z-slab one block deep,
a y-stripe one block high, and as many blocks along x as the memory budget
allows -- grouped in short runs of neighbours that rank 0 deals out on demand
(dealer.Dealer): a rank that compresses background, or simply runs on a
faster node, takes more runs. Each rank reads only its units from the
source, writes their blocks to its own data file, and close() commits
everything collectively. No voxel is sent between ranks.

For a pyramid (blockfs-write --levels) units are two block rows deep and
high and an even number of blocks wide, so that each covers whole level-2
blocks: their voxels are reduced 2x2x2 into level 2 while in memory, and
the two levels are written and committed side by side.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from . import generation, parallel
from .dealer import Dealer
from .directory import Directory
from .errors import BlockfsError
from .lock import LockedError, check_unlocked
from .progress import Progress
from .reader import read_header
from .sources import Source, SourceError, differences, fingerprint
from .writer import BUFFER_SIZE

if TYPE_CHECKING:
    from mpi4py import MPI

    from .geometry import Geometry
    from .zarr_chunks import StoredChunks

log = logging.getLogger("blockfs_mpi")

WRITER_OVERHEAD = 48 << 20  # a rank's write buffers, codec state and interpreter
REGION_COPIES = 6  # source region, its temporaries (casts, synthetic float32) and blocks
LEVEL2_OVERHEAD = 2 * BUFFER_SIZE + (4 << 20)  # level 2's writer: buffers, rows, codec
RUNS_PER_RANK = 8  # how many places in the volume a rank's work comes from

Unit = tuple[int, int, int, int, int, int]  # a box of voxels: (z0, z1, y0, y1, x0, x1)
Origin = tuple[int, int, int]  # a block's first voxel: (x, y, z)
T = TypeVar("T")


@dataclass
class Summary:
    """What a conversion did, over all ranks."""

    blocks: int
    skipped: int
    bytes_in: int
    bytes_out: int
    seconds: float
    level2_blocks: int = 0  # level-2 blocks written in the same pass
    level2_skipped: int = 0  # and already present (a resumed job)
    copied: int = 0  # of blocks, those copied from the source's stored chunks (zarr_chunks)

    def __str__(self) -> str:
        level2 = (f"; level 2: {self.level2_blocks} blocks written, {self.level2_skipped} "
                  f"already present" if self.level2_blocks or self.level2_skipped else "")
        if not self.bytes_in:  # a resumed job with nothing left: no ratio nor rate to speak of
            return (f"{self.blocks} blocks written, {self.skipped} already present; nothing "
                    f"left to write ({self.seconds:.1f} s){level2}")
        ratio = f" (ratio {self.bytes_in / self.bytes_out:.2f})" if self.bytes_out else ""
        copied = f" ({self.copied} copied as stored)" if self.copied else ""
        return (f"{self.blocks} blocks written{copied}, {self.skipped} already present; "
                f"{amount(self.bytes_in)} in, {amount(self.bytes_out)} out{ratio}; "
                f"{rate(self.bytes_in, self.seconds)} in {self.seconds:.1f} s{level2}")


def amount(nbytes: float) -> str:
    """Bytes for a summary in the unit that shows them: '512 B', '3.1 kB', '12.5 MB', '1.20 GB'
    (never '0.0 MB' for a small job)."""
    for unit, size, digits in (("GB", 1e9, 2), ("MB", 1e6, 1), ("kB", 1e3, 1)):
        if nbytes >= size:
            return f"{nbytes / size:.{digits}f} {unit}"
    return f"{nbytes:.0f} B"


def rate(nbytes: int, seconds: float) -> str:
    """A throughput for a summary, e.g. '612.3 MB/s'."""
    return f"{amount(nbytes / max(seconds, 1e-9))}/s"


def blocks_in_budget(block_size: tuple[int, ...], itemsize: int, memory: int,
                     reduction: int = 0) -> int:
    """How many blocks a work unit may span within the memory budget; an error if not one
    (checked before the output is opened, so that a bad --memory replaces nothing).

    reduction: when level 2 is made in the same pass, the peak bytes per voxel of reducing
    2x2x2 blocks at a time (pyramid.reduction_bytes); a unit then spans 2x2x2 blocks at least,
    and level 2's writer and the reduction take their share of the budget first."""
    zb, yb, xb = block_size
    least = 8 if reduction else 1
    fits = blocks_that_fit(block_size, itemsize, memory, reduction)
    if fits < least:
        need = (reserved_bytes(block_size, reduction)
                + REGION_COPIES * least * zb * yb * xb * itemsize) / 2 ** 20
        made = " and level 2 in the same pass" if reduction else ""
        raise BlockfsError(f"memory budget {memory / 2 ** 20:.0f} MiB is too small for "
                           f"{zb}x{yb}x{xb} blocks of {itemsize} bytes{made}; give at least "
                           f"{need:.0f} MiB")
    return fits


def blocks_that_fit(block_size: tuple[int, ...], itemsize: int, memory: int,
                    reduction: int = 0) -> int:
    """blocks_in_budget's count, fewer than a unit needs included (no error)."""
    zb, yb, xb = block_size
    region_bytes = REGION_COPIES * zb * yb * xb * itemsize
    return int((memory - reserved_bytes(block_size, reduction)) // region_bytes)


def reserved_bytes(block_size: tuple[int, ...], reduction: int = 0) -> int:
    """The budget's share taken before any unit: the writer's, and with reduction (see
    blocks_in_budget) level 2's writer and reduction."""
    zb, yb, xb = block_size
    return WRITER_OVERHEAD + (LEVEL2_OVERHEAD + 8 * zb * yb * xb * reduction if reduction else 0)


def plan_units(geometry: Geometry, itemsize: int, memory: int, reduction: int = 0,
               whole_rows: bool = False) -> UnitGrid:
    """Work units (z0, z1, y0, y1, x0, x1) of whole blocks, each within the memory budget.

    With reduction (see blocks_in_budget) each unit is two block rows deep and high and an
    even number of blocks wide, but at the volume's edge: it covers whole level-2 blocks. It
    holds as many blocks as a unit without level 2 (2x2x2 at least): larger regions only
    cost more, numpy mapping and faulting in their arrays afresh each time (at 512^3, units
    four times larger took 0.4 s more system time a rank). But where the source reads whole
    rows whatever columns are asked (whole_rows: TIFF planes), a unit is as wide as the
    budget allows, so that no row is read once per unit across it.
    """
    zb, yb, xb = geometry.block_size
    fits = blocks_in_budget(geometry.block_size, itemsize, memory, reduction)
    columns = min(fits, geometry.n_x_blocks)
    if reduction:  # 4 blocks in each column of x
        zb, yb = 2 * zb, 2 * yb
        columns = max(2, (fits if whole_rows else columns) // 4 // 2 * 2)
    width = min(columns, geometry.n_x_blocks) * xb
    return UnitGrid(geometry.shape, (zb, yb, width))


class UnitGrid(Sequence[Unit]):
    """The work units of a volume cut into boxes of one extent (z, y, x; clipped at its
    edges), numbered z-slab by z-slab, then y, then x, and computed from their number: a
    job of 10^6 units lists none of them, each rank only the units it works on."""

    def __init__(self, shape: Iterable[int], extent: Iterable[int]) -> None:
        self.shape, self.extent = tuple(shape), tuple(extent)
        self.counts = tuple(-(-size // step) for size, step in zip(self.shape, self.extent))

    def __len__(self) -> int:
        nz, ny, nx = self.counts
        return nz * ny * nx

    @overload
    def __getitem__(self, number: int) -> Unit: ...

    @overload
    def __getitem__(self, number: slice) -> list[Unit]: ...

    def __getitem__(self, number: int | slice) -> Unit | list[Unit]:
        if isinstance(number, slice):
            return [self[i] for i in range(len(self))[number]]
        if not -len(self) <= number < len(self):
            raise IndexError(f"unit {number} of {len(self)}")
        zy, x = divmod(number % len(self), self.counts[2])
        z, y = divmod(zy, self.counts[1])
        zs, ys, xs = self.extent
        z0, y0, x0 = z * zs, y * ys, x * xs
        z_extent, y_extent, x_extent = self.shape
        return (z0, min(z0 + zs, z_extent), y0, min(y0 + ys, y_extent),
                x0, min(x0 + xs, x_extent))


class Runs(Sequence[Sequence[T]]):
    """units cut into runs of neighbours, as even as can be (they differ by one at most),
    each listed only when asked for."""

    def __init__(self, units: Sequence[T], n_runs: int) -> None:
        self.units, self.n_runs = units, n_runs

    def __len__(self) -> int:
        return self.n_runs

    @overload
    def __getitem__(self, number: int) -> Sequence[T]: ...

    @overload
    def __getitem__(self, number: slice) -> list[Sequence[T]]: ...

    def __getitem__(self, number: int | slice) -> Sequence[T] | list[Sequence[T]]:
        if isinstance(number, slice):
            return [self[i] for i in range(self.n_runs)[number]]
        if not -self.n_runs <= number < self.n_runs:
            raise IndexError(f"run {number} of {self.n_runs}")
        number %= self.n_runs
        total = len(self.units)
        return self.units[total * number // self.n_runs:total * (number + 1) // self.n_runs]


def runs_of(units: Sequence[T], comm: MPI.Comm | None) -> Runs[T]:
    """units cut into RUNS_PER_RANK runs of neighbours per rank. A rank working through whole
    runs opens few distinct source files (TIFF planes). units may be any sequence (a range
    of block numbers, a UnitGrid): neither it nor its runs are ever listed whole."""
    return Runs(units, max(1, min(len(units), parallel.size_of(comm) * RUNS_PER_RANK)))


def my_share(units: Sequence[T], comm: MPI.Comm | None) -> list[T]:
    """This rank's units, decided without asking anyone: the runs of runs_of dealt
    round-robin. Spread over the whole volume, a rank never gets only background while
    another compresses all the tissue."""
    runs = runs_of(units, comm)[parallel.rank_of(comm)::parallel.size_of(comm)]
    return [unit for run in runs for unit in run]


def blocks_of(directory: Directory, unit: Sequence[int]) -> list[Origin]:
    """Block origins (x, y, z) inside a unit."""
    z0, z1, y0, y1, x0, x1 = unit
    return [(x, y, z) for z in range(z0, z1, directory.z_block_size)
            for y in range(y0, y1, directory.y_block_size)
            for x in range(x0, x1, directory.x_block_size)]


def data_file_names(output: str, count: int,
                    data_dirs: Sequence[str]) -> list[str | os.PathLike[str]] | None:
    """Data file paths: beside the directory file, or round-robin over data_dirs."""
    if not data_dirs:
        return None
    name = os.path.basename(output)
    # As Directory's block_filenames takes them (a list's type is invariant).
    return [os.path.join(data_dirs[i % len(data_dirs)], f"{name}.{i}") for i in range(count)]


def check_resumable(output: str, source: Source, dtype: npt.DTypeLike,
                    block_size: tuple[int, ...], record: Mapping[str, object] | None,
                    force_source: bool) -> None:
    """Refuse to resume output with this source unless it is the volume this job makes, from
    the source it was started from (unless force_source). After a killed --overwrite it is
    the new version in progress that a resume continues, so that is what must match."""
    header = read_header(output)
    in_progress = generation.in_progress(output, header.data_files)
    if in_progress is not None:
        header = read_header(in_progress)
    found = (tuple(header.geometry.shape), header.dtype, tuple(header.geometry.block_size))
    expected = (tuple(source.shape), np.dtype(dtype), tuple(block_size))
    if found != expected:
        raise BlockfsError(f"{output} holds a {found[0]} {found[1]} volume of {found[2]} "
                           f"blocks; this job makes {expected[0]} {expected[1]} in "
                           f"{expected[2]}: not the same volume, so it cannot be resumed")
    recorded = header.writer.get("source")
    if not (recorded and record):
        return
    changed = differences(recorded, record)
    if changed and not force_source:
        raise BlockfsError(f"{output} was started from {recorded['spec']}, and {record['spec']} "
                           f"is not the same source: {'; '.join(changed)}. Resuming would mix "
                           f"two sources; pass --force-source to resume anyway")


def open_output(source: Source, output: str, comm: MPI.Comm | None, *,
                block_size: tuple[int, ...], dtype: np.dtype[Any], resume: bool,
                overwrite: bool, data_dirs: Sequence[str] = (), spec: str | None = None,
                force_source: bool = False, break_lock: bool = False,
                **volume_options: Any) -> Directory:
    """The Directory to write: created (collectively), or resumed after a killed job. The
    source's fingerprint (of `spec`, its command-line name) is recorded at create, and a
    resume from a different source is refused unless force_source. A volume another job
    is writing is refused first (its lock; break_lock takes over one left on another host)."""
    parallel.on_rank0(comm, lambda: check_unlocked(output, break_lock), LockedError)
    exists = os.path.exists(output)
    if exists and not (resume or overwrite):
        raise BlockfsError(f"{output} exists: pass --resume to complete it or --overwrite "
                           f"to replace it")
    record = None
    if spec is not None:
        record = parallel.from_rank0(comm, lambda: fingerprint(source, spec), SourceError)
    if exists and resume:
        parallel.on_rank0(comm, lambda: check_resumable(output, source, dtype, block_size,
                                                        record, force_source), BlockfsError)
        return Directory.resume(output, comm=comm, hints=volume_options.get("hints"),
                                break_lock=break_lock)
    z, y, x = source.shape
    count = parallel.size_of(comm) if comm is not None else parallel.usable_cores()
    directory = Directory(x, y, z, dtype, output, comm=comm, n_filenames=count,
                          block_filenames=data_file_names(output, count, data_dirs),
                          z_block_size=block_size[0], y_block_size=block_size[1],
                          x_block_size=block_size[2],
                          writer={"program": "blockfs-write", "source": record} if record
                          else None, break_lock=break_lock, **volume_options)
    directory.create()
    return directory


@dataclass
class NextLevel:
    """Level 2 of a pyramid, made in the same pass as level 1: its volume (open to write),
    the 2x2x2 reduction of level-1 voxels into its blocks (pyramid.downsample) and that
    reduction's peak bytes per voxel (pyramid.reduction_bytes), for the memory budget.

    With whole_units (pyramid.reduces_in_slabs) a unit's voxels are reduced at once, three
    times faster than the views of them a block takes, which need copying. With held
    (pyramid.held_level3_bytes, taken from the budget), each level-2 block written is also
    reduced into level 3 and kept in above, by the block's origin, for pyramid.build."""

    directory: Directory
    reduce: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]
    reduction: int
    held: int = 0
    whole_units: bool = False
    above: dict[Origin, npt.NDArray[Any]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.held:
            self.above = {}

    def covered(self, unit: Unit) -> tuple[list[Origin], list[Origin]]:
        """(the level-2 blocks a unit of level-1 voxels covers, those of them not on disk)."""
        above = blocks_of(self.directory, halved(unit))
        return above, [origin for origin in above if not self.directory.has_block(*origin)]

    def write(self, region: npt.NDArray[Any], unit: Unit, origins: list[Origin],
              dtype: np.dtype[Any]) -> None:
        """Reduce region, the voxels of unit as dtype, into the level-2 blocks at origins (at
        once with whole_units, else one 2x2x2 group of blocks at a time), and write them."""
        z0, _, y0, _, x0, _ = unit
        z2, y2, x2 = z0 // 2, y0 // 2, x0 // 2  # where the unit starts in level 2
        reduced = above = None
        if self.whole_units:
            reduced = self.reduce(region.astype(dtype, copy=False))
            above = None if self.above is None else self.reduce(reduced)
        for x, y, z in origins:
            zs, ys, xs = self.directory.get_block_size(x, y, z)
            if reduced is not None:  # unit starts at even voxels: its halves are level 2's
                block = reduced[z - z2:z - z2 + zs, y - y2:y - y2 + ys, x - x2:x - x2 + xs]
            else:
                below = region[2 * z - z0:2 * (z + zs) - z0, 2 * y - y0:2 * (y + ys) - y0,
                               2 * x - x0:2 * (x + xs) - x0]
                block = self.reduce(below.astype(dtype, copy=False))
            self.directory.write_block(block, x, y, z)
            if self.above is not None:  # level-2 blocks held are of even sizes: so are offsets
                self.above[(x, y, z)] = self.reduce(block) if above is None else above[
                    (z - z2) // 2:(z - z2 + zs + 1) // 2, (y - y2) // 2:(y - y2 + ys + 1) // 2,
                    (x - x2) // 2:(x - x2 + xs + 1) // 2]


def halved(unit: Unit) -> tuple[int, ...]:
    """The level-2 region (z0, z1, y0, y1, x0, x1) of a unit of level-1 voxels."""
    return tuple((n + 1) // 2 for n in unit)


def convert(source: Source, directory: Directory, memory: int, silent: bool = False,
            level2: NextLevel | None = None) -> Summary:
    """Write this rank's share of source into directory, skipping blocks already present,
    and commit (collective). The whole job's Summary on every rank.

    With level2, each unit's voxels are also reduced into the level-2 blocks they cover
    while they are in memory, a level-2 block (2x2x2 level-1 blocks) at a time, and level 2
    is committed after level 1. A unit is read from the source when any of its blocks of
    either level is missing, so a level-2 block is always reduced from the whole unit.
    """
    comm = directory.comm
    started = time.monotonic()
    bytes_before = _own_data_bytes(directory)
    reduction, held = (level2.reduction, level2.held) if level2 else (0, 0)
    whole_rows: bool = getattr(source, "reads_whole_rows", False)  # TiffPlanes says True
    runs = runs_of(plan_units(directory.geometry, directory.dtype.itemsize, memory - held,
                              reduction, whole_rows), comm)
    progress = Progress(comm, directory.geometry.block_count, "blockfs-write", disable=silent)
    from .zarr_chunks import stored_chunks  # here: zarr_shards imports export, which imports us
    stored = stored_chunks(source, directory.header) if level2 is None else None
    if stored is not None and parallel.rank_of(comm) == 0:
        log.info("blockfs-write: copying matching inner chunks as stored")
    full_block = int(np.prod(directory.block_size)) * directory.dtype.itemsize
    written = skipped = bytes_in = reduced = kept = copied = 0
    with Dealer(len(runs), comm) as dealt:
        for unit in (unit for number in dealt for unit in runs[number]):
            origins = blocks_of(directory, unit)
            todo = [origin for origin in origins if not directory.has_block(*origin)]
            skipped += len(origins) - len(todo)
            progress.update(len(origins) - len(todo))
            above, missing = level2.covered(unit) if level2 else ([], [])
            kept += len(above) - len(missing)
            if not todo and not missing:
                continue
            box = unit
            if stored is not None:  # None with level2, which needs the whole unit's voxels
                needed = copy_stored(stored, directory, todo, progress, full_block)
                copied += len(todo) - len(needed)
                written += len(todo) - len(needed)
                bytes_in += (len(todo) - len(needed)) * full_block
                todo = needed
                if not todo:
                    continue
                box = bounds(directory, todo)
            z0, _, y0, _, x0, _ = box
            region = source.read(*box)
            for x, y, z in todo:
                zs, ys, xs = directory.get_block_size(x, y, z)
                block = region[z - z0:z - z0 + zs, y - y0:y - y0 + ys, x - x0:x - x0 + xs]
                directory.write_block(block, x, y, z)
                written += 1
                bytes_in += block.nbytes
                progress.update(1, block.nbytes)
            if level2:
                level2.write(region, unit, missing, directory.dtype)
                reduced += len(missing)
            del region
    if stored is not None:
        stored.close()
    progress.close()
    directory.close()
    if level2:
        level2.directory.close()
    totals = _sum(comm, written, skipped, bytes_in, _own_data_bytes(directory) - bytes_before,
                  reduced, kept, copied)
    blocks, skipped, bytes_in, bytes_out, reduced, kept, copied = totals
    return Summary(blocks, skipped, bytes_in, bytes_out, time.monotonic() - started, reduced,
                   kept, copied)


def copy_stored(stored: StoredChunks, directory: Directory, todo: list[Origin],
                progress: Progress, nbytes: int) -> list[Origin]:
    """Write each block of todo whose chunk the source stores as the volume stores blocks
    (zarr_chunks) as that chunk, byte for byte, counting nbytes each in progress; the other
    blocks, to be read as voxels, in order."""
    needed = []
    zb, yb, xb = directory.block_size
    for x, y, z in todo:
        payload = stored.stored_block(z // zb, y // yb, x // xb)
        if payload is None:
            needed.append((x, y, z))
            continue
        directory.write_payload(payload, x, y, z)
        progress.update(1, nbytes)
    return needed


def bounds(directory: Directory, origins: list[Origin]) -> Unit:
    """The smallest box (z0, z1, y0, y1, x0, x1) holding the blocks at origins."""
    ends = [(x + xs, y + ys, z + zs) for x, y, z in origins
            for zs, ys, xs in [directory.get_block_size(x, y, z)]]
    return (min(z for _, _, z in origins), max(z for _, _, z in ends),
            min(y for _, y, _ in origins), max(y for _, y, _ in ends),
            min(x for x, _, _ in origins), max(x for x, _, _ in ends))


def verify(source: Source, directory: Directory, memory: int,
           comm: MPI.Comm | None) -> tuple[int, int, float]:
    """Compare this rank's share of the committed volume with the source, block by block.

    Returns (mismatched blocks, bytes read, seconds) over all ranks.
    """
    started = time.monotonic()
    reader = Directory.open(directory.directory_filename)
    bad = read = 0
    for unit in my_share(plan_units(reader.geometry, reader.dtype.itemsize, memory), comm):
        z0, z1, y0, y1, x0, x1 = unit
        expected = source.read(*unit).astype(reader.dtype, copy=False)
        got = reader[z0:z1, y0:y1, x0:x1]
        read += got.nbytes
        if not np.array_equal(got, expected):
            bad += 1
            log.error("verify: blocks in z %d:%d y %d:%d x %d:%d differ from the source", *unit)
    bad, read = _sum(comm, bad, read)
    return bad, read, time.monotonic() - started


def _sum(comm: MPI.Comm | None, *values: int) -> tuple[int, ...]:
    """Sums over all ranks of some integers (one collective call)."""
    if comm is None:
        return values
    return tuple(int(v) for v in comm.allreduce(np.array(values, np.int64)))


def _own_data_bytes(directory: Directory) -> int:
    """Bytes now in the data files this rank writes (all of them without MPI)."""
    comm = directory.comm
    paths = directory.block_filenames[parallel.rank_of(comm)::parallel.size_of(comm)]
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))
