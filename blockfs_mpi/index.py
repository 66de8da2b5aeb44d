"""Reading a volume's index in runs: one pass over an index of 10^8 entries in bounded memory.

Every reader of a whole index goes through here (info, check and repair, rebase, mv/cp);
how a format's entries decode is the header's business (format.Header.decode_entries).
One block's entry is read by reader.BlockReader.entry.
"""
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .reader import pread_exact

RUN = 1 << 20  # index entries read at a time: 16 MiB of format 2 entries


def raw_runs(fd: int, header: fmt.Header, entries: int | None = None,
             span: tuple[int, int] | None = None) -> Iterator[tuple[int, bytes]]:
    """(first block, stored bytes) of each run of up to `entries` (None: RUN) index entries of
    the directory file open as fd, in block order. span=(first, end): blocks first..end-1,
    by default every entry the file holds (header.n_entries); a run past its end is short."""
    entries = entries or RUN
    start, end = span or (0, header.n_entries)
    for first in range(start, end, entries):
        count = min(entries, end - first)
        yield first, pread_exact(fd, count * header.entry_size, header.entry_position(first))


def entry_runs(path: str | os.PathLike[str], header: fmt.Header, entries: int | None = None,
               span: tuple[int, int] | None = None) -> Iterator[tuple[int, npt.NDArray[np.void]]]:
    """(first block, ENTRY array) of each run of up to `entries` (None: RUN) index entries, in
    block order, decoded by header.decode_entries (format 1 converted, entries past the end
    of its file missing). span=(first, end): blocks first..end-1, by default every block."""
    entries = entries or RUN
    start, end = span or (0, header.geometry.n_blocks)
    fd = os.open(path, os.O_RDONLY)
    try:
        for first, raw in raw_runs(fd, header, entries, (start, end)):
            yield first, header.decode_entries(raw, first, min(entries, end - first))
    finally:
        os.close(fd)


def slice_rounds(spans: npt.NDArray[np.integer[Any]], entries: int | None = None) -> int:
    """Runs of up to `entries` (None: RUN) that the longest of the slices spans[r]..spans[r + 1]
    takes: the rounds every rank makes in a collective pass over the index in slices."""
    longest = int(np.diff(np.asarray(spans, np.int64)).max(initial=0))
    return -(-longest // (entries or RUN))


def read_index(path: str | os.PathLike[str], header: fmt.Header,
               span: tuple[int, int] | None = None) -> npt.NDArray[np.void]:
    """Every index entry as an ENTRY array, decoded as entry_runs does. span=(first, end):
    only the entries of blocks first..end-1."""
    start, end = span or (0, header.geometry.n_blocks)
    index = fmt.empty_index(end - start)
    for first, entries in entry_runs(path, header, span=(start, end)):
        index[first - start:first - start + len(entries)] = entries
    return index
