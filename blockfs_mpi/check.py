"""What blockfs-info and blockfs-fsck do, usable from Python: describe, check and repair a volume.

A check is split by data file (worker r of n takes files r, r + n, ...): each
worker reads and verifies the committed blocks stored in its files and scans
their frames; the shares are merged on rank 0. Under MPI each rank reads only
its slice of the index and routes the entries to the ranks checking their data
files, and the shares are merged up a tree, each merge keeping the lowest
blocks of each kind. Repair rebuilds the index from the frames and commits it
atomically; it never deletes data.
"""
import contextlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import format as fmt
from . import generation, parallel
from .commit import (
    build_index,
    commit_slices,
    index_spans,
    route_rows,
    slices_checksum,
    write_atomically,
)
from .completion import incomplete_line, is_incomplete
from .errors import BlockfsError, FormatError
from .format import WRITTEN
from .index import entry_runs, read_index, slice_rounds
from .lock import volume_locks
from .progress import Progress
from .reader import BlockReader, locate_data_files, read_header
from .scan import scan_data_file


def data_paths(path, header):
    """The data files of a volume, then any `<stem>.<n>` that follows them unnamed (stem:
    generation.stem, `<directory file>` for a volume that replaced none): the file of an
    extra rank of a resumed job that never committed (format 2 only). A
    data file found nowhere is given where it belongs: info reports it missing, and a
    check reports each of its blocks with the places it was looked for."""
    paths, _ = locate_data_files(path, header)
    if header.has_frames:
        base = generation.stem(path, header.data_files)
        while os.path.exists(f"{base}.{len(paths)}") and f"{base}.{len(paths)}" not in paths:
            paths.append(f"{base}.{len(paths)}")
    return paths


# -------------------------------------------------------------------- info --

def volume_info(path):
    """A JSON-ready description of a volume: format, geometry, codec, data files, blocks, ratio."""
    header = read_header(path)
    g = header.geometry
    n_present = voxels = compressed = 0
    for first, entries in entry_runs(path, header):  # a huge index never held whole
        present = np.flatnonzero(~fmt.is_missing(entries))
        if len(present):
            n_present += len(present)
            voxels += int(g.block_shapes(first + present).prod(axis=-1).sum())
            compressed += int(entries["size"][present].sum())
    files = []
    for name, file_path in zip(header.data_files, data_paths(path, header)):
        size = os.path.getsize(file_path) if os.path.exists(file_path) else None
        files.append({"name": name, "path": file_path, "bytes": size})
    return {
        "path": os.path.abspath(path), "format": header.version,
        "extent": {"x": g.x_extent, "y": g.y_extent, "z": g.z_extent},
        "block_size": {"x": g.x_block_size, "y": g.y_block_size, "z": g.z_block_size},
        "dtype": header.dtype.name, "compression": header.compression.name,
        "compression_level": header.compression_level,
        "shuffle": header.shuffle,
        "data_files": files, "blocks": g.n_blocks, "blocks_present": n_present,
        "blocks_missing": g.n_blocks - n_present, "compressed_bytes": compressed,
        "uncompressed_bytes": voxels * header.dtype.itemsize,
        "compression_ratio": round(voxels * header.dtype.itemsize / compressed, 3)
        if compressed else None,
        "metadata": header.metadata,
        "writer": header.writer,
        "incomplete": incomplete_line(path, header, n_present) if is_incomplete(header) else None,
    }


def format_info(info):
    """The lines blockfs-info prints for a volume_info() dict."""
    e, b = info["extent"], info["block_size"]
    lines = [f"{info['path']}: blockfs format {info['format']}",
             f"extent (x, y, z): {e['x']} x {e['y']} x {e['z']} voxels, {info['dtype']}",
             f"block size (x, y, z): {b['x']} x {b['y']} x {b['z']}",
             f"compression: blosc {info['compression']} level {info['compression_level']}, "
             f"{info['shuffle']} shuffle",
             f"blocks: {info['blocks_present']} present, {info['blocks_missing']} missing "
             f"of {info['blocks']}",
             f"bytes: {info['compressed_bytes']} compressed, {info['uncompressed_bytes']} "
             f"uncompressed" + (f", ratio {info['compression_ratio']}"
                                if info['compression_ratio'] is not None else ""),
             f"data files: {len(info['data_files'])}"]
    for f in info["data_files"]:
        size = "missing" if f["bytes"] is None else f"{f['bytes']} bytes"
        lines.append(f"  {f['name']}: {size}")
    for key, value in info["metadata"].items():
        lines.append(f"metadata {key}: {value}")
    if info["incomplete"]:
        lines.append(info["incomplete"])
    return lines


