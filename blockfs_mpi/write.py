"""Convert a volume into blockfs, in parallel under mpiexec (or on one rank without it).

Usage:
  blockfs-write <source> <output> [options] [--metadata=<k=v>]...
  blockfs-write --help | --version

Sources:
  'planes/img_*.tif'   a glob of 2-D TIFF planes (quote it), sorted into z order
  stack.tif            one 3-D / multi-page TIFF
  file.h5:/dataset     a 3-D HDF5 dataset
  volume.npy           a 3-D NumPy file (memory-mapped)
  synthetic:ZxYxX      a deterministic microscopy-like volume, for trials and benchmarks
  image.ome.zarr       an OME-Zarr image's first level (image.ome.zarr/2 another level),
                       or a zarr v2 / v3 array folder (sharded or not)

Options:
  --block-size=<n>       Block edge in voxels, or z,y,x edges.  [default: 64]
  --compression=<name>   Blosc compressor: zstd, blosclz, lz4, lz4hc or zlib.  [default: zstd]
  --level=<n>            Compression level, 0-9 (5 = the original blockfs).  [default: 1]
  --dtype=<dtype>        Store voxels as this numpy dtype (default: the source's).
  --memory=<size>        Memory budget per rank with its unit, e.g. 512M or 4G.  [default: 1G]
  --data-dirs=<dirs>     Comma-separated existing folders to spread the data files over,
                         round-robin (several disks or OSTs); default: beside the output.
  --stripe-count=<n>     Lustre stripe count of new data and directory files (striping_factor).
  --stripe-size=<bytes>  Lustre stripe size of new data and directory files (striping_unit).
  --metadata=<k=v>       Application metadata, repeatable; values are JSON where they parse.
  --resume               Complete a killed job: keep every intact block, write the rest.
                         Refused if the source is not the one the volume was started from
                         (shape, dtype, plane names and sizes, sampled voxels).
  --force-source         With --resume: resume from a different source anyway.
  --overwrite            Replace an existing volume at <output>: the old version stays whole
                         and readable until the new one is committed.
  --break-lock           Take over the lock of <output> that a job on another host left
                         (one on this host whose process is gone is taken over anyway).
  --verify               Read the committed volume back and compare it with the source.
  --levels=<n>           Write a Neuroglancer pyramid of n mip levels: <output> is then a
                         folder, level 1 <output>/1_1_1/precomputed.blockfs (see
                         blockfs-downsample). Level 2 is made in the same pass as level 1,
                         levels 3.. from level 2; --resume completes both of a killed job.
                         More levels than halve the volume down to one voxel are capped,
                         with a warning.
  --voxel-size=<xyz>     Voxel size x,y,z with a unit, e.g. 1.8,1.8,2.0um (numbers alone are
                         nm), stored in the volume's metadata (VoxelSize, VoxelSizeUnit) and
                         given to the pyramid's info, serve and the exports. The original's
                         way, VoxelSize=[x,y,z] in micrometres by --metadata, is read alike.
  --unit=<unit>          The unit of the --voxel-size numbers: nm, um, mm or a UDUNITS name
                         such as micrometer.
  --labels               Downsample the pyramid by mode (integer labels), not mean.
  --silent               No progress bar.
  -h --help              Show this text.

Under `mpiexec -n N` every rank reads its own share of the source and writes
its own data file (<output>.<rank>); nothing is sent between ranks, and the
index is committed atomically at the end. Without mpiexec one process reads
and local writer processes (one per core) compress and write.
"""
import json
import logging
import os
import re
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from . import parallel, pyramid
from .compression import Compression
from .convert import NextLevel, blocks_in_budget, convert, open_output, verify
from .errors import BlockfsError
from .geometry import Geometry
from .identify import describe
from .options import number_in_range, parse_command_line, voxel_size_option
from .sources import SourceError, open_source
from .voxel_size import METADATA_SIZE, VoxelSize, from_metadata

log = logging.getLogger("blockfs_mpi")
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'512M', '4G', '4GiB', '64KB', '1048576' -> bytes. A number without a unit is bytes only
    from a mebibyte up: `--memory 2` meant 2G, not 2 bytes, and is refused."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMGT]?)(I?B?)", text.strip().upper())
    if not match:
        raise parallel.everywhere(BlockfsError(
            f"--memory {text!r}: not a size such as 512M or 4G"))
    size = int(float(match.group(1)) * UNITS[match.group(2)])
    if not (match.group(2) or match.group(3)) and size < UNITS["M"]:
        raise parallel.everywhere(BlockfsError(
            f"--memory {text!r} has no unit: give one, e.g. {match.group(1)}G or "
            f"{match.group(1)}M (a number alone is bytes, and at least 1048576 of them)"))
    return size


def check_data_dirs(text: str | None) -> list[str]:
    """The folders --data-dirs names (comma-separated), each of which must exist."""
    folders = [d for d in (text or "").split(",") if d]
    for folder in folders:
        if not os.path.isdir(folder):
            what = f"{describe(folder)}, not a folder" if os.path.exists(folder) else \
                "no such folder"
            raise parallel.everywhere(BlockfsError(
                f"--data-dirs: {folder}: {what}; create it first (data files go into existing "
                f"folders only)"))
    return folders


