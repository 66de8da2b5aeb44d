"""blockfs_mpi: an MPI-first block store for huge 3D microscopy volumes.

    from blockfs_mpi import Directory
"""
from .compression import Compression
from .directory import Directory
from .errors import (BlockCoordinateError, BlockfsError, BlockShapeError, CorruptBlockError,
                     DuplicateBlockError, FormatError, OptionError, ReadOnlyError, WriterError)

__version__ = "0.1.0"

__all__ = ["Directory", "Compression", "BlockfsError", "OptionError", "FormatError",
           "CorruptBlockError", "BlockCoordinateError", "BlockShapeError", "ReadOnlyError",
           "DuplicateBlockError", "WriterError", "__version__"]
