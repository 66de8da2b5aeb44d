"""What blockfs-fsck checks, usable from Python: verify a volume's committed blocks and find
the frames its index does not have.

A check is split by data file (worker r of n takes files r, r + n, ...): each
worker reads and verifies the committed blocks stored in its files and scans
their frames; the shares are merged on rank 0 (report.py). Under MPI each rank
reads only its slice of the index and routes the entries to the ranks checking
their data files, and the shares are merged up a tree, each merge keeping the
lowest blocks of each kind. Repairing what a check found is repair.py's business.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import format as fmt
from . import generation, parallel
from .describe import data_paths
from .errors import BlockfsError, FormatError
from .format import WRITTEN
from .geometry import Geometry
from .index import entry_runs, slice_rounds
from .index_build import index_spans, route_rows, slices_checksum
from .progress import Progress
from .reader import BlockReader, read_header
from .report import MAX_LISTED, Problem, Report, gathered
from .scan import Scan, scan_data_file

if TYPE_CHECKING:
    from mpi4py import MPI

Rows = npt.NDArray[np.void]  # structured rows: WRITTEN (frames) or format.ENTRY (index)


def _where(geometry: Geometry, block: int) -> str:
    """How a problem names a block: its number and its origin in voxels."""
    x, y, z = geometry.block_origin(block)
    return f"block {block} at (x={x}, y={y}, z={z})"


def check_share(path: str, rank: int = 0, size: int = 1, progress: Progress | None = None,
                listed: int | None = MAX_LISTED, quick: bool = False,
                comm: MPI.Comm | None = None) -> Report:
    """Check the committed blocks stored in data files rank, rank + size, ... and scan their
    frames; rank 0 also checks the directory file itself. Returns a Report. quick: blocks
    are verified (frame, checksum, sizes) but not decompressed.

    Without comm the index is read once, a run of entries at a time, keeping only what this
    share needs: its own committed blocks and the entries of the blocks its frames hold.
    With comm (rank and size its own; collective) each rank reads only its slice of the
    index and the entries and frames travel to the ranks that need them (_SlicedPass).
    """
    report = Report(os.path.abspath(path), listed, decompressed=not quick)
    error = None
    try:
        header = read_header(path)
    except FormatError as e:
        error = f"directory file: {e}"
    errors = parallel.agree(comm, error)  # every rank returns here, or none
    if errors:
        report.repairable = False
        if rank == 0:
            report.add(Problem("damaged", errors[0]))
        return report
    geometry, paths = header.geometry, data_paths(path, header)
    numbers = list(range(rank, len(paths), size))
    scans = [scan_data_file(paths[number], number, geometry.n_blocks) for number in numbers
             if header.has_frames]
    seen: _IndexPass | _SlicedPass
    if comm is None:
        seen = _IndexPass(path, header, rank, size, scans)
        frames = [(s.rows, seen.committed(s.rows["block"])) for s in scans]
    else:
        seen = _SlicedPass(comm, path, header, paths, scans)
        frames = [(seen.frames, seen.frames_committed)]
    if rank == 0:
        _check_directory(report, header, seen.crc, paths)
    reader = BlockReader(path, header)
    try:
        shapes = geometry.block_shapes(seen.mine["block"].astype(np.int64))
        for entry, shape in zip(seen.mine, shapes):
            block = int(entry["block"])
            try:  # reader.verify, from the entry in hand rather than read again
                payload = reader.payload_at(block, int(entry["file"]), int(entry["offset"]),
                                            int(entry["size"]), reuse=True)
                if quick:
                    reader.check_sizes(payload, tuple(shape), block)
                else:
                    reader.decode(payload, tuple(shape), block)
            except (BlockfsError, OSError) as e:
                report.add(Problem("damaged", f"{_where(geometry, block)}: {e}", block))
            report.entries += 1
            if progress is not None:
                progress.update(1, int(entry["size"]))
    finally:
        reader.close()
    report.files += len(numbers)
    for scan in scans:
        _check_scan(report, scan, seen.starts[scan.file_number])
    for rows, committed in frames:
        _check_frames(report, geometry, paths, rows, committed)
    if header.has_frames:
        _count_in_progress(report, path, header, rank, size)
    return report


def _count_in_progress(report: Report, path: str, header: fmt.Header, rank: int,
                       size: int) -> None:
    """Count the intact frames in this share of the data files of a new version in progress
    that a killed replacement left beside the volume (generation.in_progress)."""
    in_progress = generation.in_progress(path, header.data_files)
    if in_progress is None:
        return
    try:
        new = read_header(in_progress)
    except (BlockfsError, OSError) as e:
        report.warnings.append(Problem("warning", f"{in_progress}: unreadable: {e}"))
        return
    files = data_paths(in_progress, new)
    report.in_progress[in_progress] = sum(
        scan_data_file(files[n], n, new.geometry.n_blocks).frames
        for n in range(rank, len(files), size) if os.path.exists(files[n]))


class _IndexPass:
    """What one share of a check needs from the index, gathered in one pass over it in runs:
    the index checksum (rank 0), the committed blocks this share verifies (`mine`: WRITTEN
    rows of their entries, by block), the committed entries of the blocks its data files
    hold frames of, and where committed frames start in its data files."""

    def __init__(self, path: str, header: fmt.Header, rank: int, size: int,
                 scans: list[Scan]) -> None:
        n_named = len(header.data_files)
        self.crc = 0
        self.frame_blocks = np.unique(np.concatenate([s.rows["block"] for s in scans]
                                                     + [np.zeros(0, np.uint64)]))
        self.frame_entries = fmt.empty_index(len(self.frame_blocks))
        mine: list[Rows] = []
        starts: dict[int, list[npt.NDArray[np.uint64]]] = {s.file_number: [] for s in scans}
        for first, entries in entry_runs(path, header):
            if rank == 0 and header.has_index_checksum:
                self.crc = fmt.crc32c(entries.view(np.uint8), self.crc)
            files = entries["file"]
            owner = np.where(files < n_named, files % size, 0)
            mine.append(_entry_rows(first, entries,
                                    np.flatnonzero(~fmt.is_missing(entries) & (owner == rank))))
            low, high = np.searchsorted(self.frame_blocks, [first, first + len(entries)])
            self.frame_entries[low:high] = entries[self.frame_blocks[low:high] - first]
            for number, offsets in starts.items():
                offsets.append(entries["offset"][files == number] - fmt.FRAME_SIZE)
        self.mine = np.concatenate(mine + [np.zeros(0, WRITTEN)])
        self.starts = {number: set(np.concatenate(offsets + [np.zeros(0, np.uint64)]).tolist())
                       for number, offsets in starts.items()}

    def committed(self, blocks: npt.NDArray[np.uint64]) -> Rows:
        """The committed entries of blocks that this share holds frames of."""
        return self.frame_entries[np.searchsorted(self.frame_blocks, blocks)]


class _SlicedPass:
    """_IndexPass under MPI, collective: each rank reads only its slice of the index
    (index_build.index_spans), in the same number of runs on every rank. The committed entries of
    each run go to the ranks checking their data files (`mine`, `starts`); the newest frames
    of every rank's data files go to the ranks whose slices hold their blocks, which compare
    them with the committed entries there (`frames`, `frames_committed`). Every rank gets
    the index checksum, combined from the slices' (crc)."""

    def __init__(self, comm: MPI.Comm, path: str, header: fmt.Header, paths: list[str],
                 scans: list[Scan]) -> None:
        size, n_blocks = comm.Get_size(), header.geometry.n_blocks
        spans = index_spans(n_blocks, size)
        span = int(spans[comm.Get_rank()]), int(spans[comm.Get_rank() + 1])
        frames = route_rows(comm, np.concatenate([s.rows for s in scans]
                                                 + [np.zeros(0, WRITTEN)]), spans)
        self.frames = frames[np.lexsort((frames["file"], frames["block"]))]
        self.frames_committed = fmt.empty_index(len(self.frames))
        crc, length, received = 0, 0, []
        runs = entry_runs(path, header, span=span)
        for _ in range(slice_rounds(spans)):
            first, entries = next(runs, (span[1], fmt.empty_index(0)))
            if header.has_index_checksum:
                crc, length = fmt.crc32c(entries.view(np.uint8), crc), length + entries.nbytes
            low, high = np.searchsorted(self.frames["block"], [first, first + len(entries)])
            self.frames_committed[low:high] = entries[self.frames["block"][low:high] - first]
            rows = _entry_rows(first, entries, np.flatnonzero(~fmt.is_missing(entries)))
            owners = np.where(rows["file"] < len(paths), rows["file"] % size, 0)
            received.append(parallel.route(comm, rows, owners))
        mine = np.concatenate(received + [np.zeros(0, WRITTEN)])
        self.mine = mine = mine[np.argsort(mine["block"], kind="stable")]
        self.starts = {s.file_number: set((mine["offset"][mine["file"] == s.file_number]
                                           - fmt.FRAME_SIZE).tolist()) for s in scans}
        self.crc = slices_checksum(comm, crc, length)


