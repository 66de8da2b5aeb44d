"""Building a format 2 index from WRITTEN rows: whole, or under MPI one slice per rank.

A block written by two writers is refused (DuplicateBlockError naming the first
few), unless rebuilding from frames, where the newest frame wins. For a
distributed commit, fsck and repair: where each rank's slice of the index
starts, the rows routed to the rank whose slice holds their block, and the
whole index's checksum from the slices' own.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import format as fmt
from .errors import DuplicateBlockError, WriterError
from .format import WRITTEN
from .geometry import Geometry
from .parallel import route

if TYPE_CHECKING:
    from mpi4py import MPI

DUPLICATES_NAMED = 10  # blocks a DuplicateBlockError names; it counts all of them


def build_index(geometry: Geometry, written: npt.ArrayLike,
                base: npt.NDArray[np.void] | None = None, writer_kind: str = "data file",
                newest_wins: bool = False,
                span: tuple[int, int] | None = None) -> npt.NDArray[np.void]:
    """A dense format 2 index from WRITTEN rows, on top of a base index.

    Within one data file the newest frame of a block wins. A block in the rows
    of two different files is an error naming the block and both writers,
    unless newest_wins (rebuilding from frames: then the newest frame wins).
    span=(first, end) builds only the entries of blocks first..end-1 (a rank's
    slice in a distributed commit), from rows of those blocks only.
    Works through a sort permutation, never a sorted copy of the rows.
    """
    first, end = span or (0, geometry.n_blocks)
    index = fmt.empty_index(end - first) if base is None else base.copy()
    rows = np.asarray(written, WRITTEN)
    if len(rows) and rows["block"].max() >= geometry.n_blocks:
        raise WriterError(f"block number {rows['block'].max()} is outside the volume "
                          f"({geometry.n_blocks} blocks)")
    order = np.lexsort((rows["sequence"], rows["block"]))
    blocks = rows["block"][order]
    if not newest_wins:
        _refuse_shared_blocks(geometry, blocks, rows["file"][order], writer_kind)
    newest = np.ones(len(order), bool)  # the last row of each block in sequence order
    np.not_equal(blocks[1:], blocks[:-1], out=newest[:-1])
    blocks, order = blocks[newest] - first, order[newest]
    for name in ("offset", "size", "file"):
        index[name][blocks] = rows[name][order]
    return index


def _refuse_shared_blocks(geometry: Geometry, blocks: npt.NDArray[np.uint64],
                          files: npt.NDArray[np.uint32], writer_kind: str) -> None:
    """Raise DuplicateBlockError if a block has rows of two writers (blocks sorted, files
    in the same order)."""
    same_block = blocks[1:] == blocks[:-1]
    other_file = files[1:] != files[:-1]
    twice = np.unique(blocks[1:][same_block & other_file])
    if not len(twice):
        return
    problems = []
    for block in twice[:DUPLICATES_NAMED]:
        writers = sorted(set(files[blocks == block].tolist()))
        x, y, z = geometry.block_origin(block)
        problems.append(f"block {block} at (x={x}, y={y}, z={z}) by "
                        + " and ".join(f"{writer_kind} {w}" for w in writers))
    raise duplicate_error(len(twice), problems)


def duplicate_error(count: int, problems: Sequence[str]) -> DuplicateBlockError:
    """The DuplicateBlockError for `count` blocks written twice, naming the first few."""
    problems = problems[:DUPLICATES_NAMED]
    more = f" and {count - len(problems)} more" if count > len(problems) else ""
    return DuplicateBlockError(f"{count} block(s) written by more than one writer: "
                               + "; ".join(problems) + more, count, problems)


def recovered_index(geometry: Geometry, recovered: npt.ArrayLike) -> npt.NDArray[np.void]:
    """The index that frames found in data files describe (newest frame of each block)."""
    return build_index(geometry, recovered, newest_wins=True)


def index_spans(n_blocks: int, size: int) -> npt.NDArray[np.uint64]:
    """Where each rank's slice of the index starts: rank r builds and writes entries
    spans[r] to spans[r + 1] - 1 in a distributed commit."""
    return np.array([n_blocks * r // size for r in range(size + 1)], np.uint64)


def route_rows(comm: MPI.Comm | None, rows: npt.ArrayLike,
               spans: npt.NDArray[np.uint64]) -> npt.NDArray[np.void]:
    """Send every WRITTEN row to the rank whose slice of the index holds its block; the rows
    this rank receives."""
    rows = np.asarray(rows, WRITTEN)
    owners = np.searchsorted(spans[1:-1], rows["block"], side="right")  # past the end: last
    return route(comm, rows, owners)


def slices_checksum(comm: MPI.Comm, crc: int, length: int) -> int:
    """CRC-32C of the whole index from each rank's CRC-32C of its slice and the slice's
    length in bytes, combined in rank order on every rank (one allgather; nobody reads
    another's slice)."""
    whole = 0
    for slice_crc, slice_length in comm.allgather((crc, length)):
        whole = fmt.crc32c_combine(whole, slice_crc, slice_length)
    return whole
