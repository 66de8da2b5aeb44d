"""A directory file's data file names: checking that the data files hold what the index
points to, and writing a directory file that names others, with its index streamed in
pieces (memory does not grow with the volume). Format 1 stays format 1.

The library of blockfs-rebase (rebase: name the data files beside the directory file,
after a move by hand) and the directory-file half of blockfs-mv/cp.
"""
import dataclasses
import itertools
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .atomic import atomic_file
from .errors import FormatError
from .fileio import write_all
from .index import entry_runs, raw_runs
from .lock import VolumeLock
from .reader import pread_exact, read_header

INDEX_PIECE = 16 << 20  # bytes of index held in memory at a time


def piece_entries(header: fmt.Header, piece_bytes: int) -> int:
    """Index entries in a piece of piece_bytes bytes (at least one)."""
    return max(1, piece_bytes // header.entry_size)


def data_file_ends(path: str, header: fmt.Header,
                   piece_bytes: int = INDEX_PIECE) -> npt.NDArray[np.uint64]:
    """For each data file, the byte just past the last payload the index points into it."""
    n_files = len(header.data_files)
    ends = np.zeros(n_files, np.uint64)
    for _, entries in entry_runs(path, header, piece_entries(header, piece_bytes),
                                 span=(0, header.n_entries)):
        offsets, sizes, files = entries["offset"], entries["size"], entries["file"]
        used = sizes > 0
        if used.any() and files[used].max() >= n_files:
            raise FormatError(f"index entry names data file {files[used].max()} of {n_files} "
                              f"(damaged directory file)")
        np.maximum.at(ends, files[used], offsets[used] + sizes[used].astype(np.uint64))
    return ends


def check_data_files(path: str, header: fmt.Header, data_paths: Sequence[str],
                     piece_bytes: int = INDEX_PIECE) -> None:
    """Raise unless every data file exists and holds every payload the index points into it."""
    ends = data_file_ends(path, header, piece_bytes)
    for data_path, end in zip(data_paths, ends.tolist()):
        try:
            size = os.stat(data_path).st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{data_path}: data file of {path} is missing") from None
        if size < end:
            raise FormatError(f"{data_path}: data file is {size} bytes but the index of {path} "
                              f"points up to byte {end} (truncated or wrong file)")


def write_directory(source: str, target: str, header: fmt.Header, data_files: Sequence[str],
                    piece_bytes: int = INDEX_PIECE, durable: bool = True) -> None:
    """Write target atomically: the directory file source with data_files as its data file names.

    The index is copied unchanged, piece by piece; with unchanged names the
    file is copied byte for byte. durable=False: no fsync (see atomic.atomic_file).
    """
    fd = os.open(source, os.O_RDONLY)
    try:
        if list(data_files) == list(header.data_files):
            head = pread_exact(fd, header.index_offset, 0)
        else:
            head = dataclasses.replace(header, data_files=list(data_files)).encode_head()
        with atomic_file(target, durable) as out:
            pieces = (raw for _, raw in raw_runs(fd, header, piece_entries(header, piece_bytes)))
            for data in itertools.chain([head], pieces):
                write_all(out, data)
    finally:
        os.close(fd)


def rebased_names(path: str, header: fmt.Header) -> list[str]:
    """The data file names that point to the folder the directory file at path is in."""
    folder = os.path.dirname(os.path.abspath(path))
    if not header.relative_data_files:
        return [os.path.join(folder, os.path.basename(name)) for name in header.data_files]
    return [os.path.basename(name) if os.path.isabs(name) else name for name in header.data_files]


def rebase(path: str, piece_bytes: int = INDEX_PIECE, break_lock: bool = False) -> bool:
    """Rewrite the directory file at path to name the data files beside it; False if already so.

    Every data file must be there and long enough first: nothing is changed otherwise. The
    volume is locked meanwhile (LockedError if another job changes it; break_lock: lock.py).
    """
    path = os.path.abspath(path)
    with VolumeLock(path, break_lock=break_lock):
        header = read_header(path)
        names = rebased_names(path, header)
        folder = os.path.dirname(path)
        check_data_files(path, header, [os.path.join(folder, name) for name in names],
                         piece_bytes)
        if names == header.data_files:
            return False
        write_directory(path, path, header, names, piece_bytes)
        return True