# ------------------------------------------------------------------- check --

MAX_LISTED = 1000  # problems of each kind a check lists by default; all are counted


@dataclass
class Problem:
    """One finding. kind: damaged, uncommitted, orphaned or index; warning if harmless."""

    kind: str
    message: str
    block: int | None = None

    def __str__(self):
        return f"{self.kind}: {self.message}"


@dataclass
class Report:
    """What a check found (one worker's share, or all of them merged).

    counts holds the number of problems of each kind; problems lists at most `listed`
    of each kind, those of the lowest block numbers: a killed job can leave 10^8
    uncommitted frames, and neither the memory of rank 0 nor a terminal wants a line
    for each.
    """

    path: str
    listed: int = MAX_LISTED  # problems listed per kind (None: all)
    problems: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, WRITTEN))  # newest frames
    entries: int = 0  # committed blocks read and verified
    files: int = 0
    frames: int = 0
    repairable: bool = True  # False when the directory file itself is unreadable
    decompressed: bool = True  # False for a quick check
    # a new version in progress beside the volume (a killed replacement): its directory
    # file -> intact frames in its data files (this share's)
    in_progress: dict = field(default_factory=dict)

    def add(self, problem):
        """Count one problem and list it (until trimmed)."""
        self.add_found(problem.kind, 1, [problem])

    def add_found(self, kind, count, problems):
        """Count `count` problems of a kind, listing the given ones (at least those of the
        lowest `listed` block numbers among them); trim when the list grows long."""
        if not count:
            return
        self.counts[kind] = self.counts.get(kind, 0) + count
        self.problems += problems
        if self.listed is not None and len(self.problems) > 2 * self.listed + 100:
            self.trim()

    def trim(self):
        """Sort the problems, and keep of each kind the `listed` of the lowest block numbers."""
        self.problems.sort(key=lambda p: (p.block is not None, p.block or 0, p.kind))
        if self.listed is None:
            return
        kept, per_kind = [], {}
        for p in self.problems:
            per_kind[p.kind] = per_kind.get(p.kind, 0) + 1
            if per_kind[p.kind] <= self.listed:
                kept.append(p)
        self.problems = kept

    @classmethod
    def merge(cls, shares):
        merged = cls(shares[0].path, shares[0].listed)
        for share in shares:
            merged.problems += share.problems
            for kind, n in share.counts.items():
                merged.counts[kind] = merged.counts.get(kind, 0) + n
            merged.warnings += share.warnings
            merged.entries += share.entries
            merged.files += share.files
            merged.frames += share.frames
            merged.repairable &= share.repairable
            merged.decompressed &= share.decompressed
            for path, frames in share.in_progress.items():
                merged.in_progress[path] = merged.in_progress.get(path, 0) + frames
        merged.rows = np.concatenate([merged.rows] + [s.rows for s in shares])
        merged.trim()
        return merged

    @property
    def n_problems(self):
        """Problems found, listed or not: nonzero means the volume is not clean."""
        return sum(self.counts.values())

    @property
    def damaged_blocks(self):
        """Block numbers whose committed data cannot be read (of the listed problems)."""
        return {p.block for p in self.problems if p.kind == "damaged" and p.block is not None}

    def lines(self):
        """One line per listed problem, one per kind with problems left unlisted, one per
        warning, then the summary."""
        listed = {}
        for p in self.problems:
            listed[p.kind] = listed.get(p.kind, 0) + 1
        unlisted = [f"{kind}: {n - listed.get(kind, 0)} more not listed (--max-listed)"
                    for kind, n in sorted(self.counts.items()) if n > listed.get(kind, 0)]
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        verified = f"{self.entries} committed blocks verified" + (
            "" if self.decompressed else " (quick: not decompressed)")
        pending = [f"warning: {path}: a new version in progress, left by a killed overwrite: "
                   f"{frames} intact frames not committed (the committed version is "
                   f"untouched); blockfs-write --resume completes it, --overwrite starts again"
                   for path, frames in sorted(self.in_progress.items())]
        summary = (f"{self.path}: {self.n_problems} problem(s)"
                   + (f" ({counts})" if counts else "")
                   + f", {len(self.warnings) + len(pending)} warning(s); "
                   f"{verified}, {self.frames} intact frames in {self.files} data files")
        return [str(p) for p in self.problems] + unlisted + [str(w) for w in self.warnings] \
            + pending + [summary]


def _where(geometry, block):
    x, y, z = geometry.block_origin(block)
    return f"block {block} at (x={x}, y={y}, z={z})"


