"""Planes as TIFF files: every z plane of a volume to a TIFF file of its own, written by
strips of whole block rows (the library of blockfs2tif; export.py does the sharing out)."""
import zlib
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import tifffile

from . import export
from .voxel_size import VoxelSize, from_metadata

if TYPE_CHECKING:
    from mpi4py import MPI

    from .directory import Directory

BIGTIFF_THRESHOLD = 2 ** 32 - 2 ** 25  # tifffile's: 4 GiB less room for metadata


def tiff_options(nbytes: int, level: int, voxel: VoxelSize | None = None) -> dict[str, Any]:
    """tifffile.imwrite keywords for a plane of nbytes at zlib level (0 = none), with the
    resolution tags of voxel (a VoxelSize) if given: pixels per centimetre, ResolutionUnit
    CENTIMETER (baseline TIFF; ImageJ and Fiji show such sizes in micrometres)."""
    options: dict[str, Any] = dict(bigtiff=nbytes > BIGTIFF_THRESHOLD, photometric="minisblack")
    if level:
        options.update(compression="zlib", compressionargs={"level": level})
    if voxel is not None:
        x, y, _ = voxel.in_nanometers()
        options.update(resolution=(1e7 / x, 1e7 / y), resolutionunit="CENTIMETER")
    return options


def write_plane(path: str, strips: Iterator[npt.NDArray[Any]], shape: tuple[int, int],
                dtype: np.dtype[Any], rows: int, level: int,
                voxel: VoxelSize | None = None) -> None:
    """One plane to one TIFF file from an iterator of its strips of `rows` rows (the last
    may be shorter), each compressed as it comes and written as one TIFF strip."""
    nbytes = shape[0] * shape[1] * dtype.itemsize
    # numpy arrays are buffers, typed as such (collections.abc.Buffer) from Python 3.12 only
    encoded = (zlib.compress(strip, level) if level else strip.tobytes()  # type: ignore[arg-type]
               for strip in strips)
    tifffile.imwrite(path, encoded, shape=shape, dtype=dtype, rowsperstrip=rows,
                     **tiff_options(nbytes, level, voxel))


def export_tiff(directory: "Directory", pattern: str, level: int = 3,
                comm: "MPI.Comm | None" = None, n_workers: int | None = None, y_stripe: int = 0,
                silent: bool = False, overwrite: bool = False, resume: bool = False,
                memory: int | None = None) -> tuple[int, int, float]:
    """Write every plane of directory to pattern % z; (planes, bytes, seconds) of the job.
    Existing planes are refused unless overwrite (replace) or resume (keep, write the rest).
    memory: the budget per rank in bytes (default export.DEFAULT_MEMORY); y_stripe: at most
    that many rows per strip (0: as many as memory allows)."""
    export.check_pattern(pattern)
    write = partial(write_plane, level=level, voxel=from_metadata(directory.metadata))
    make_work = partial(export.PlaneStripes, directory, pattern, write,
                        memory or export.memory_option(None), rows=y_stripe)
    return export.export_planes(directory, pattern, make_work, comm, n_workers, silent,
                                "blockfs2tif", overwrite, resume)
