"""Planes as JPEG 2000 files (glymur): every z plane of a volume to a file of its own, each
strip of whole block rows one tile (the library of blockfs2jp2k; export.py does the sharing
out)."""
from collections.abc import Iterator
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import export

if TYPE_CHECKING:
    from mpi4py import MPI

    from .directory import Directory

OPENJPEG_HELP = ("install Debian/Ubuntu's libopenjp2-7 (apt-get install libopenjp2-7), or point "
                 "glymur at another libopenjp2 (e.g. the one in Pillow's wheel, pillow.libs/) with "
                 "'[library]' 'openjp2 = PATH' in $XDG_CONFIG_HOME/glymur/glymurrc")


def require_glymur() -> ModuleType:
    """The glymur module, or a RuntimeError saying what is missing and how to install it."""
    try:
        import glymur
    except ImportError as e:
        raise RuntimeError(f"blockfs2jp2k needs glymur ({e}): pip install 'blockfs_mpi[jp2k]'") \
            from None
    if glymur.version.openjpeg_version_tuple < (2, 4, 0):
        raise RuntimeError(f"glymur found no OpenJPEG >= 2.4 library (found "
                           f"{glymur.version.openjpeg_version}): {OPENJPEG_HELP}")
    module: ModuleType = glymur  # untyped (ignore_missing_imports): Any to mypy
    return module


# What a rank holds per voxel of a stripe, in stripes: the stripe, OpenJPEG's tile in 32-bit
# integers and its wavelet and code-block state (measured: ~7 for uint16 tiles).
TILE_COPIES = 12


def write_plane(path: str, strips: Iterator[npt.NDArray[Any]], shape: tuple[int, int],
                dtype: np.dtype[Any], rows: int, psnr: float | None = None) -> None:
    """One plane to one JPEG 2000 file from an iterator of its strips of `rows` rows (the
    last may be shorter), each encoded as one tile as it comes; lossless unless psnr (dB)."""
    glymur = require_glymur()
    options = {"psnr": [psnr]} if psnr else {}
    if rows >= shape[0]:  # one tile: glymur refuses to write it tile by tile
        glymur.Jp2k(path, data=next(strips), **options)
    else:
        jp2 = glymur.Jp2k(path, shape=shape, tilesize=(rows, shape[1]), **options)
        for tile, strip in zip(jp2.get_tilewriters(), strips):
            tile[:] = strip
    if next(strips, None) is not None:
        raise RuntimeError(f"{path}: more strips than the plane's {shape[0]} rows")


def export_jp2k(directory: "Directory", pattern: str, psnr: float | None = None,
                comm: "MPI.Comm | None" = None, n_workers: int | None = None,
                silent: bool = False, overwrite: bool = False, resume: bool = False,
                memory: int | None = None) -> tuple[int, int, float]:
    """Write every plane of directory to pattern % z; (planes, bytes, seconds) of the job.
    Existing planes are refused unless overwrite (replace) or resume (keep, write the rest).
    memory: the budget per rank in bytes (default export.DEFAULT_MEMORY)."""
    export.check_pattern(pattern)
    require_glymur()
    make_work = partial(export.PlaneStripes, directory, pattern, partial(write_plane, psnr=psnr),
                        memory or export.memory_option(None), TILE_COPIES)
    return export.export_planes(directory, pattern, make_work, comm, n_workers, silent,
                                "blockfs2jp2k", overwrite, resume)
