"""Reading blocks with POSIX pread: one read for the index entry, one for the payload.

File descriptors are opened per process, so a reader that crossed a fork
(multiprocessing) opens its own and never shares a file offset. A reader keeps at
most data_file_limit() data files open (an LRU), so that a volume of thousands of
data files, or a server of hundreds of volumes, stays within RLIMIT_NOFILE.
"""
import math
import os
import stat
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from . import format as fmt
from . import parallel
from .compression import blosc_sizes, make_codec
from .errors import CorruptBlockError, DataFileNotFoundError, FormatError
from .identify import VOLUME_MAGICS, not_a_volume
from .open_files import OpenFiles, descriptor_budget

# Data files a reader opens with its directory file (the rest on first use), when its bound
# allows: enough for the volumes of any job of up to this many ranks, few enough for
# blockfs-serve's cache of volumes.
EAGER_DATA_FILES = 256
# The environment variable that sets how many data files a reader keeps open at once.
OPEN_DATA_FILES = "BLOCKFS_OPEN_DATA_FILES"

R = TypeVar("R")  # what a read of an open file gives


def data_file_limit() -> int:
    """How many data files a reader keeps open at once: $BLOCKFS_OPEN_DATA_FILES if set, else
    a quarter of the descriptors this process may open (256 under the usual limit of 1024)."""
    value = os.environ.get(OPEN_DATA_FILES)
    if not value:
        return descriptor_budget()
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{OPEN_DATA_FILES}={value!r}: expected a whole number of files, "
                         f"at least 1")
    return limit