def check_share(path, rank=0, size=1, progress=None, listed=MAX_LISTED, quick=False,
                comm=None):
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
                (reader.check_sizes if quick else reader.decode)(payload, tuple(shape), block)
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


def _count_in_progress(report, path, header, rank, size):
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

    def __init__(self, path, header, rank, size, scans):
        n_named = len(header.data_files)
        self.crc = 0
        self.frame_blocks = np.unique(np.concatenate([s.rows["block"] for s in scans]
                                                     + [np.zeros(0, np.uint64)]))
        self.frame_entries = fmt.empty_index(len(self.frame_blocks))
        mine, starts = [], {s.file_number: [] for s in scans}
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

    def committed(self, blocks):
        """The committed entries of blocks that this share holds frames of."""
        return self.frame_entries[np.searchsorted(self.frame_blocks, blocks)]


class _SlicedPass:
    """_IndexPass under MPI, collective: each rank reads only its slice of the index
    (commit.index_spans), in the same number of runs on every rank. The committed entries of
    each run go to the ranks checking their data files (`mine`, `starts`); the newest frames
    of every rank's data files go to the ranks whose slices hold their blocks, which compare
    them with the committed entries there (`frames`, `frames_committed`). Every rank gets
    the index checksum, combined from the slices' (crc)."""

    def __init__(self, comm, path, header, paths, scans):
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


def _entry_rows(first, entries, which):
    """WRITTEN rows (block, offset, size, file) of the entries at positions `which` of a run
    of index entries of blocks first, first + 1, ..."""
    rows = np.zeros(len(which), WRITTEN)
    rows["block"] = first + which
    for name in ("offset", "size", "file"):
        rows[name] = entries[name][which]
    return rows


def _check_directory(report, header, index_crc, paths):
    """Problems of the directory file as a whole: index checksum, unnamed data files."""
    if header.has_index_checksum and index_crc != header.index_crc32c:
        report.add(Problem("index", f"{report.path}: index checksum mismatch (the damaged "
                                    f"entries are listed as blocks)"))
    for extra in paths[len(header.data_files):]:
        report.add(Problem("orphaned", f"{extra}: data file not named in the directory file "
                                       f"(a job that did not commit; --repair adds it)"))


NOT_COMMITTED = "is not in the index (a job that did not commit; --repair adds it)"
NEWER = "is newer than the committed one (a job that did not commit)"


def _check_scan(report, scan, starts):
    """Count one data file's frames and keep its newest rows; warn of damaged stretches that
    are not committed frames (starts: where this file's committed frames start)."""
    report.frames += scan.frames
    report.rows = np.concatenate([report.rows, scan.rows])
    for offset, reason in scan.damaged:
        if offset not in starts:  # damage in a committed frame is reported as its block
            report.warnings.append(Problem("warning", f"{reason} (no committed block there)"))


def _check_frames(report, geometry, paths, rows, committed):
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


def _sequences(paths, entries):
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


def check(path, comm=None, n_workers=1, silent=True, listed=MAX_LISTED, quick=False):
    """Check a whole volume; the merged Report on rank 0, None on the other ranks.

    Under MPI the ranks share the data files; without it, n_workers local processes do.
    The report counts every problem and lists `listed` of each kind (None: all). Under MPI
    it carries no frame rows: each rank keeps its share's (see checked_shares). quick: see
    check_share.
    """
    return checked_shares(path, comm, n_workers, silent, listed, quick)[0]


def checked_shares(path, comm=None, n_workers=1, silent=True, listed=MAX_LISTED, quick=False):
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
    rows, share.rows = share.rows, share.rows[:0]  # kept here, for a collective repair
    return _merged_on_rank0(comm, share), rows


MERGE_TAG = 7002  # the shares' reports, sent up the merge tree


def _merged_on_rank0(comm, share):
    """Every rank's Report merged on rank 0 (None elsewhere) up a binomial tree, in rank
    order: each merge keeps the `listed` lowest blocks of each kind, so no rank receives
    more than that from another, and rank 0 at most log2(ranks) such reports."""
    rank, size, step = comm.Get_rank(), comm.Get_size(), 1
    while step < size:
        if rank % (2 * step):  # this rank's merged reports [rank, rank + step) go down
            comm.send(share, dest=rank - step, tag=MERGE_TAG)
            return None
        if rank + step < size:
            share = Report.merge([share, comm.recv(source=rank + step, tag=MERGE_TAG)])
        step *= 2
    return share


