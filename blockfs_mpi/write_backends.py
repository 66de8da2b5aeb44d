"""How a Directory writes: one back end per kind, all with write, close and abandon.

- RankWriter: under MPI, this rank's data file; close() commits collectively.
- LocalWriters: without MPI, writer processes (local_writers) that the owner
  starts; any process holding the Directory sends its blocks to them.
- StandIn: a Directory that a spawn or forkserver child made again while re-running
  the main module, writing through the writers its parent started; commits nothing.

A resumed volume is written by the first two alike: the frames that resume found
on disk (`recovered`) are committed with the new ones.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import numpy as np
import numpy.typing as npt

from . import format as fmt
from . import parallel
from .atomic import write_atomically
from .commit import Hints, collective_commit, commit, commit_empty_slices
from .compression import make_codec, single_threaded
from .errors import BlockfsError, WriterError, brief
from .index_build import recovered_index
from .local_writers import WriterClient, WriterProcesses
from .writer import BlockWriter, MPIFile, PosixFile
from .writer_registry import published, published_volumes

if TYPE_CHECKING:
    from mpi4py import MPI

Block = npt.NDArray[np.generic]  # a block's voxels, contiguous, in the volume's dtype


class Backend(Protocol):
    """What a Directory asks of the object that writes its blocks."""

    def write(self, block_number: int, block: Block) -> None:
        """Hand over a block: its number and its voxels, contiguous, in the volume's dtype."""

    def write_payload(self, block_number: int, payload: bytes) -> None:
        """Hand over a block already compressed with the volume's codec, by its number."""

    def close(self) -> None:
        """Write out every block handed over and commit them, or raise saying why not."""

    def abandon(self, error: BaseException) -> None:
        """After error: write out what was handed over, commit nothing."""


def commit_empty(path: str, header: fmt.Header) -> None:
    """Commit at path a directory file in which no block is written yet."""
    write_atomically(path, *fmt.empty_directory2_parts(header))


def writer_description(header: fmt.Header, paths: list[str]) -> dict[str, Any]:
    """What a process writing through writer processes must agree with them on."""
    g = header.geometry
    return {"geometry": [g.x_extent, g.y_extent, g.z_extent,
                         g.x_block_size, g.y_block_size, g.z_block_size],
            "dtype": header.dtype.str, "data_files": paths}


def no_writers_error(path: str, reason: str) -> WriterError:
    return WriterError(
        f"{path}: {reason}. Create the Directory, call create() and start_writer_processes() "
        f"under `if __name__ == \"__main__\":` before making the pool, and pass the Directory "
        f"to the workers as an argument")


class RankWriter:
    """Under MPI: this rank's writer of its own data file."""

    def __init__(self, comm: MPI.Comm, path: str, header: fmt.Header, hints: Hints | None,
                 data_path: str, recovered: npt.NDArray[np.void], empty_at: str | None) -> None:
        """Open this rank's data file, appending to it, or truncating it and committing an
        empty volume at empty_at (every rank writing its slice of the index,
        commit.commit_empty_slices) if that is given. Collective: a rank that fails makes
        every rank raise the same error, naming it."""
        self.comm, self.path, self.header, self.hints = comm, path, header, hints
        self.recovered = recovered
        rank = comm.Get_rank()
        error = None
        writer = None
        try:
            single_threaded()
            writer = BlockWriter(
                MPIFile(data_path, truncate=empty_at is not None, hints=hints), rank,
                make_codec(header.compression, header.compression_level, header.shuffle),
                append=empty_at is None)
        except Exception as e:
            error = f"rank {rank}: cannot create {data_path}: {brief(e)}"

        def close_writer() -> None:
            if writer is not None:
                writer.file.close()

        parallel.fail_together(comm, error, WriterError, close_writer)
        assert writer is not None  # no rank failed
        if empty_at is not None:
            try:
                commit_empty_slices(comm, empty_at, header, hints)
            except WriterError:  # raised by every rank alike
                writer.file.close()
                raise
        self.writer = writer

    def __getstate__(self) -> NoReturn:
        raise BlockfsError(f"{self.path}: a volume being written by MPI ranks cannot be sent "
                           f"to another process; each rank writes its own")

    def write(self, block_number: int, block: Block) -> None:
        self.writer.write(block_number, block)

    def write_payload(self, block_number: int, payload: bytes) -> None:
        """Framed and appended as it is: no decoding, no compressing."""
        self.writer.write_payload(block_number, payload)

    def close(self) -> None:
        """Write out this rank's blocks and commit every rank's (collective)."""
        error, rows = None, None
        try:
            rows = self.writer.close()
        except Exception as e:
            error = str(e)
        collective_commit(self.comm, self.path, self.header, rows if rows is not None else [],
                          error, self.recovered, self.hints)

    def abandon(self, error: BaseException) -> None:
        """Write out this rank's blocks, commit nothing. The other ranks cannot be told to
        skip the collective commit, so with several the job is aborted instead."""
        if parallel.size_of(self.comm) > 1:
            parallel.abort(self.comm, f"{self.path}: {error!r}")
        self.writer.close()


