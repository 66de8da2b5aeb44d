"""Copy a blockfs volume into a dataset of an HDF5 file, chunked like its blocks.

The dataset <name> (a path; missing groups are created) goes into <dest>,
which may exist (its other datasets are kept) or not (it is created). Two ways
to run, chosen by the h5py in use and logged at the start:

  - h5py built for MPI (h5py.get_config().mpi) under mpiexec: every rank
    writes its z-slabs collectively through the mpio driver.
  - stock (serial) h5py, or no mpiexec: every rank reads and compresses the
    chunks of its z-slabs and rank 0 writes them with write_direct_chunk
    (with lzf, rank 0 also compresses). The file is an ordinary chunked
    HDF5 dataset either way.

See docs/export.md for how to get a parallel h5py on a cluster.

Usage:
  blockfs2hdf <src> <dest> <name> [--compression <compression>] [--compression-opts <opts>] [--overwrite] [--silent]
  blockfs2hdf -h | --help | --version

Options:
  -h --help                      Show this text.
  --compression <compression>    The HDF5 filter of the dataset's chunks: gzip, lzf or none [default: gzip].
  --compression-opts <opts>      Filter options as in h5py: the gzip level 0-9 (default 4); none for lzf.
  --overwrite                    Replace an existing dataset <name> in <dest>.
  --silent                       Do not show the progress bar.
"""
import logging
import os
import zlib

import h5py
import numpy as np

from . import export, parallel
from .errors import BlockfsError
from .identify import not_a_dataset
from .options import number_in_range, parse_command_line
from .progress import Progress
from .voxel_size import from_metadata

log = logging.getLogger("blockfs_mpi")


def hdf_filter(compression="gzip", opts=None):
    """(compression, compression_opts) for h5py from command-line strings, checked."""
    kind = str(compression).lower()
    if kind == "gzip":
        return "gzip", 4 if opts is None else number_in_range("--compression-opts", opts, 0, 9)
    if kind not in ("lzf", "none"):
        raise ValueError(f"--compression must be gzip, lzf or none, not {compression!r}")
    if opts is not None:
        raise ValueError(f"--compression {kind} takes no --compression-opts")
    return (None if kind == "none" else "lzf"), None


def parallel_h5py(comm):
    """True when ranks can write collectively: MPI in use and h5py built for it."""
    return comm is not None and h5py.get_config().mpi


def check_destination(dest, name, overwrite):
    """Refuse a dest that is not an HDF5 file, or holds <name> already and overwrite is off."""
    if not os.path.exists(dest):
        return
    if not h5py.is_hdf5(dest):
        raise BlockfsError(f"{dest} exists and is not an HDF5 file")
    with h5py.File(dest, "r") as f:
        if name in f and not isinstance(f[name], h5py.Dataset):  # never replaced, even with
            raise BlockfsError(not_a_dataset(f"{dest}:{name}", f[name]) +  # --overwrite
                               "; name a new dataset or one of these")
        if name in f and not overwrite:
            raise BlockfsError(f"{dest}: dataset {name} exists; use --overwrite to replace it")


def write_voxel_size(dest, name, voxel):
    """Record voxel (a VoxelSize) on dataset name of dest as element_size_um: z, y, x in
    micrometres, the attribute Fiji's HDF5 plugin and ilastik read."""
    with h5py.File(dest, "a") as f:
        f[name].attrs["element_size_um"] = [v / 1000 for v in voxel.in_nanometers()[::-1]]


def create_dataset(f, name, directory, compression, opts):
    """The new dataset <name> of f, replacing an old one, chunked like the volume's blocks
    (collective under mpio)."""
    if name in f:
        del f[name]
    chunks = tuple(min(b, n) for b, n in zip(directory.block_size, directory.shape))
    return f.create_dataset(name, shape=directory.shape, dtype=directory.dtype, chunks=chunks,
                            compression=compression, compression_opts=opts)


def chunks_per_slab(directory):
    """HDF5 chunks in one z-slab (one per block), for the progress bar."""
    g = directory.geometry
    return g.n_y_blocks * g.n_x_blocks


def write_collective(dset, z0, slab):
    """One collective write of slab at z0, or of nothing when slab is None (every rank calls
    this the same number of times; h5py's own dset[...] = skips empty selections)."""
    fspace = dset.id.get_space()
    if slab is None:
        slab = np.zeros(1, dset.dtype)
        fspace.select_none()
        mspace = h5py.h5s.create_simple((1,))
        mspace.select_none()
    else:
        fspace.select_hyperslab((z0, 0, 0), slab.shape)
        mspace = h5py.h5s.create_simple(slab.shape)
    transfer = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    transfer.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    dset.id.write(mspace, fspace, slab, dxpl=transfer)