def _entry_rows(first: int, entries: Rows, which: npt.NDArray[np.intp]) -> Rows:
    """WRITTEN rows (block, offset, size, file) of the entries at positions `which` of a run
    of index entries of blocks first, first + 1, ..."""
    rows = np.zeros(len(which), WRITTEN)
    rows["block"] = first + which
    for name in ("offset", "size", "file"):
        rows[name] = entries[name][which]
    return rows


def _check_directory(report: Report, header: fmt.Header, index_crc: int,
                     paths: list[str]) -> None:
    """Problems of the directory file as a whole: index checksum, unnamed data files."""
    if header.has_index_checksum and index_crc != header.index_crc32c:
        report.add(Problem("index", f"{report.path}: index checksum mismatch (the damaged "
                                    f"entries are listed as blocks)"))
    for extra in paths[len(header.data_files):]:
        report.add(Problem("orphaned", f"{extra}: data file not named in the directory file "
                                       f"(a job that did not commit; --repair adds it)"))


NOT_COMMITTED = "is not in the index (a job that did not commit; --repair adds it)"
NEWER = "is newer than the committed one (a job that did not commit)"


def _check_scan(report: Report, scan: Scan, starts: set[int]) -> None:
    """Count one data file's frames and keep its newest rows; warn of damaged stretches that
    are not committed frames (starts: where this file's committed frames start)."""
    report.frames += scan.frames
    report.rows = np.concatenate([report.rows, scan.rows])
    for offset, reason in scan.damaged:
        if offset not in starts:  # damage in a committed frame is reported as its block
            report.warnings.append(Problem("warning", f"{reason} (no committed block there)"))


