"""Multiscale pyramids: mip levels as blockfs volumes and Neuroglancer's precomputed `info`.

The layout is precomputed-tif's: `<dest>/info` and one volume per level,
`<dest>/<r>_<r>_<r>/precomputed.blockfs` for r = 1, 2, 4 ... Level r+1 is
made from level r by a 2x2x2 mean (images) or mode (labels); each of its
extents is (n + 1) // 2 of the one below, and an edge voxel summarises only
the voxels that exist below it.
"""
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import parallel, relocate
from .atomic import write_atomically
from .convert import blocks_that_fit, my_share
from .directory import Directory
from .errors import BlockfsError
from .format import Header
from .geometry import Geometry
from .lock import LockedError, check_unlocked
from .progress import Progress
from .reader import read_header
from .sources import differences

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("blockfs_mpi")

DIRECTORY_NAME = "precomputed.blockfs"
METHODS = ("mean", "mode")
MIN_BLOCKS_PER_RANK = 64  # a level with fewer blocks a rank is written by fewer ranks
TOP_LEVEL_BYTES = 256 << 20  # the most a level made in memory may hold (see in_memory)
SLAB = 8  # planes of a block integer_mean sums at a time (even: whole pairs of planes)
SLAB_VOXELS = 1 << 19  # fewer planes (2 at least) where SLAB of them would hold more voxels


def scale_key(level: int) -> str:
    """The scale key of mip level 1, 2, 3 ...: '1_1_1', '2_2_2', '4_4_4' ..."""
    r = 2 ** (level - 1)
    return f"{r}_{r}_{r}"


def level_path(dest: str, level: int) -> str:
    """The directory file of a mip level of the pyramid in dest."""
    return os.path.join(dest, scale_key(level), DIRECTORY_NAME)


def capped_levels(levels: int, shape: Sequence[int], comm: "MPI.Comm | None" = None) -> int:
    """levels, or as many as halve the largest extent of shape (z, y, x) down to one voxel if
    fewer, with a warning (levels beyond would all be that voxel again)."""
    most = max(1, (max(shape) - 1).bit_length() + 1)
    if levels <= most:
        return levels
    if parallel.rank_of(comm) == 0:
        log.warning("--levels %d: a volume of %s voxels (x, y, z) halves down to one voxel in "
                    "%d levels; making %d", levels, "x".join(map(str, shape[::-1])), most, most)
    return most


def pyramid_folder(path: str) -> str:
    """The pyramid folder of a level 1 directory file `<dest>/1_1_1/precomputed.blockfs`."""
    path = os.path.abspath(path)
    if os.path.abspath(level_path(os.path.dirname(os.path.dirname(path)), 1)) != path:
        raise BlockfsError(f"{path} is not a pyramid's level 1: it must be "
                           f"<dest>/1_1_1/{DIRECTORY_NAME}, or name the pyramid folder with "
                           f"--output to copy (or --move) the volume there")
    return os.path.dirname(os.path.dirname(path))


def groups(shape: tuple[int, ...]
           ) -> tuple[list[tuple[npt.NDArray[np.intp], ...]], npt.NDArray[np.bool_]]:
    """The 2x2x2 groups of a (z, y, x) array as (candidates, valid).

    candidates has shape (8, (z+1)//2, (y+1)//2, (x+1)//2): the voxel at
    offset (dz, dy, dx) of each group; where a group sticks out of an odd
    extent, valid is False and the candidate is a copy of offset (0, 0, 0).
    """
    out = tuple((n + 1) // 2 for n in shape)
    index, valid = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                axes = [np.minimum(2 * np.arange(m) + d, n - 1)
                        for m, d, n in zip(out, (dz, dy, dx), shape)]
                ok = [2 * np.arange(m) + d < n for m, d, n in zip(out, (dz, dy, dx), shape)]
                index.append(np.ix_(*axes))
                valid.append(ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :])
    return index, np.stack(valid)


