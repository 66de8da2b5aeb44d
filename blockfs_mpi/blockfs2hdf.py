"""Copy a blockfs volume into a dataset of an HDF5 file, chunked like its blocks.

The dataset <name> (a path; missing groups are created) goes into <dest>,
which may exist (its other datasets are kept) or not (it is created). Two ways
to run, chosen by the h5py in use and logged at the start:

  - h5py built for MPI (h5py.get_config().mpi) under mpiexec: every rank
    writes its pieces (export.Pieces) as hyperslabs, in collective rounds.
  - stock (serial) h5py, or no mpiexec: every rank reads and compresses the
    chunks of its pieces and sends them to rank 0, which writes them as they
    come with write_direct_chunk (with lzf, rank 0 also compresses). A rank
    sends one piece at a time and waits until rank 0 has taken it, so rank 0
    holds its own piece and one received, never more. The file is an
    ordinary chunked HDF5 dataset either way.

Pieces are one block deep and one block row high, as many blocks wide as the
memory budget (--memory) allows, so every rank stays within it for any plane
size.

See docs/export.md for how to get a parallel h5py on a cluster.

Usage:
  blockfs2hdf <src> <dest> <name> [--compression <compression>] [--compression-opts <opts>] [--memory <size>] [--overwrite] [--silent]
  blockfs2hdf -h | --help | --version

Options:
  -h --help                      Show this text.
  --compression <compression>    The HDF5 filter of the dataset's chunks: gzip, lzf or none [default: gzip].
  --compression-opts <opts>      Filter options as in h5py: the gzip level 0-9 (default 4); none for lzf.
  --memory <size>                Memory budget per rank with its unit, e.g. 512M or 4G [default: 1G].
  --overwrite                    Replace an existing dataset <name> in <dest>.
  --silent                       Do not show the progress bar.
"""
import logging
import os
import time
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
    return f.create_dataset(name, shape=directory.shape, dtype=directory.dtype,
                            chunks=chunk_shape(directory), compression=compression,
                            compression_opts=opts)


def chunk_shape(directory):
    """The dataset's chunks: the volume's blocks, no larger than the volume."""
    return tuple(min(b, n) for b, n in zip(directory.block_size, directory.shape))


# Copies of a piece a rank may hold at once: the piece read, its chunks padded and compressed,
# and on rank 0 a piece received (pickled, then unpickled) while its own is being made.
PIECE_COPIES = 8
TAG = 7201  # pieces sent to rank 0
POLL = 1e-3  # seconds between looks for a message or for a send to complete


def write_collective(dset, origin, piece):
    """One collective write of piece at origin (z, y, x), or of nothing when piece is None
    (every rank calls this the same number of times; h5py's own dset[...] = skips empty
    selections)."""
    fspace = dset.id.get_space()
    if piece is None:
        piece = np.zeros(1, dset.dtype)
        fspace.select_none()
        mspace = h5py.h5s.create_simple((1,))
        mspace.select_none()
    else:
        fspace.select_hyperslab(origin, piece.shape)
        mspace = h5py.h5s.create_simple(piece.shape)
    transfer = h5py.h5p.create(h5py.h5p.DATASET_XFER)
    transfer.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    dset.id.write(mspace, fspace, piece, dxpl=transfer)


def export_collectively(directory, dest, name, compression, opts, comm, progress, pieces):
    """Parallel h5py: each rank writes its pieces into dest through the mpio driver, one
    hyperslab per collective round."""
    with h5py.File(dest, "a", driver="mpio", comm=comm) as f:
        dset = create_dataset(f, name, directory, compression, opts)
        for i in export.rounds(len(pieces), comm):
            if i is None:
                write_collective(dset, None, None)
                continue
            z0, z1, y0, y1, x0, x1 = pieces[i]
            piece = directory[z0:z1, y0:y1, x0:x1]
            write_collective(dset, (z0, y0, x0), piece)
            progress.update(chunks_in(directory, pieces[i]), piece.nbytes)