def pread_exact(fd: int, size: int, offset: int) -> bytes:
    """Up to size bytes at offset: fewer only at end of file."""
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def open_directory_file(path: str | os.PathLike[str]) -> tuple[int, fmt.Header]:
    """A read-only descriptor of a directory file and its parsed Header (either format).
    Anything else (a folder, a pyramid, a data file, a TIFF) is refused saying what it is
    and what to pass instead."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such blockfs directory file") from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise IsADirectoryError(not_a_volume(str(path)))
        if pread_exact(fd, 8, 0) not in VOLUME_MAGICS:
            raise FormatError(not_a_volume(str(path)))
        size = os.fstat(fd).st_size
        return fd, fmt.parse_directory(lambda offset, n: pread_exact(fd, n, offset), size,
                                       os.fspath(path))
    except BaseException:
        os.close(fd)
        raise


def pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill a writable memoryview from offset; the byte count read (less only at end of file)."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            break
        done += got
    return done


def read_header(path: str | os.PathLike[str]) -> fmt.Header:
    """The Header of the directory file at path (either format)."""
    fd, header = open_directory_file(path)
    os.close(fd)
    return header


def data_file_places(directory_path: str, name: str, version: int) -> list[tuple[str, str]]:
    """Where a data file named in a directory file may be on this machine: (path, rule) pairs
    in the order they are tried.

    Format 2 names are relative to the directory file's folder (an absolute name that is not
    there falls back to its last component beside the directory file). The original blockfs
    stored format 1 names as it built them from the path its user typed: absolute, or
    relative to the writer's working directory. So a relative format 1 name is tried
    beside the directory file, then from this process's working directory (the original's
    own rule), then by its last component beside the directory file (a volume moved by
    hand or written on another machine).
    """
    folder = os.path.dirname(os.path.abspath(directory_path))
    beside = (os.path.join(folder, os.path.basename(name)),
              "its last component beside the directory file")
    if fmt.relative_data_files(version):
        stored = (os.path.join(folder, name), "relative to the directory file's folder")
        return [stored, beside] if os.path.isabs(name) else [stored]
    if os.path.isabs(name):
        places = [(name, "as stored")]
    else:
        places = [(os.path.join(folder, name), "relative to the directory file's folder")]
        try:
            places.append((os.path.join(os.getcwd(), name), "relative to the working directory"))
        except FileNotFoundError:  # the working directory was removed
            pass
    places.append(beside)
    unique: dict[str, str] = {}
    for path, rule in places:
        unique.setdefault(os.path.normpath(path), rule)
    return list(unique.items())


def resolve_data_file(directory_path: str, name: str, version: int) -> str:
    """The path of a data file named in a directory file (format `version`): the first of
    data_file_places that is a file. Raises DataFileNotFoundError, naming the volume, the
    stored name and every place tried, if none is; its `path` is where the file belongs."""
    places = data_file_places(directory_path, name, version)
    for path, _ in places:
        if os.path.isfile(path):
            return path
    volume = os.path.abspath(directory_path)
    if len(places) == 1:
        message = f"{places[0][0]}: data file of volume {volume} is missing"
    else:
        tried = "; ".join(f"{path} ({rule})" for path, rule in places)
        message = (f"data file {name!r} of volume {volume} is missing: not found in any of "
                   f"{len(places)} places: {tried}")
    error = DataFileNotFoundError(message)
    error.path = places[0][0]
    raise error


def locate_data_files(directory_path: str,
                      header: fmt.Header) -> tuple[list[str], dict[int, str]]:
    """(paths, missing): the path of each data file of a volume, as resolve_data_file finds it
    or where it belongs if it is nowhere, and for those the error message by file number:
    a reader or a check reports a missing file on use instead of refusing the volume."""
    paths, missing = [], {}
    for number, name in enumerate(header.data_files):
        try:
            paths.append(resolve_data_file(directory_path, name, header.version))
        except DataFileNotFoundError as e:
            paths.append(e.path)
            missing[number] = str(e)
    return paths, missing


class Descriptors:
    """The open descriptors of one BlockReader: its directory file (shared across fork: pread
    has no offset) and this process's data files, at most `limit` of them (an OpenFiles LRU;
    key None is the directory file reopened, for a reader given its header). An evicted data
    file is reopened by path, and refused unless it is still the file first opened: format 2
    data files only grow within a version, so it still holds the frames the index names,
    while one that a replacement or a move removed (or put another file in place of) is a
    DataFileNotFoundError naming it, never another file's bytes. Closed by close(), and when
    the reader is garbage-collected, so that readers nobody closed leak nothing."""

    def __init__(self, path: str, data_paths: list[str], missing: dict[int, str],
                 limit: int) -> None:
        self.path, self.data_paths, self.missing = path, data_paths, missing
        self.directory: int | None = None
        self.identity: dict[int, tuple[int, int]] = {}  # (device, inode) of each file opened
        self.files: OpenFiles[int] = OpenFiles(limit, self._open_file, os.close)

    def _open_file(self, key: object) -> int:
        if key is None:
            return os.open(self.path, os.O_RDONLY)
        assert isinstance(key, int)
        path = self.data_paths[key]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if key in self.identity:
                raise self._gone(key, "was removed") from None
            error = DataFileNotFoundError(self.missing.get(key) or (
                f"{path}: data file of volume {self.path} is missing"))
            error.path = path
            raise error from None
        status = os.fstat(fd)
        if self.identity.setdefault(key, (status.st_dev, status.st_ino)) != (
                status.st_dev, status.st_ino):
            os.close(fd)
            raise self._gone(key, "was replaced by another file")
        return fd

    def _gone(self, key: int, what: str) -> DataFileNotFoundError:
        path = self.data_paths[key]
        error = DataFileNotFoundError(
            f"{path}: data file of volume {self.path} {what} since this reader opened the "
            f"volume (a replacement or a move; the reader keeps {self.files.limit} of its "
            f"{len(self.data_paths)} data files open, and this one was closed): open the "
            f"volume again")
        error.path = path
        return error

    def close(self) -> None:
        self.files.close()
        if self.directory is not None:
            os.close(self.directory)
            self.directory = None


class BlockReader:
    """Payloads of a committed volume, verified and decoded; missing blocks are None.

    data_paths: where its data files are, if not where the directory file says (a copy's);
    open_files: how many data files it keeps open at once (None: data_file_limit())."""

    def __init__(self, path: str | os.PathLike[str], header: fmt.Header | None = None,
                 data_paths: list[str] | None = None, open_files: int | None = None) -> None:
        self.path = os.path.abspath(path)
        # Without a header, the index is read from the very file the header came from, so a
        # commit that replaces the directory file meanwhile cannot mix two versions. pread
        # has no file offset, so this descriptor is safe to share across fork.
        directory = None
        if header is None:
            directory, header = open_directory_file(self.path)
        self.header = header
        if data_paths is None:
            self.data_paths, self._missing = locate_data_files(self.path, self.header)
        else:
            self.data_paths, self._missing = list(data_paths), {}
        self._open = Descriptors(self.path, self.data_paths, self._missing,
                                 open_files or data_file_limit())
        self._open.directory = directory
        weakref.finalize(self, self._open.close)
        self.codec = make_codec(self.header.compression, self.header.compression_level,
                                self.header.shuffle)
        self._local = threading.local()  # each thread's read buffer
        if directory is not None:
            self._open_data_files()

    def _open_data_files(self) -> None:
        """Open the data files of the version just read (the first EAGER_DATA_FILES, as many
        as the bound allows): a replacement removes the old version's data files once the new
        one is committed, and this reader goes on reading the version it opened through these
        descriptors as long as it need not close them for others. Not in a rank of an MPI
        job of several: each opens only the data files its share reads (at 4096 ranks, 256
        each would be 10^6 opens of the metadata server before any work)."""
        if parallel.size_of(parallel.world()) > 1:
            return
        files = self._open.files
        for number in range(min(len(self.data_paths), EAGER_DATA_FILES, files.limit)):
            if number not in self._missing:
                try:
                    files.get(number)
                except OSError:  # reported when one of its blocks is read
                    pass

    def _with_fd(self, key: int | None, read: Callable[[int], R]) -> R:
        """read(fd) of the file of key (None = directory file, else a data file number), kept
        open while it reads. On the path of every block read, so no context manager."""
        opened = self._open
        if key is None and opened.directory is not None:
            return read(opened.directory)
        fd = opened.files.acquire(key)
        try:
            return read(fd)
        finally:
            opened.files.release(key)

    def close(self) -> None:
        """Close this process's descriptors."""
        self._open.close()

    def entry(self, block_number: int) -> tuple[int, int, int] | None:
        """(file number, payload offset, payload size) of a block, or None if never written."""
        header = self.header
        raw = self._with_fd(None, lambda fd: pread_exact(fd, header.entry_size,
                                                         header.entry_position(block_number)))
        entry = header.decode_entry(raw, block_number, self.path)
        if entry is None:
            return None
        offset, size, file_number = entry
        return self._checked(block_number, file_number, offset, size)

    def _checked(self, block_number: int, file_number: int, offset: int,
                 size: int) -> tuple[int, int, int]:
        """(file number, offset, size) of a written block's index entry, if it can be one."""
        if size == 0 or file_number >= len(self.data_paths) or offset < self.header.frame_size:
            raise CorruptBlockError(f"{self.path}: damaged index entry of block {block_number} "
                                    f"(file {file_number}, offset {offset}, size {size})")
        return file_number, offset, size

    def payload(self, block_number: int, reuse: bool = False) -> memoryview | None:
        """The verified compressed bytes of a block as a read-only memoryview, or None if
        it was never written. With reuse, they are read into this thread's buffer (valid
        until its next read), so that reading many blocks allocates no large temporaries."""
        entry = self.entry(block_number)
        return None if entry is None else self._payload(block_number, *entry, reuse)

    def payload_at(self, block_number: int, file_number: int, offset: int, size: int,
                   reuse: bool = False) -> memoryview:
        """The verified compressed bytes of a written block whose index entry is known (read
        with index.entry_runs, say), as payload gives them."""
        return self._payload(block_number, *self._checked(block_number, file_number, offset,
                                                          size), reuse)

    def _payload(self, block_number: int, file_number: int, offset: int, size: int,
                 reuse: bool) -> memoryview:
        where = f"{self.data_paths[file_number]}: block {block_number} at offset {offset}"
        head = self.header.frame_size
        raw = memoryview(self._buffer(head + size, reuse))[:head + size]
        got = self._with_fd(file_number, lambda fd: pread_into(fd, raw, offset - head))
        if got < head + size:
            raise CorruptBlockError(f"{where}: index entry points past the end of the data "
                                    f"file ({head + size} bytes wanted, {got} there)")
        raw = raw.toreadonly()
        if not self.header.has_frames:
            return raw
        frame_block, frame_size, _sequence, payload_crc = fmt.decode_frame_header(raw, where)
        payload = raw[head:]
        if frame_block != block_number or frame_size != size:
            raise CorruptBlockError(f"{where}: frame holds block {frame_block} of {frame_size} "
                                    f"bytes, index says block {block_number} of {size}")
        if fmt.crc32c(payload) != payload_crc:
            raise CorruptBlockError(f"{where}: checksum mismatch (damaged payload)")
        return payload

    def _buffer(self, size: int, reuse: bool) -> bytearray:
        """A bytearray of at least size bytes: this thread's, or a new one."""
        if not reuse:
            return bytearray(size)
        buffer: bytearray | None = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = self._local.buffer = bytearray(size)
        return buffer

    def check_sizes(self, payload: fmt.RawBytes, shape: tuple[int, ...],
                    block_number: int) -> None:
        """Raise CorruptBlockError unless the payload's Blosc header gives the block's size
        and the stored size: a cheap check of what decoding would find."""
        nbytes, cbytes = blosc_sizes(payload)
        expected = math.prod(shape) * self.header.dtype.itemsize
        if nbytes != expected or cbytes != len(payload):
            raise CorruptBlockError(
                f"{self.path}: block {block_number} decompresses to {nbytes} bytes in "
                f"{cbytes} stored, expected {expected} in {len(payload)} (damaged or wrong shape)")

    def decode(self, payload: fmt.RawBytes, shape: tuple[int, ...],
               block_number: int) -> npt.NDArray[Any]:
        """Decode a payload into a new array of the given block shape."""
        self.check_sizes(payload, shape, block_number)
        out = np.empty(shape, self.header.dtype)
        try:
            self.codec.decode(payload, out=out)
        except (RuntimeError, ValueError) as e:
            raise CorruptBlockError(
                f"{self.path}: block {block_number} does not decode: {e}") from None
        return out

    def verify(self, block_number: int, shape: tuple[int, ...], decode: bool = True) -> None:
        """Raise CorruptBlockError unless the block can be read: its frame, checksum and
        sizes, and with decode its decompression too (4-6x the time of the rest)."""
        payload = self.payload(block_number, reuse=True)
        if payload is None:
            return
        if decode:
            self.decode(payload, shape, block_number)
        else:
            self.check_sizes(payload, shape, block_number)

    def read(self, block_number: int, shape: tuple[int, ...]) -> npt.NDArray[Any]:
        """The block as an array of the given shape; zeros if never written."""
        payload = self.payload(block_number, reuse=True)
        if payload is None:
            return np.zeros(shape, self.header.dtype)
        return self.decode(payload, shape, block_number)
