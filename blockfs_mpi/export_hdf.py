"""A volume into a dataset of an HDF5 file, chunked like its blocks (the library of
blockfs2hdf; its usage tells the two ways it runs: collective writes with a parallel h5py,
else ranks compress chunks and rank 0 writes them)."""
import logging
import os
import time
import zlib
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import numpy.typing as npt

from . import export, parallel
from .errors import BlockfsError
from .identify import not_a_dataset
from .options import number_in_range
from .progress import Progress
from .voxel_size import VoxelSize, from_metadata

if TYPE_CHECKING:
    from mpi4py import MPI

    from .directory import Directory

log = logging.getLogger("blockfs_mpi")

Piece = tuple[int, int, int, int, int, int]  # (z0, z1, y0, y1, x0, x1), as export.Pieces
# A piece ready for rank 0: ((z, y, x), compressed or raw chunk bytes, or an array for lzf).
Encoded = list[tuple[tuple[int, int, int], "bytes | npt.NDArray[Any]"]]


def hdf_filter(compression: str = "gzip",
               opts: str | int | None = None) -> tuple[str | None, int | None]:
    """(compression, compression_opts) for h5py from command-line strings, checked."""
    kind = str(compression).lower()
    if kind == "gzip":
        return "gzip", 4 if opts is None else number_in_range("--compression-opts", opts, 0, 9)
    if kind not in ("lzf", "none"):
        raise ValueError(f"--compression must be gzip, lzf or none, not {compression!r}")
    if opts is not None:
        raise ValueError(f"--compression {kind} takes no --compression-opts")
    return (None if kind == "none" else "lzf"), None


def parallel_h5py(comm: "MPI.Comm | None") -> bool:
    """True when ranks can write collectively: MPI in use and h5py built for it."""
    return comm is not None and h5py.get_config().mpi


def check_destination(dest: str, name: str, overwrite: bool) -> None:
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


def write_voxel_size(dest: str, name: str, voxel: VoxelSize) -> None:
    """Record voxel (a VoxelSize) on dataset name of dest as element_size_um: z, y, x in
    micrometres, the attribute Fiji's HDF5 plugin and ilastik read."""
    with h5py.File(dest, "a") as f:
        f[name].attrs["element_size_um"] = [v / 1000 for v in voxel.in_nanometers()[::-1]]


def create_dataset(f: h5py.File, name: str, directory: "Directory", compression: str | None,
                   opts: int | None) -> h5py.Dataset:
    """The new dataset <name> of f, replacing an old one, chunked like the volume's blocks
    (collective under mpio)."""
    if name in f:
        del f[name]
    return f.create_dataset(name, shape=directory.shape, dtype=directory.dtype,
                            chunks=chunk_shape(directory), compression=compression,
                            compression_opts=opts)


def chunk_shape(directory: "Directory") -> tuple[int, ...]:
    """The dataset's chunks: the volume's blocks, no larger than the volume."""
    return tuple(min(b, n) for b, n in zip(directory.block_size, directory.shape))


# Copies of a piece a rank may hold at once: the piece read, its chunks padded and compressed,
# and on rank 0 a piece received (pickled, then unpickled) while its own is being made.
PIECE_COPIES = 8
TAG = 7201  # pieces sent to rank 0
POLL = 1e-3  # seconds between looks for a message or for a send to complete


def write_collective(dset: h5py.Dataset, origin: tuple[int, int, int] | None,
                     piece: npt.NDArray[Any] | None) -> None:
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


def export_collectively(directory: "Directory", dest: str, name: str, compression: str | None,
                        opts: int | None, comm: "MPI.Comm | None", progress: Progress,
                        pieces: export.Pieces) -> None:
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


def chunks_in(directory: "Directory", piece: Piece) -> int:
    """HDF5 chunks (one per block) in a piece, for the progress bar."""
    return -(-(piece[5] - piece[4]) // directory.x_block_size)


def encode_piece(directory: "Directory", piece: Piece, compression: str | None,
                 opts: int | None) -> Encoded:
    """A piece ready for rank 0: its chunks as ((z, y, x), bytes), compressed with gzip or
    raw, edge chunks padded with zeros as HDF5 stores them; with lzf ((z, y, x), array) of
    the whole piece for h5py to compress."""
    z0, z1, y0, y1, x0, x1 = piece
    if compression == "lzf":
        return [((z0, y0, x0), directory[z0:z1, y0:y1, x0:x1])]
    full = np.zeros(chunk_shape(directory), directory.dtype)
    chunks: Encoded = []
    for x in range(x0, x1, directory.x_block_size):
        block = directory.read_block(x, y0, z0)
        if block.shape != full.shape:
            full[...] = 0
            full[tuple(slice(0, n) for n in block.shape)] = block
            block = full
        chunks.append(((z0, y0, x),
                       zlib.compress(block, opts)  # type: ignore[arg-type]  # gzip: its level
                       if compression else block.tobytes()))
    return chunks


def write_encoded(dset: h5py.Dataset, chunks: Encoded) -> None:
    """Write what encode_piece made."""
    for where, data in chunks:
        if isinstance(data, bytes):
            dset.id.write_direct_chunk(where, data)
        else:
            z, y, x = where
            dset[z:z + data.shape[0], y:y + data.shape[1], x:x + data.shape[2]] = data


def export_direct(directory: "Directory", dest: str, name: str, compression: str | None,
                  opts: int | None, comm: "MPI.Comm | None", progress: Progress,
                  pieces: export.Pieces) -> None:
    """Serial h5py: ranks encode their pieces (round-robin) and send them to rank 0, one at a
    time, each send ending only when rank 0 has received it (flow control); rank 0 writes
    its own pieces and those it receives as they come."""
    rank, size = parallel.rank_of(comm), parallel.size_of(comm)
    mine = range(rank, len(pieces), size)

    def encoded(i: int) -> Encoded:
        chunks = encode_piece(directory, pieces[i], compression, opts)
        z0, z1, y0, y1, x0, x1 = pieces[i]
        progress.update(chunks_in(directory, pieces[i]),
                        (z1 - z0) * (y1 - y0) * (x1 - x0) * directory.dtype.itemsize)
        return chunks

    if comm is not None and rank != 0:
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


def _send_to_root(comm: "MPI.Comm", message: Encoded | None) -> None:
    """Send message to rank 0 and return once rank 0 has received it, sleeping between
    checks (MPICH busy-polls in blocking calls: a core rank 0 may need)."""
    request = comm.issend(message, dest=0, tag=TAG)
    while not request.Test():
        time.sleep(POLL)


def _write_received(comm: "MPI.Comm | None", dset: h5py.Dataset, wait: bool) -> int:
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


def export_hdf(directory: "Directory", dest: str, name: str, compression: str = "gzip",
               opts: str | int | None = None, overwrite: bool = False,
               comm: "MPI.Comm | None" = None, silent: bool = False,
               memory: int | None = None) -> tuple[int, int, float]:
    """Write directory into dataset name of HDF5 file dest; (chunks, bytes, seconds) of the job.
    memory: the budget per rank in bytes (default export.DEFAULT_MEMORY)."""
    kind, level = hdf_filter(compression, opts)
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
    write(directory, dest, name, kind, level, comm, progress, pieces)
    totals = progress.close()
    voxel = from_metadata(directory.metadata)
    if voxel is not None:
        parallel.on_rank0(comm, lambda: write_voxel_size(dest, name, voxel), BlockfsError)
    export.report(comm, "blockfs2hdf", "chunk", *totals)
    return totals