def repaired_header(path, repairable):
    """The header a repair commits: the volume's own, also naming the unnamed data files
    found beside it. Raises FormatError if the volume cannot be repaired."""
    if not repairable:
        raise FormatError(f"{path}: cannot repair: the directory file's header or metadata is "
                          f"damaged, so the volume's geometry is unknown")
    header = read_header(path)
    if not header.has_frames:
        raise FormatError(f"{path}: cannot repair a format 1 volume: it has no frames to "
                          f"rebuild the index from")
    folder = os.path.dirname(os.path.abspath(path))
    header.data_files += [os.path.relpath(p, folder)
                          for p in data_paths(path, header)[len(header.data_files):]]
    return header


def repair(path, report):
    """Rebuild the index from the frames a check found and commit it atomically.

    The newest intact frame of each block wins; a block without any keeps its
    entry, so that it still reads as an error rather than as zeros. Unnamed
    data files found beside the volume are added to it. Nothing is deleted.
    Returns the number of index entries changed.
    """
    header = repaired_header(path, report.repairable)
    old = read_index(path, header)
    index = build_index(header.geometry, report.rows, base=old, newest_wins=True)
    write_atomically(path, *fmt.directory2_parts(header, index))
    return int((index != old).sum())


def repair_collectively(path, comm, rows, repairable):
    """repair() under MPI, distributed like a writers' commit: each rank's frame rows go to
    the rank that rebuilds their slice of the index, so no rank holds more than its share.
    Every rank returns the number of entries changed, or raises the same error."""
    rank, index, changed, error = comm.Get_rank(), None, 0, None
    try:
        header = repaired_header(path, repairable)
        spans = index_spans(header.geometry.n_blocks, comm.Get_size())
        span = int(spans[rank]), int(spans[rank + 1])
    except (BlockfsError, OSError) as e:
        error = f"rank {rank}: {e}"
    failed = parallel.agree(comm, error)
    if failed:
        raise parallel.everywhere(FormatError(failed[0]))
    rows = route_rows(comm, rows, spans)
    try:
        old = read_index(path, header, span)
        index = build_index(header.geometry, rows, base=old, newest_wins=True, span=span)
        changed = int((index != old).sum())
    except (BlockfsError, OSError) as e:
        error = f"rank {rank}: {path}: {e}"
    failed = parallel.agree(comm, error)
    if failed:
        raise parallel.everywhere(FormatError("; ".join(failed)))
    commit_slices(comm, path, header, span[0], index)
    return comm.allreduce(changed)


def fsck(path, comm=None, n_workers=1, fix=False, silent=False, out=print, listed=MAX_LISTED,
         quick=False, break_lock=False):
    """blockfs-fsck: check, print the problems (up to `listed` of each kind) and a summary
    (rank 0), repair if asked and needed, then check again. Collective under MPI. Returns
    the exit status (0 = clean). With fix, the volume is locked throughout (LockedError if
    another job changes it; break_lock: see lock.py)."""
    with volume_locks([path] if fix else [], comm, break_lock):
        return _fsck(path, comm, n_workers, fix, silent, out, listed, quick)


def _fsck(path, comm, n_workers, fix, silent, out, listed, quick):
    """fsck() once the volume is locked (or needs no lock)."""
    rank = parallel.rank_of(comm)
    report, rows = checked_shares(path, comm, n_workers, silent, listed, quick)
    if rank == 0:
        for line in report.lines():
            out(line)
    needed, repairable = (report.n_problems > 0, report.repairable) if rank == 0 else (None, None)
    if comm is not None:
        needed, repairable = comm.bcast((needed, repairable), root=0)
    if not (fix and needed):
        return int(needed) or incomplete(path, report, out)
    try:
        changed = (repair(path, report) if comm is None
                   else repair_collectively(path, comm, rows, repairable))
    except BlockfsError as e:
        if rank == 0:
            out(str(e))
        return 1
    if rank == 0:
        out(f"{path}: repaired, {changed} index entries changed")
    report = check(path, comm, n_workers, silent, listed, quick)
    if rank == 0:
        out("after repair:")
        for line in report.lines():
            out(line)
    return (int(report.n_problems > 0) or incomplete(path, report, out)) if rank == 0 else 0


def incomplete(path, report, out):
    """On rank 0 of a clean check: say so and return 1 if the volume's writer did not finish
    (a repaired index holds what was written, not the blocks never written); else 0."""
    if report is None:  # another rank: rank 0 speaks for the job
        return 0
    header = read_header(path)
    if not is_incomplete(header):
        return 0
    out(incomplete_line(path, header, report.entries))
    return 1
