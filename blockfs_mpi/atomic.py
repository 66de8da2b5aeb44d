"""Replacing a file atomically: a reader sees the old file or the new one, never half of one.

The new version is written under a temporary name in the same folder, fsynced,
renamed over the old name, and the folder is fsynced so that the rename
survives a crash. Used for directory files, pyramid and zarr records, repairs.
"""
import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator

from .fileio import Bytes, write_all


def _temporary_parts(path: str) -> tuple[str, str, str]:
    """(folder, prefix, suffix) of the names of path's next versions: `.<name>.<random>.commit`
    beside it."""
    return os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.", ".commit"


def temporary_name(path: str) -> str:
    """A name for the next version of path, as temporary_beside makes them, that no file is
    likely to have (the caller creates it exclusively)."""
    folder, prefix, suffix = _temporary_parts(path)
    return os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")


def temporary_beside(path: str) -> tuple[int, str]:
    """(descriptor, name) of a new, empty file in path's folder, readable by all, whose name
    no other commit uses: where the next version of path is written."""
    folder, prefix, suffix = _temporary_parts(path)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.fchmod(fd, 0o644)
    return fd, temporary


def replace_durably(temporary: str, path: str, durable: bool = True) -> None:
    """Rename a written, fsynced temporary file over path, then fsync the folder so that the
    rename itself survives a crash (unless durable=False)."""
    os.replace(temporary, path)
    if not durable:
        return
    folder_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


@contextlib.contextmanager
def atomic_file(path: str, durable: bool = True) -> Iterator[int]:
    """A descriptor open for writing whose file replaces path only if the block succeeds.

    Lets large files (a streamed index) be written in pieces with the same guarantee
    as write_atomically: no reader ever sees a partial file. The file and its folder are
    fsynced unless durable=False (still atomic, not crash-safe): on ext4 an fsync, however
    small the file, waits for the journal, which first writes out every data block
    allocated meanwhile.
    """
    fd: int | None
    fd, temporary = temporary_beside(path)
    try:
        yield fd
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = None
    except BaseException:
        if fd is not None:
            os.close(fd)
        os.unlink(temporary)
        raise
    replace_durably(temporary, path, durable)


def write_atomically(path: str, *parts: Bytes) -> None:
    """Replace the file at path with the bytes-like parts, one after the other, so that no
    reader ever sees a partial file."""
    with atomic_file(path) as fd:
        for part in parts:
            write_all(fd, part)