def _check_frames(report: Report, geometry: Geometry, paths: list[str], rows: Rows,
                  committed: Rows) -> None:
    """Compare newest intact frames (WRITTEN rows, of any data files) with their blocks'
    committed entries: a frame of a block the index does not have, or newer than the
    committed one, is an uncommitted block. Listed by block, then data file."""
    other = (committed["file"] != rows["file"]) | (committed["offset"] != rows["offset"])
    missing = other & fmt.is_missing(committed)
    newer = np.zeros(len(rows), bool)
    rewritten = np.flatnonzero(other & ~missing)  # which frame of these blocks is newer?
    newer[rewritten] = rows["sequence"][rewritten] > _sequences(paths, committed[rewritten])
    found = np.flatnonzero(missing | newer)
    order = np.lexsort((rows["file"][found], rows["block"][found]))
    listed = found[order[:report.listed]]
    report.add_found("uncommitted", len(found), [
        Problem("uncommitted", f"{_where(geometry, int(rows['block'][i]))}: intact frame in "
                               f"{paths[rows['file'][i]]} at offset {rows['offset'][i]} "
                               f"{NOT_COMMITTED if missing[i] else NEWER}", int(rows["block"][i]))
        for i in listed])


def _sequences(paths: list[str], entries: Rows) -> npt.NDArray[np.uint64]:
    """Sequence numbers of the frames of index entries; 0 (older than any frame) where a
    frame cannot be read. Each data file is opened once, however many frames are asked for."""
    sequences = np.zeros(len(entries), np.uint64)
    for number in np.unique(entries["file"]):
        if number >= len(paths):
            continue
        here = np.flatnonzero(entries["file"] == number)
        try:
            fd = os.open(paths[number], os.O_RDONLY)
        except OSError:
            continue
        try:
            for i in here:
                with contextlib.suppress(OSError, ValueError):
                    head = os.pread(fd, fmt.FRAME_SIZE, int(entries["offset"][i]) - fmt.FRAME_SIZE)
                    sequences[i] = fmt.decode_frame_header(head, paths[number])[2]
        finally:
            os.close(fd)
    return sequences


def check(path: str, comm: MPI.Comm | None = None, n_workers: int = 1, silent: bool = True,
          listed: int | None = MAX_LISTED, quick: bool = False) -> Report | None:
    """Check a whole volume; the merged Report on rank 0, None on the other ranks.

    Under MPI the ranks share the data files; without it, n_workers local processes do.
    The report counts every problem and lists `listed` of each kind (None: all). Under MPI
    it carries no frame rows: each rank keeps its share's (see checked_shares). quick: see
    check_share.
    """
    return checked_shares(path, comm, n_workers, silent, listed, quick)[0]


def checked_shares(path: str, comm: MPI.Comm | None = None, n_workers: int = 1,
                   silent: bool = True, listed: int | None = MAX_LISTED,
                   quick: bool = False) -> tuple[Report | None, Rows]:
    """(merged Report on rank 0 or None, the newest-frame rows this rank's share found).
    Without MPI the one process holds every share's rows (the report's rows)."""
    if comm is None and n_workers > 1:
        with ProcessPoolExecutor(n_workers) as pool:  # a worker that dies raises, never hangs
            report = Report.merge(list(pool.map(
                check_share, [path] * n_workers, range(n_workers), [n_workers] * n_workers,
                [None] * n_workers, [listed] * n_workers, [quick] * n_workers)))
        return report, report.rows
    progress = Progress(comm, None, "fsck", disable=silent)
    share = check_share(path, parallel.rank_of(comm), parallel.size_of(comm), progress, listed,
                        quick, comm)
    progress.close()
    share.trim()
    if comm is None:
        return share, share.rows
    return gathered(comm, share)
