"""Writing a whole buffer to a file descriptor, which os.write and os.pwrite may not do.

A short write (a signal, a full disk's last bytes, some network file systems)
returns what it wrote and leaves the rest to the caller: write_all writes the
rest, so that no writer of bytes to a descriptor has to remember to.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

import numpy.typing as npt

if TYPE_CHECKING:
    from typing_extensions import Buffer

Bytes = bytes | bytearray | memoryview | npt.NDArray[Any]  # collections.abc.Buffer from 3.12


def write_all(fd: int, data: Bytes, offset: int | None = None) -> None:
    """Write every byte of data to fd: at offset with os.pwrite (the file position stays)
    if an offset is given, else at the file position with os.write."""
    # numpy declares an array a Buffer (__buffer__) for Python 3.12 on only; it is one on all
    view = memoryview(cast("Buffer", data)).cast("B")
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        view = view[written:]