def parse_block_size(text: str) -> tuple[int, ...]:
    """'64' or '32,64,64' (z,y,x) -> (z, y, x)."""
    try:
        sizes = [int(n) for n in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or min(sizes) <= 0:
        raise BlockfsError(f"--block-size {text!r}: expected a positive integer or z,y,x")
    return tuple(sizes)


def parse_dtype(text: str | None, default: npt.DTypeLike) -> np.dtype[Any]:
    """--dtype as a numpy dtype (the source's own when not given)."""
    try:
        return np.dtype(text or default)
    except TypeError:
        raise BlockfsError(f"--dtype {text!r}: not a numpy data type such as uint16") from None


def parse_metadata(pairs: list[str]) -> dict[str, Any]:
    """['key=value', ...] -> dict; values are JSON where they parse, strings otherwise."""
    metadata: dict[str, Any] = {}  # JSON values
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BlockfsError(f"--metadata {pair!r}: expected key=value")
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return metadata


def striping_hints(args: Mapping[str, Any]) -> dict[str, int] | None:
    """MPI-IO hints for Lustre striping, from --stripe-count and --stripe-size."""
    hints: dict[str, int] = {}
    if args["--stripe-count"]:
        hints["striping_factor"] = number_in_range("--stripe-count", args["--stripe-count"], 1,
                                                   65535)
    if args["--stripe-size"]:
        hints["striping_unit"] = number_in_range("--stripe-size", args["--stripe-size"], 65536,
                                                 2 ** 32)
    return hints or None


def volume_metadata(args: Mapping[str, Any]) -> dict[str, Any]:
    """The application metadata of the new volume: --metadata, and --voxel-size (--unit)
    recorded as VoxelSize and VoxelSizeUnit."""
    metadata = parse_metadata(args["--metadata"])
    size = voxel_size_option(args["--voxel-size"], args["--unit"])
    if size is not None:
        if METADATA_SIZE in metadata:
            raise parallel.everywhere(BlockfsError(
                f"the voxel size is given twice, by --voxel-size and --metadata "
                f"{METADATA_SIZE}=: pass one"))
        metadata.update(size.metadata())
    return metadata


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    comm = parallel.world()
    rank = parallel.rank_of(comm)
    memory = parse_size(args["--memory"])
    data_dirs = check_data_dirs(args["--data-dirs"])
    block_size = parse_block_size(args["--block-size"])
    level = number_in_range("--level", args["--level"], 0, 9)
    hints = striping_hints(args)
    source = parallel.on_every_rank(comm, lambda: open_source(args["<source>"]), SourceError)
    dtype = parse_dtype(args["--dtype"], source.dtype)
    levels = number_in_range("--levels", args["--levels"], 1, 32) if args["--levels"] else 0
    levels = levels and pyramid.capped_levels(levels, source.shape, comm)
    metadata = volume_metadata(args)
    method = "mode" if args["--labels"] else "mean"
    if levels:
        pyramid.check_method(method, dtype)
    reduction = pyramid.reduction_bytes(method, dtype.itemsize) if levels >= 2 else 0
    held = 0
    if levels >= 3:  # level 3 kept in memory when small: levels 3.. made without reading 2
        level1 = Geometry(*source.shape[::-1], *block_size[::-1])
        held = pyramid.held_level3_bytes(pyramid.reduced_geometry(level1), dtype.itemsize,
                                         memory, reduction)
    blocks_in_budget(block_size, dtype.itemsize, memory, reduction)
    output = args["<output>"]
    if levels:  # a pyramid: level 1 goes to <output>/1_1_1/precomputed.blockfs
        output = pyramid.level_path(args["<output>"], 1)
        os.makedirs(os.path.dirname(output), exist_ok=True)
    if rank == 0:
        log.info("blockfs-write: %s -> %s on %d rank(s)", source.description, args["<output>"],
                 parallel.size_of(comm))
    directory = open_output(
        source, output, comm, block_size=block_size,
        dtype=dtype, resume=args["--resume"], overwrite=args["--overwrite"],
        break_lock=args["--break-lock"],
        spec=args["<source>"], force_source=args["--force-source"],
        data_dirs=data_dirs,
        compression=Compression.parse(args["--compression"]),
        compression_level=level, metadata=metadata, hints=hints)
    level2 = None
    if levels >= 2:  # made in the same pass as level 1, from the voxels it holds
        level2 = NextLevel(pyramid.open_level2(directory, args["<output>"], comm, args["--resume"],
                                               args["--break-lock"]),
                           partial(pyramid.downsample, method=method), reduction, held,
                           pyramid.reduces_in_slabs(method, dtype))
    summary = convert(source, directory, memory, silent=args["--silent"], level2=level2)
    if rank == 0:
        log.info("blockfs-write: %s", summary)
    if args["--verify"]:
        bad, read, seconds = verify(source, directory, memory, comm)
        if rank == 0:
            log.info("blockfs-write: verified %.1f MB read back at %.1f MB/s: %s", read / 1e6,
                     read / 1e6 / max(seconds, 1e-9),
                     "identical to the source" if not bad else f"{bad} units DIFFER")
        if bad:
            raise parallel.everywhere(  # bad counts every rank's units
                BlockfsError(f"verification failed: {bad} units differ from the source"))
    if levels:  # levels 3.. from level 2, and the info
        size = from_metadata(directory.metadata) or VoxelSize(1, 1, 1)  # as resumed, too
        pyramid.build(args["<output>"], levels, size.in_nanometers(), method, comm,
                      overwrite=True, silent=args["--silent"], first=3,
                      break_lock=args["--break-lock"],
                      held=level2.above if level2 else None)


if __name__ == "__main__":
    main()
