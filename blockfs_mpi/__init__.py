"""blockfs_mpi: an MPI-first block store for huge 3D microscopy volumes.

    from blockfs_mpi import Directory
    volume = Directory.open("volume.blockfs")   # numpy-shaped: volume[..., 10], np.asarray
    array = blockfs_mpi.open_zarr("volume.blockfs")   # zarr-python 3, in place (zarr extra)
"""
from .compression import Compression
from .directory import Directory
from .errors import (BlockCoordinateError, BlockfsError, BlockShapeError, CorruptBlockError,
                     DuplicateBlockError, FormatError, OptionError, ReadOnlyError, WriterError)

__version__ = "0.1.0"


def open_zarr(path):
    """A volume (directory file) as a read-only zarr.Array, or a pyramid folder as a
    zarr.Group holding an OME-Zarr 0.5 image, read in place (needs the `zarr` extra;
    imported only when called). See docs/zarr.md."""
    from .zarr_store import open_zarr as open_store
    return open_store(path)


__all__ = ["Directory", "open_zarr", "Compression", "BlockfsError", "OptionError", "FormatError",
           "CorruptBlockError", "BlockCoordinateError", "BlockShapeError", "ReadOnlyError",
           "DuplicateBlockError", "WriterError", "__version__"]