def export_collectively(directory, dest, name, compression, opts, comm, progress):
    """Parallel h5py: each rank writes its z-slabs into dest through the mpio driver."""
    slabs = export.slabs(directory.geometry)
    with h5py.File(dest, "a", driver="mpio", comm=comm) as f:
        dset = create_dataset(f, name, directory, compression, opts)
        for i in export.rounds(len(slabs), comm):
            if i is None:
                write_collective(dset, 0, None)
                continue
            z0, z1 = slabs[i]
            slab = directory[z0:z1]
            write_collective(dset, z0, slab)
            progress.update(chunks_per_slab(directory), slab.nbytes)


def encode_slab(directory, z0, compression, opts):
    """A z-slab ready for rank 0: gzip chunks as (offset, bytes), else (z0, array) for h5py."""
    if compression != "gzip":
        z1 = min(z0 + directory.z_block_size, directory.z_extent)
        return [(z0, directory[z0:z1])]
    full = np.zeros(directory.block_size, directory.dtype)
    chunks = []
    _, ny, nx = directory.shape
    for y in range(0, ny, directory.y_block_size):
        for x in range(0, nx, directory.x_block_size):
            block = directory.read_block(x, y, z0)
            if block.shape != full.shape:  # HDF5 stores edge chunks whole, padded with zeros
                full[...] = 0
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            chunks.append(((z0, y, x), zlib.compress(block, opts)))
    return chunks


def export_direct(directory, dest, name, compression, opts, comm, progress):
    """Serial h5py: ranks encode their z-slabs, rank 0 gathers and writes them, round by round."""
    slabs = export.slabs(directory.geometry)
    root = parallel.rank_of(comm) == 0
    f = h5py.File(dest, "a") if root else None
    try:
        dset = create_dataset(f, name, directory, compression, opts) if root else None
        for i in export.rounds(len(slabs), comm):
            payload = [] if i is None else encode_slab(directory, slabs[i][0], compression, opts)
            if i is not None:
                z0, z1 = slabs[i]
                progress.update(chunks_per_slab(directory),
                                (z1 - z0) * directory.y_extent * directory.x_extent
                                * directory.dtype.itemsize)
            payloads = [payload] if comm is None else comm.gather(payload, root=0)
            for where, data in (item for p in (payloads or []) for item in p):
                if isinstance(data, bytes):
                    dset.id.write_direct_chunk(where, data)
                else:
                    dset[where:where + len(data)] = data
    finally:
        if f is not None:
            f.close()


def export_hdf(directory, dest, name, compression="gzip", opts=None, overwrite=False, comm=None,
               silent=False):
    """Write directory into dataset name of HDF5 file dest; (chunks, bytes, seconds) of the job."""
    compression, opts = hdf_filter(compression, opts)
    collective = parallel_h5py(comm)
    if parallel.rank_of(comm) == 0:
        log.info("blockfs2hdf: %s", "collective writes through the mpio driver (parallel h5py)"
                 if collective else "ranks compress chunks, rank 0 writes them with "
                 "write_direct_chunk (serial h5py)")
    parallel.on_rank0(comm, lambda: check_destination(dest, name, overwrite), BlockfsError)
    progress = Progress(comm, directory.geometry.block_count, "blockfs2hdf", unit="chunk",
                        disable=silent)
    write = export_collectively if collective else export_direct
    write(directory, dest, name, compression, opts, comm, progress)
    totals = progress.close()
    voxel = from_metadata(directory.metadata)
    if voxel is not None:
        parallel.on_rank0(comm, lambda: write_voxel_size(dest, name, voxel), BlockfsError)
    export.report(comm, "blockfs2hdf", "chunk", *totals)
    return totals


@parallel.program
def main(argv=None):
    args = parse_command_line(__doc__, argv)
    hdf_filter(args["--compression"], args["--compression-opts"])  # bad options fail first
    directory = export.open_volume(args["<src>"], parallel.world())
    export_hdf(directory, args["<dest>"], args["<name>"], args["--compression"],
               args["--compression-opts"], args["--overwrite"], parallel.world(), args["--silent"])


if __name__ == "__main__":
    main()
