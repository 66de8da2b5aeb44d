"""blockfs_mpi: an MPI-first block store for huge 3D microscopy volumes.

    from blockfs_mpi import Directory
    volume = Directory.open("volume.blockfs")   # numpy-shaped: volume[..., 10], np.asarray
    array = blockfs_mpi.open_zarr("volume.blockfs")   # zarr-python 3, in place (zarr extra)

Module map: the library, layer by layer, then the programs (each a docopt usage and a
main(argv) over the library; `python -m blockfs_mpi.<program>` or its console script).

  on-disk bytes  format (headers and what differs between formats 1 and 2, index entries,
                 frames, frame rows), geometry (block arithmetic), compression (Blosc
                 codecs), errors
  one volume     reader (pread of entries and payloads), index (the whole index, read in
                 runs), index_build (the index from frame rows, whole or a rank's slice),
                 writer (one append-only data file), fileio (whole writes to a descriptor),
                 atomic (replacing a file atomically), scan (frames of a data file), commit
                 (the commit protocol: a directory file committed, collectively under MPI),
                 generation (file names of a replacing volume), lock (one writer per volume),
                 completion (the writer record), identify (what a path is),
                 open_files (a bounded cache of open files)
  the API        directory (Directory: create, write, read, NumPy face), indexing (keys),
                 write_backends (how a Directory writes: a rank's file, writer processes),
                 local_writers, writer_process, writer_registry (writers without MPI)
  MPI            parallel (world, rank-0 output, agreement, aborts), dealer (work on demand),
                 progress (one bar per job)
  engines        convert (blockfs-write), export (what the exports share), export_tiff,
                 export_jp2k, export_hdf (planes as TIFF or JPEG 2000 files, an HDF5
                 dataset), pyramid, relocate (move or copy a volume), data_files (a directory
                 file's data file names: check, rewrite, rebase), check (what fsck checks:
                 blocks verified, frames not committed), report (what a check found, merged
                 across ranks), repair (the index rebuilt from the frames), describe (a
                 volume's data files and blockfs-info's description), catalog (what serve
                 serves), server (serve's HTTP face), sources (what blockfs-write reads),
                 synthetic, voxel_size, options
  interop        zarr_metadata, zarr_view, zarr_store, zarr_shards, zarr_export (a volume
                 or pyramid as an OME-Zarr image: the plan, the shards, --resume),
                 zarr_chunks (a zarr source's stored chunks, copied as blocks by
                 blockfs-write), napari_reader
  programs       write, blockfs2tif, blockfs2jp2k, blockfs2hdf, blockfs2zarr, mv and cp
                 (relocate_cli: the command line they share), rebase, info, fsck, downsample,
                 serve
"""
from typing import TYPE_CHECKING

from .compression import Compression
from .directory import Directory
from .errors import (
    BlockCoordinateError,
    BlockfsError,
    BlockShapeError,
    CorruptBlockError,
    DuplicateBlockError,
    FormatError,
    OptionError,
    ReadOnlyError,
    WriterError,
)

if TYPE_CHECKING:  # zarr is an extra, imported by open_zarr only when called
    import zarr
    from zarr.core.metadata import ArrayV3Metadata

__version__ = "0.1.0"


def open_zarr(path: str) -> "zarr.Array[ArrayV3Metadata] | zarr.Group":
    """A volume (directory file) as a read-only zarr.Array, or a pyramid folder as a
    zarr.Group holding an OME-Zarr 0.5 image, read in place (needs the `zarr` extra;
    imported only when called). See docs/zarr.md."""
    from .zarr_store import open_zarr as open_store
    return open_store(path)


__all__ = ["Directory", "open_zarr", "Compression", "BlockfsError", "OptionError", "FormatError",
           "CorruptBlockError", "BlockCoordinateError", "BlockShapeError", "ReadOnlyError",
           "DuplicateBlockError", "WriterError", "__version__"]