def chunks_in(directory, piece):
    """HDF5 chunks (one per block) in a piece, for the progress bar."""
    return -(-(piece[5] - piece[4]) // directory.x_block_size)


def encode_piece(directory, piece, compression, opts):
    """A piece ready for rank 0: its chunks as ((z, y, x), bytes), compressed with gzip or
    raw, edge chunks padded with zeros as HDF5 stores them; with lzf ((z, y, x), array) of
    the whole piece for h5py to compress."""
    z0, z1, y0, y1, x0, x1 = piece
    if compression == "lzf":
        return [((z0, y0, x0), directory[z0:z1, y0:y1, x0:x1])]
    full = np.zeros(chunk_shape(directory), directory.dtype)
    chunks = []
    for x in range(x0, x1, directory.x_block_size):
        block = directory.read_block(x, y0, z0)
        if block.shape != full.shape:
            full[...] = 0
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        chunks.append(((z0, y0, x), zlib.compress(block, opts) if compression else
                       block.tobytes()))
    return chunks


def write_encoded(dset, chunks):
    """Write what encode_piece made."""
    for where, data in chunks:
        if isinstance(data, bytes):
            dset.id.write_direct_chunk(where, data)
        else:
            z, y, x = where
            dset[z:z + data.shape[0], y:y + data.shape[1], x:x + data.shape[2]] = data


def export_direct(directory, dest, name, compression, opts, comm, progress, pieces):
    """Serial h5py: ranks encode their pieces (round-robin) and send them to rank 0, one at a
    time, each send ending only when rank 0 has received it (flow control); rank 0 writes
    its own pieces and those it receives as they come."""
    rank, size = parallel.rank_of(comm), parallel.size_of(comm)
    mine = range(rank, len(pieces), size)

    def encoded(i):
        chunks = encode_piece(directory, pieces[i], compression, opts)
        z0, z1, y0, y1, x0, x1 = pieces[i]
        progress.update(chunks_in(directory, pieces[i]),
                        (z1 - z0) * (y1 - y0) * (x1 - x0) * directory.dtype.itemsize)
        return chunks

    if rank != 0:
        for i in mine:
            _send_to_root(comm, encoded(i))
        _send_to_root(comm, None)
        return
    with h5py.File(dest, "a") as f:
        dset = create_dataset(f, name, directory, compression, opts)
        senders = size - 1
        for i in mine:
            write_encoded(dset, encoded(i))
            senders -= _write_received(comm, dset, wait=False)
        while senders:
            senders -= _write_received(comm, dset, wait=True)


def _send_to_root(comm, message):
    """Send message to rank 0 and return once rank 0 has received it, sleeping between
    checks (MPICH busy-polls in blocking calls: a core rank 0 may need)."""
    request = comm.issend(message, dest=0, tag=TAG)
    while not request.Test():
        time.sleep(POLL)


def _write_received(comm, dset, wait):
    """Rank 0: receive and write the pieces waiting (with wait, at least one message); the
    count of ranks that said they have finished."""
    finished = 0
    if comm is None:
        return 0
    while True:
        if not comm.Iprobe(source=parallel.any_source(), tag=TAG):
            if not wait:
                return finished
            time.sleep(POLL)
            continue
        message = comm.recv(source=parallel.any_source(), tag=TAG)
        if message is None:
            finished += 1
        else:
            write_encoded(dset, message)
        del message
        wait = False


def export_hdf(directory, dest, name, compression="gzip", opts=None, overwrite=False, comm=None,
               silent=False, memory=None):
    """Write directory into dataset name of HDF5 file dest; (chunks, bytes, seconds) of the job.
    memory: the budget per rank in bytes (default export.DEFAULT_MEMORY)."""
    compression, opts = hdf_filter(compression, opts)
    pieces = export.Pieces(directory.geometry, directory.dtype.itemsize,
                           memory or export.memory_option(None), PIECE_COPIES)
    collective = parallel_h5py(comm)
    if parallel.rank_of(comm) == 0:
        log.info("blockfs2hdf: %s", "collective writes through the mpio driver (parallel h5py)"
                 if collective else "ranks compress chunks, rank 0 writes them with "
                 "write_direct_chunk (serial h5py)")
    parallel.on_rank0(comm, lambda: check_destination(dest, name, overwrite), BlockfsError)
    progress = Progress(comm, directory.geometry.block_count, "blockfs2hdf", unit="chunk",
                        disable=silent)
    write = export_collectively if collective else export_direct
    write(directory, dest, name, compression, opts, comm, progress, pieces)
    totals = progress.close()
    voxel = from_metadata(directory.metadata)
    if voxel is not None:
        parallel.on_rank0(comm, lambda: write_voxel_size(dest, name, voxel), BlockfsError)
    export.report(comm, "blockfs2hdf", "chunk", *totals)
    return totals


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    hdf_filter(args["--compression"], args["--compression-opts"])  # bad options fail first
    memory = export.memory_option(args["--memory"])
    directory = export.open_volume(args["<src>"], parallel.world())
    export_hdf(directory, args["<dest>"], args["<name>"], args["--compression"],
               args["--compression-opts"], args["--overwrite"], parallel.world(), args["--silent"],
               memory)


if __name__ == "__main__":
    main()