def downsample(block: npt.ArrayLike, method: str = "mean") -> npt.NDArray[Any]:
    """A (z, y, x) array reduced 2x2x2: the mean (floored for integers, as precomputed-tif
    does) or, for integer labels, the mode (the most frequent value, the smallest on ties)
    of each group of voxels present."""
    block = np.asarray(block)
    if method == "mean" and block.dtype.kind in "iu":
        return integer_mean(block)
    index, valid = groups(block.shape)
    candidates = np.stack([block[i] for i in index])
    if method == "mean":
        accumulate = np.float64 if block.dtype.kind in "fc" else (
            np.int64 if block.dtype.kind == "i" else np.uint64)
        total = np.where(valid, candidates, 0).sum(axis=0, dtype=accumulate)
        count = valid.sum(axis=0)
        mean: npt.NDArray[Any] = (total / count if block.dtype.kind in "fc"
                                  else total // count.astype(accumulate))
        return mean.astype(block.dtype)
    if method != "mode":
        raise BlockfsError(f"unknown downsampling method {method!r}: use mean or mode")
    counts = np.stack([((candidates == c) & valid).sum(axis=0) for c in candidates])
    counts[~valid] = -1
    best = counts.max(axis=0)
    mode: npt.NDArray[Any] = np.where(counts == best, candidates,
                                      np.iinfo(block.dtype).max).min(axis=0)
    return mode


def integer_mean(block: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.integer[Any]]:
    """downsample's mean of an integer (z, y, x) array, summed one axis at a time: sums of
    integers are exact in any order (modulo 2**64 alike), so the floors are those of the
    general path, at a fraction of its time and memory. The sums are taken SLAB planes at a
    time (fewer in planes of over SLAB_VOXELS / SLAB voxels, so that the temporaries stay a
    small part of block), copied together first if block is a view with gaps, so that they
    stay in the processor's cache; each slab is summed in the block's own type where eight
    of its values cannot overflow it (12-bit camera data in uint16), else wider."""
    out = np.empty(tuple((n + 1) // 2 for n in block.shape), block.dtype)
    counts = [np.where(np.arange((n + 1) // 2) < n // 2, 2, 1) for n in block.shape]
    whole = not any(n % 2 for n in block.shape)  # every group of 8: a shift divides
    planes = max(2, min(SLAB, SLAB_VOXELS // max(1, block[0].size)) // 2 * 2)
    for start in range(0, block.shape[0], planes):
        slab = np.ascontiguousarray(block[start:start + planes])
        accumulate = mean_accumulator(slab)
        total = slab
        for axis in range(3):
            total = pair_sums(total, axis, accumulate)
        if whole:
            total >>= 3  # floor division by 8, for signed integers too
        else:
            total //= (counts[0][start // 2:(start + planes) // 2, None, None]
                       * counts[1][None, :, None] * counts[2][None, None, :]).astype(accumulate)
        out[start // 2:(start + planes) // 2] = total
    return out


def mean_accumulator(values: npt.NDArray[np.integer[Any]]) -> np.dtype[np.integer[Any]]:
    """The narrowest integer type that holds the sum of any 8 of values: their own if they
    are small enough (one pass over them to find out), 32 bits for 8- and 16-bit types,
    else 64."""
    own = values.dtype
    info = np.iinfo(own)
    if values.size and own.itemsize <= 4:
        low = int(values.min()) if own.kind == "i" else 0  # one pass fewer for unsigned
        if info.min <= 8 * low and 8 * int(values.max()) <= info.max:
            return own
    return np.dtype(("u" if own.kind == "u" else "i") + ("4" if own.itemsize <= 2 else "8"))


def pair_sums(array: npt.NDArray[np.integer[Any]], axis: int,
              accumulate: np.dtype[np.integer[Any]]) -> npt.NDArray[np.integer[Any]]:
    """Sums of neighbouring pairs along axis, as accumulate; at an odd extent the last
    element stands alone."""
    n = array.shape[axis]
    half = n // 2

    def along(start: int, stop: int, step: int = 1) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(start, stop, step),)

    out = np.empty(array.shape[:axis] + ((n + 1) // 2,) + array.shape[axis + 1:], accumulate)
    np.add(array[along(0, 2 * half, 2)], array[along(1, 2 * half, 2)], out=out[along(0, half)],
           dtype=accumulate)
    if n % 2:
        out[along(half, half + 1)] = array[along(n - 1, n)]
    return out


def reduces_in_slabs(method: str, dtype: npt.DTypeLike) -> bool:
    """Whether downsample's temporaries stay a few planes' (integer_mean), however large the
    array: then a whole region can be reduced at once, not 2x2x2 blocks at a time."""
    return method == "mean" and np.dtype(dtype).kind in "iu"


def reduction_bytes(method: str, itemsize: int) -> int:
    """Peak bytes of downsample's temporaries per voxel reduced (measured with tracemalloc for
    itemsizes 1-8, rounded up): mode counts every group's candidates in int64."""
    return (24 if method == "mode" else 8) + 2 * itemsize


def check_method(method: str, dtype: npt.DTypeLike) -> None:
    """Refuse a downsampling method unknown, or mode of a volume that is not integer labels."""
    if method not in METHODS:
        raise BlockfsError(f"unknown downsampling method {method!r}: use mean or mode")
    if method == "mode" and np.dtype(dtype).kind not in "iu":
        raise BlockfsError(f"mode is for integer label volumes, not {np.dtype(dtype)}")


def reduced_geometry(below: Geometry) -> Geometry:
    """The geometry of the level made from below: extents (n + 1) // 2, the same blocks."""
    return Geometry((below.x_extent + 1) // 2, (below.y_extent + 1) // 2,
                    (below.z_extent + 1) // 2, *below.block_size[::-1])


def new_level(geometry: Geometry, dtype: npt.DTypeLike, path: str, comm: "MPI.Comm | None",
              **options: Any) -> Directory:
    """A new volume (not yet created) of geometry at path, one data file per rank."""
    zb, yb, xb = geometry.block_size
    return Directory(geometry.x_extent, geometry.y_extent, geometry.z_extent, dtype, path,
                     comm=comm, x_block_size=xb, y_block_size=yb, z_block_size=zb, **options)


def reduced_volume(below: Directory, path: str, comm: "MPI.Comm | None",
                   **options: Any) -> Directory:
    """A new volume (not yet created) for below reduced 2x2x2 at path: extents (n + 1) // 2,
    below's dtype and block size, one data file per rank."""
    return new_level(reduced_geometry(below.geometry), below.dtype, path, comm, **options)


def in_memory(geometry: Geometry, itemsize: int) -> bool:
    """Whether a level of geometry, and every level above it, is made in rank 0's memory: it
    has at most MIN_BLOCKS_PER_RANK blocks, so rank 0 alone would write it anyway, in at most
    TOP_LEVEL_BYTES (blocks of 256^3 would need gigabytes)."""
    return (geometry.block_count <= MIN_BLOCKS_PER_RANK
            and int(np.prod(geometry.shape)) * itemsize <= TOP_LEVEL_BYTES)


def held_level3_bytes(level2: Geometry, itemsize: int, memory: int, reduction: int) -> int:
    """The bytes of level 3 that blockfs-write's pass keeps (each rank the 2x2x2 reduction of
    the level-2 blocks it writes) so that levels 3.. are made without reading level 2 back:
    level 3's size when it is made in memory (in_memory) from whole level-2 blocks (of even
    sizes: no 2x2x2 group straddles two), within an eighth of the memory budget and leaving
    the pass its 2x2x2 blocks a unit (convert.blocks_that_fit); else 0."""
    level3 = reduced_geometry(level2)
    nbytes = int(np.prod(level3.shape)) * itemsize
    if (not in_memory(level3, itemsize) or any(n % 2 for n in level2.block_size)
            or nbytes > memory // 8):
        return 0
    fits = blocks_that_fit(level2.block_size, itemsize, memory - nbytes, reduction) >= 8
    return nbytes if fits else 0


def open_level2(level1: Directory, dest: str, comm: "MPI.Comm | None", resume: bool,
                break_lock: bool = False) -> Directory:
    """Level 2 of the pyramid in dest, for blockfs-write to fill in the same pass as level1
    (open to write, with blockfs-write's source record), with its compression. Collective.

    With resume, the volume there is resumed if it is one such a job started: the shape,
    dtype and block size of level1 reduced, its writer blockfs-write from level1's source.
    Every intact frame in it is then kept: convert writes a level-2 block only from the
    whole unit of source voxels under it, so no frame is reduced from part of a unit, and
    the source is level1's. Any other volume there is replaced.
    """
    path = level_path(dest, 2)
    source = level1.header.writer.get("source")
    target = reduced_volume(level1, path, comm, compression=level1.compression,
                            compression_level=level1.compression_level,
                            shuffle=level1.header.shuffle,
                            writer={"program": "blockfs-write", "level_1_source": source},
                            break_lock=break_lock)
    if resume:
        if parallel.from_rank0(comm, lambda: started_alike(path, target.header), BlockfsError):
            return Directory.resume(path, comm=comm, break_lock=break_lock)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    target.create()
    return target


def started_alike(path: str, header: Header) -> bool:
    """True if the volume at path was started as header describes it, by blockfs-write from
    the same source as header's level_1_source; logged when not."""
    if not os.path.exists(path):
        return False
    try:
        found = read_header(path)
    except (BlockfsError, OSError) as e:
        log.info("%s: unreadable (%s): made again", path, e)
        return False
    source, theirs = header.writer["level_1_source"], found.writer.get("level_1_source")
    alike = (found.version == header.version and found.geometry == header.geometry
             and found.dtype == header.dtype and found.writer.get("program") == "blockfs-write"
             and source is not None and theirs is not None and not differences(theirs, source))
    if not alike:
        log.info("%s: not started by blockfs-write --levels from this source and volume: "
                 "made again", path)
    return alike


def level_writers(comm: "MPI.Comm | None", n_blocks: int) -> int:
    """How many ranks write a level of n_blocks: every rank, or as many as have
    MIN_BLOCKS_PER_RANK blocks each (one at least), so that the small top levels of a big
    job make a few data files, not one per rank."""
    return max(1, min(parallel.size_of(comm), n_blocks // MIN_BLOCKS_PER_RANK))


def make_level(source_path: str, dest_path: str, method: str, comm: "MPI.Comm | None",
               silent: bool = False, **volume_options: Any) -> None:
    """Write the volume at dest_path, source reduced 2x2x2 (collective), on the first
    level_writers ranks (on_first_ranks)."""
    level = reduced_geometry(read_header(source_path).geometry)
    on_first_ranks(comm, level_writers(comm, level.block_count),
                   lambda writers: write_level(source_path, dest_path, method, writers, silent,
                                               **volume_options))


def on_first_ranks(comm: "MPI.Comm | None", writers: int,
                   task: Callable[["MPI.Comm | None"], None]) -> None:
    """Run task(sub) on the first `writers` ranks of comm (collective): sub is comm if that
    is all of them, else a communicator of their own (COMM_SELF for rank 0 alone, with no
    collective call to say so). The others wait, asleep, and raise what the writers agreed
    on failing; a writer's own failure ends the job (parallel.program)."""
    if writers == parallel.size_of(comm):
        task(comm)
        return
    assert comm is not None  # without one, the lone process is every writer
    from mpi4py import MPI
    rank = comm.Get_rank()
    if writers == 1:
        sub = MPI.COMM_SELF if rank == 0 else MPI.COMM_NULL
    else:
        sub = comm.Split(0 if rank < writers else MPI.UNDEFINED, rank)
    error = None
    if sub != MPI.COMM_NULL:
        try:
            task(sub)
        except Exception as e:
            if not getattr(e, "raised_by_every_rank", False):
                raise
            error = e  # the writers agreed on it; so must the ranks left out
        finally:
            if sub != MPI.COMM_SELF:
                sub.Free()
    parallel.idle_barrier(comm)
    message = comm.bcast(None if error is None else str(error), root=0)  # rank 0 writes
    if error is not None:
        raise error
    if message is not None:
        raise parallel.everywhere(BlockfsError(message))


def reduce_block(below: Directory | npt.NDArray[Any], origin: tuple[int, int, int],
                 shape: tuple[int, int, int], method: str) -> npt.NDArray[Any]:
    """The block at origin (x, y, z) of shape (z, y, x) of the level made from below (a volume
    or an array), from the 2x2x2 blocks below it."""
    (x, y, z), (zs, ys, xs) = origin, shape
    return downsample(below[2 * z:2 * (z + zs), 2 * y:2 * (y + ys), 2 * x:2 * (x + xs)], method)


def write_level(source_path: str, dest_path: str, method: str, comm: "MPI.Comm | None",
                silent: bool = False, **volume_options: Any) -> None:
    """make_level on the ranks of comm, all of which write. The new level's blocks are dealt
    out in runs, round-robin (convert.my_share); a rank reads, for each, only the (at most)
    2x2x2 blocks of the level below that cover it."""
    source = Directory.open(source_path)
    os.makedirs(os.path.dirname(dest_path), exist_ok=True)
    target = reduced_volume(source, dest_path, comm, **volume_options)
    target.create()
    mine = my_share(range(target.geometry.n_blocks), comm)  # block numbers: no list of all
    progress = Progress(comm, target.geometry.block_count,
                        f"mip {os.path.basename(os.path.dirname(dest_path))}", disable=silent)
    with target:
        for number in mine:
            origin = target.geometry.block_origin(number)
            block = reduce_block(source, origin, target.get_block_size(*origin), method)
            target.write_block(block, *origin)
            progress.update(1, block.nbytes)
        progress.close()
    source.close()


Pieces = dict[tuple[int, int, int], npt.NDArray[Any]]


def make_top_levels(dest: str, first: int, levels: int, method: str, comm: "MPI.Comm | None",
                    held: Pieces | None = None, silent: bool = False,
                    **volume_options: Any) -> None:
    """Make levels first..levels in rank 0's memory (collective; the other ranks wait), each
    written and committed before the next: level first from the level below, read 2x2x2
    blocks at a time, or from held, what blockfs-write's pass kept of it on every rank (the
    reductions of the blocks below each wrote, by origin below; one it kept on disk only,
    as a resumed job does, is read); every next level from the one before, in memory."""
    gathered = None if held is None else (comm.gather(held, root=0) if comm else [held])

    def top_levels(sub: "MPI.Comm | None") -> None:
        with Directory.open(level_path(dest, first - 1)) as below:
            geometry = reduced_geometry(below.geometry)
            if gathered is None:
                voxels = reduced(below, geometry, method)
            else:
                voxels = from_pieces(below, geometry, {k: v for part in gathered
                                                       for k, v in part.items()}, method)
        for level in range(first, levels + 1):
            path = level_path(dest, level)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            target = new_level(geometry, voxels.dtype, path, sub, **volume_options)
            target.create()
            progress = Progress(sub, geometry.block_count,
                                f"mip {os.path.basename(os.path.dirname(path))}", disable=silent)
            with target:
                target[:, :, :] = voxels
            progress.update(geometry.block_count, voxels.nbytes)
            progress.close()
            if level < levels:
                geometry = reduced_geometry(geometry)
                voxels = reduced(voxels, geometry, method)

    on_first_ranks(comm, 1, top_levels)


def reduced(below: Directory | npt.NDArray[Any], geometry: Geometry,
            method: str) -> npt.NDArray[Any]:
    """below (a volume or an array) reduced 2x2x2 into an array of geometry, a block at a time,
    so that downsample's temporaries stay a block's."""
    voxels = np.empty(geometry.shape, below.dtype)
    for x, y, z in geometry.block_origins():
        zs, ys, xs = geometry.block_shape(x, y, z)
        voxels[z:z + zs, y:y + ys, x:x + xs] = reduce_block(below, (x, y, z), (zs, ys, xs),
                                                            method)
    return voxels


def from_pieces(below: Directory, geometry: Geometry, pieces: Pieces,
                method: str) -> npt.NDArray[Any]:
    """The level of geometry made from below as an array, from pieces: the reductions of
    blocks below by their origin; a block below without one is read and reduced."""
    voxels = np.empty(geometry.shape, below.dtype)
    for x, y, z in below.geometry.block_origins():
        piece = pieces.get((x, y, z))
        if piece is None:
            zs, ys, xs = below.get_block_size(x, y, z)
            piece = downsample(below[z:z + zs, y:y + ys, x:x + xs], method)
        zs, ys, xs = piece.shape
        voxels[z // 2:z // 2 + zs, y // 2:y // 2 + ys, x // 2:x // 2 + xs] = piece
    return voxels


def info(dest: str, levels: int, voxel_size: Sequence[float], method: str = "mean"
         ) -> dict[str, Any]:
    """The precomputed `info` of a pyramid whose levels 1..levels exist in dest."""
    scales = []
    for level in range(1, levels + 1):
        volume = Directory.open(level_path(dest, level))
        r = 2 ** (level - 1)
        scales.append(dict(key=scale_key(level), size=[volume.x_extent, volume.y_extent,
                                                       volume.z_extent],
                           resolution=[v * r for v in voxel_size], voxel_offset=[0, 0, 0],
                           chunk_sizes=[[volume.x_block_size, volume.y_block_size,
                                         volume.z_block_size]], encoding="raw"))
        dtype = volume.dtype
        volume.close()
    return {"@type": "neuroglancer_multiscale_volume",
            "type": "segmentation" if method == "mode" else "image",
            "data_type": dtype.name, "num_channels": 1, "scales": scales}


def build(dest: str, levels: int, voxel_size: Sequence[float] = (1, 1, 1), method: str = "mean",
          comm: "MPI.Comm | None" = None, overwrite: bool = False, silent: bool = False,
          first: int = 2, break_lock: bool = False, held: Pieces | None = None) -> None:
    """Make levels first..levels of the pyramid in dest, each from the one below (levels
    below first exist: 1, or 1 and 2 that blockfs-write made in one pass), and write its info.

    Collective: each level is committed by every rank before the next starts. From the
    first level small enough (in_memory) up, rank 0 makes them in memory (make_top_levels,
    where held is described).
    Existing levels are replaced only with overwrite. Each level is locked while it is
    written; a level another job is writing is refused before any is made (break_lock:
    see lock.py).
    """
    if levels < 1:
        raise BlockfsError(f"--levels must be at least 1, not {levels}")
    base = Directory.open(level_path(dest, 1))
    check_method(method, base.dtype)
    itemsize = base.dtype.itemsize
    options = dict(compression=base.compression, compression_level=base.compression_level,
                   shuffle=base.header.shuffle)
    base.close()
    refuse_existing(dest, levels, overwrite, first)

    def check_levels_unlocked() -> None:
        for level in range(first, levels + 1):
            check_unlocked(level_path(dest, level), break_lock)

    parallel.on_rank0(comm, check_levels_unlocked, LockedError)
    geometry = read_header(level_path(dest, first - 1)).geometry
    for level in range(first, levels + 1):
        geometry = reduced_geometry(geometry)
        if in_memory(geometry, itemsize):
            make_top_levels(dest, level, levels, method, comm, held if level == first else None,
                            silent, break_lock=break_lock, **options)
            break
        make_level(level_path(dest, level - 1), level_path(dest, level), method, comm, silent,
                   break_lock=break_lock, **options)
    parallel.on_rank0(comm, lambda: write_info(dest, levels, voxel_size, method), BlockfsError)


def refuse_existing(dest: str, levels: int, overwrite: bool, first: int = 2) -> None:
    """Refuse to replace levels first..levels that exist in dest, unless overwrite."""
    for level in range(first, levels + 1):
        if os.path.exists(level_path(dest, level)) and not overwrite:
            raise BlockfsError(f"{level_path(dest, level)} exists; pass --overwrite to replace it")


def place_level1(source: str, dest: str, levels: int, move: bool = False,
                 comm: "MPI.Comm | None" = None, overwrite: bool = False, silent: bool = False,
                 break_lock: bool = False) -> str:
    """Copy (or move) the volume whose directory file is source into the pyramid folder dest
    as its level 1, <dest>/1_1_1/precomputed.blockfs, with blockfs-cp's (blockfs-mv's) code;
    returns that path. Collective.

    dest is created if missing. Nothing is moved when source is that level 1 already, or
    when one of levels 1..levels exists there without overwrite (refused first, so that a
    refused run leaves the source where it was).
    """
    target = level_path(dest, 1)

    def check() -> bool:
        if os.path.exists(target) and os.path.exists(source) and os.path.samefile(source, target):
            return True
        refuse_existing(dest, levels, overwrite, first=1)
        os.makedirs(dest, exist_ok=True)
        return False

    if relocate.on_rank0_shared(comm, check):  # refusals: RelocateErrors on every rank
        return target
    return relocate.relocate(source, target, move, force=overwrite, comm=comm, silent=silent,
                             break_lock=break_lock)


def write_info(dest: str, levels: int, voxel_size: Sequence[float], method: str) -> None:
    """Replace dest/info by the precomputed info of levels 1..levels."""
    text = json.dumps(info(dest, levels, voxel_size, method), indent=2)
    write_atomically(os.path.join(dest, "info"), text.encode())