class LocalWriters:
    """Without MPI: the writer processes of the volume, started by the process that owns the
    Directory (at start() or its first block); other processes holding the Directory reach
    them through its client."""

    def __init__(self, path: str, header: fmt.Header, paths: list[str],
                 recovered: npt.NDArray[np.void]) -> None:
        self.path, self.header, self.paths, self.recovered = path, header, paths, recovered
        self.owner_pid = os.getpid()
        self.processes: WriterProcesses | None = None  # in the owner, once started
        self.client: WriterClient | None = None  # connections to them, from any process

    @classmethod
    def create(cls, path: str, header: fmt.Header, paths: list[str],
               empty_at: str) -> LocalWriters:
        """Truncate the data files and commit an empty volume at empty_at; refused while
        writer processes of the volume run (in any process), whose files it would truncate."""
        entry = published(path)
        if entry is not None:
            raise BlockfsError(f"{path}: the writer processes of process {entry['pid']} are "
                               f"writing this volume; create() would truncate their data files "
                               f"(close() that Directory first)")
        for data_path in paths:
            PosixFile(data_path, truncate=True).close()
        commit_empty(empty_at, header)
        return cls(path, header, paths, np.zeros(0, fmt.WRITTEN))

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, processes=None)  # owned by the sender

    def start(self, queue_depth: int = 10) -> None:
        """Start the writer processes unless this process has writers already."""
        if self.client is not None:
            return
        h = self.header
        self.processes = WriterProcesses(
            self.path, self.paths, (h.compression.name, h.compression_level, h.shuffle),
            h.dtype, writer_description(h, self.paths), queue_depth)
        self.client = WriterClient(self.processes.addresses, self.processes.authkey)

    def write(self, block_number: int, block: Block) -> None:
        self._send(block_number, block)

    def write_payload(self, block_number: int, payload: bytes) -> None:
        """Sent as it is: the writer process frames and appends it without compressing."""
        self._send(block_number, payload)

    def _send(self, block_number: int, block: Block | bytes) -> None:
        """Hand a block, its voxels or its stored payload, to the writer of its data file,
        starting the writers in the owner if none serve it yet."""
        if self.client is None:
            if os.getpid() != self.owner_pid:  # writers of its own would never be committed
                raise no_writers_error(self.path, "this process got the Directory before "
                                       "start_writer_processes() was called, so no writer "
                                       "processes serve it")
            self.start()
        assert self.client is not None
        self.client.send(block_number % len(self.paths), block_number, block)

    def close(self) -> None:
        """Stop the writers once they wrote every block handed over, and commit what they
        and a resumed job's writers wrote; nothing written: finish the empty volume."""
        processes, self.processes, self.client = self.processes, None, None
        if processes is None and not len(self.recovered):
            commit_empty(self.path, self.header)
            return
        try:
            rows: npt.ArrayLike = processes.close() if processes is not None else []
        except WriterError as e:  # said as under MPI: not committed, and why
            raise WriterError(f"{self.path} not committed, {e}") from None
        base = recovered_index(self.header.geometry, self.recovered) if len(self.recovered) \
            else None
        commit(self.path, self.header, rows, base)

    def abandon(self, error: BaseException) -> None:
        """Stop the writers once they wrote every block handed over; commit nothing."""
        processes, self.processes, self.client = self.processes, None, None
        if processes is not None:
            try:
                processes.close()
            except WriterError:
                pass


class StandIn:
    """A stand-in for the parent's Directory: made while multiprocessing re-runs the main
    module in a spawn or forkserver child, it writes through the writer processes the parent
    started for the volume and commits nothing (the parent does).

    Lab code that makes the Directory at module level makes it again in every such worker;
    the stand-in finds the parent's writers in the registry (writer_registry.published). It
    fails only when used, never while the module is re-run: multiprocessing.Pool restarts a
    worker that fails there, forever, while a failed task ends the pool's caller.
    """

    def __init__(self, path: str, header: fmt.Header, paths: list[str]) -> None:
        self.path, self.description = path, writer_description(header, paths)
        self.client: WriterClient | None = None

    def _attach(self) -> WriterClient:
        """Connections to the writer processes the parent started for the volume."""
        rerun = "this process re-ran the main module (start method spawn or forkserver) and"
        entry = published(self.path)
        if entry is None:
            others = published_volumes()
            found = f" (writer processes found for: {', '.join(others)})" if others else ""
            raise no_writers_error(
                self.path, f"{rerun} found no writer processes of its parent for this "
                           f"volume{found}")
        if entry["description"] != self.description:
            raise no_writers_error(
                self.path, f"{rerun} the writer processes of process {entry['pid']} for this "
                           f"file write a volume of another shape, dtype or set of data files")
        return WriterClient.of(entry)

    def write(self, block_number: int, block: Block) -> None:
        self._send(block_number, block)

    def write_payload(self, block_number: int, payload: bytes) -> None:
        self._send(block_number, payload)

    def _send(self, block_number: int, block: Block | bytes) -> None:
        if self.client is None:
            self.client = self._attach()
        self.client.send(block_number % len(self.description["data_files"]), block_number,
                         block)

    def close(self) -> None:
        """Nothing to commit: the parent commits what its writers wrote."""

    def abandon(self, error: BaseException) -> None:
        """Nothing to stop: the writers are the parent's."""
