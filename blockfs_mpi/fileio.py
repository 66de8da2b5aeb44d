"""Writing a whole buffer to a file descriptor, which os.write and os.pwrite may not do.

A short write (a signal, a full disk's last bytes, some network file systems)
returns what it wrote and leaves the rest to the caller: write_all writes the
rest, so that no writer of bytes to a descriptor has to remember to.
"""
import os

Bytes = bytes | bytearray | memoryview  # collections.abc.Buffer from Python 3.12


def write_all(fd: int, data: Bytes, offset: int | None = None) -> None:
    """Write every byte of data to fd: at offset with os.pwrite (the file position stays)
    if an offset is given, else at the file position with os.write."""
    view = memoryview(data).cast("B")
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        view = view[written:]
