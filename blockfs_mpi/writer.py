"""One writer's append-only data file: compress, frame, buffer, append, fsync.

A writer owns its file alone (no locks, no shared file pointer, no
read-back). Frames go out in large appends written by a background thread,
so compression of the next blocks overlaps the I/O. The file is synced every
SYNC_INTERVAL bytes (so that write-back goes on as the file grows and
close() has little left to flush) and at close, before the commit: not at
every append, which on a parallel file system is a metadata-server round
trip each (5 * 10^6 of them for 44 TB in 8 MiB appends). Nothing is lost by
syncing less: blocks count only once committed, and the commit follows
close()'s sync; a crash before it leaves frames that --resume or fsck finds
by their checksums either way. The writer keeps a 32-byte row per frame in memory (where it
went, its sequence) and hands them over at close.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .errors import WriterError, brief
from .fileio import write_all
from .format import WRITTEN

if TYPE_CHECKING:
    from numcodecs.abc import Codec

    from .commit import Hints

BUFFER_SIZE = 8 << 20  # bytes of frames gathered per append; BLOCKFS_BUFFER_SIZE overrides
FIRST_BUFFER = 1 << 20  # a buffer's size at first use, doubled as frames fill it
SYNC_INTERVAL = 1 << 30  # bytes appended between syncs; BLOCKFS_SYNC_INTERVAL overrides


def setting(name: str, default: int, low: int = 0) -> int:
    """A byte count from the environment variable name (at least low), else default."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise ValueError(f"{name}={text!r}: give a number of bytes, {low} or more")
    return value


def sync_interval() -> int:
    """Bytes a writer appends between syncs: $BLOCKFS_SYNC_INTERVAL (bytes; 0 = at every
    append) if set, else SYNC_INTERVAL."""
    return setting("BLOCKFS_SYNC_INTERVAL", SYNC_INTERVAL)


def gathered_bytes() -> int:
    """Bytes of frames a writer gathers before it appends them: $BLOCKFS_BUFFER_SIZE if set
    (small values let a test see frames reach the disk early in a job), else BUFFER_SIZE."""
    return setting("BLOCKFS_BUFFER_SIZE", BUFFER_SIZE, low=1)
ROWS_PER_CHUNK = 1 << 16  # WRITTEN rows are kept in 2 MiB chunks: nothing is copied as they grow


class PosixFile:
    """A data file written with os.pwrite (local writer processes)."""

    def __init__(self, path: str, truncate: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
        self.path = path
        self.fd = os.open(path, flags, 0o644)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def write_at(self, offset: int, data: memoryview) -> None:
        write_all(self.fd, data, offset)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class MPIFile:
    """A data file written with MPI-IO, opened on COMM_SELF by the rank that owns it.

    Explicit offsets only; data sieving is disabled so nothing is read back.
    Striping hints (Lustre) apply when the file is created.
    """

    def __init__(self, path: str, truncate: bool, hints: Hints | None = None) -> None:
        from mpi4py import MPI
        self._MPI = MPI
        info = MPI.Info.Create()
        info.Set("romio_ds_write", "disable")
        info.Set("romio_ds_read", "disable")
        for key, value in (hints or {}).items():
            info.Set(key, str(value))
        self.path = path
        self.fh = MPI.File.Open(MPI.COMM_SELF, path, MPI.MODE_WRONLY | MPI.MODE_CREATE, info)
        info.Free()
        if truncate:
            self.fh.Set_size(0)

    def size(self) -> int:
        return self.fh.Get_size()

    def write_at(self, offset: int, data: memoryview) -> None:
        self.fh.Write_at(offset, [data, self._MPI.BYTE])

    def sync(self) -> None:
        self.fh.Sync()

    def close(self) -> None:
        self.fh.Close()


class BlockWriter:
    """Appends framed, compressed blocks to one data file and remembers where they went."""

    def __init__(self, file: PosixFile | MPIFile, file_number: int, codec: Codec,
                 buffer_size: int | None = None, append: bool = False,
                 sync_every: int | None = None) -> None:
        self.file = file
        self.sync_every = sync_interval() if sync_every is None else sync_every
        self._unsynced = 0  # bytes appended since the last sync (the I/O thread's)
        self.file_number = file_number
        self.codec = codec
        self.buffer_size = gathered_bytes() if buffer_size is None else buffer_size
        self.position = file.size() if append else 0  # where the next frame starts
        self._rows = [np.zeros(ROWS_PER_CHUNK, WRITTEN)]  # a WRITTEN row per frame, 32 B each
        self._rows_used = 0  # in the last chunk
        # Frames gather in one of two buffers while the I/O thread writes the other; both are
        # reused, so their pages are touched once instead of faulted in again for every append.
        self._buffers = [bytearray(), bytearray()]  # sized at first use
        self._filled = 0  # bytes of frames in self._buffers[0]
        self._buffer_start = self.position
        self._sequence = 0
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blockfs-io")
        self._pending: Future[None] | None = None

    def write(self, block_number: int, array: npt.NDArray[np.generic]) -> None:
        """Compress an array and append it as the newest frame of block_number."""
        self.write_payload(block_number, self.codec.encode(np.ascontiguousarray(array)))

    def write_payload(self, block_number: int, payload: bytes) -> None:
        """Append a payload already compressed with this writer's codec as the newest frame
        of block_number (blockfs-write copies matching zarr chunks so, as stored)."""
        self._sequence = max(self._sequence + 1, time.time_ns())
        header = fmt.encode_frame_header(block_number, payload, self._sequence)
        self._put(header)
        self._put(payload)
        self._remember(block_number, self.position + fmt.FRAME_SIZE, len(payload))
        self.position += fmt.FRAME_SIZE + len(payload)
        if self._filled >= self.buffer_size:
            self.flush()

    def _put(self, data: bytes) -> None:
        """Copy bytes to the end of the filling buffer, growing it by doubling from FIRST_BUFFER
        up to buffer_size (a small pyramid level's writer never fills 8 MiB of pages), and
        beyond for a frame that does not fit."""
        buffer, end = self._buffers[0], self._filled + len(data)
        if end > len(buffer):
            grown = min(self.buffer_size, max(FIRST_BUFFER, 2 * len(buffer)))
            buffer.extend(bytes(max(end, grown) - len(buffer)))
        buffer[self._filled:end] = data
        self._filled = end

    def _remember(self, block_number: int, offset: int, size: int) -> None:
        """Keep the WRITTEN row of the frame being appended."""
        if self._rows_used == ROWS_PER_CHUNK:
            self._rows.append(np.zeros(ROWS_PER_CHUNK, WRITTEN))
            self._rows_used = 0
        self._rows[-1][self._rows_used] = (block_number, offset, size, self.file_number,
                                           self._sequence)
        self._rows_used += 1

    def flush(self) -> None:
        """Hand the buffered frames to the I/O thread (waiting for its previous append)."""
        self._wait()
        if self._filled:
            frames = memoryview(self._buffers[0])[:self._filled]
            self._pending = self._io.submit(self._append, self._buffer_start, frames)
            self._buffers.reverse()
            self._filled, self._buffer_start = 0, self.position

    def _append(self, start: int, frames: memoryview) -> None:
        """In the I/O thread: write a buffer of frames; sync once sync_every bytes are
        unsynced."""
        with frames:  # released here, so the buffer can grow when it is filled again
            self.file.write_at(start, frames)
            self._unsynced += len(frames)
        if self._unsynced >= self.sync_every:
            self.file.sync()
            self._unsynced = 0

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except Exception as e:
                raise WriterError(f"{self.file.path}: write failed: {brief(e)}") from e

    def close(self) -> npt.NDArray[np.void]:
        """Write everything, fsync, close; the entries as a WRITTEN array."""
        try:
            self.flush()
            self._wait()
            self.file.sync()
        finally:
            self._io.shutdown()
            self.file.close()
        return self.written()

    def written(self) -> npt.NDArray[np.void]:
        """A WRITTEN row for every frame written so far. A block written twice has two rows;
        the commit keeps the one with the higher sequence."""
        return np.concatenate(self._rows[:-1] + [self._rows[-1][:self._rows_used]])
