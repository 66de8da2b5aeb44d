"""What a check found: its problems (each kind counted, the lowest blocks listed), merged
across workers and up an MPI tree to rank 0, with the newest-frame rows a repair needs.

The rows are bulk (one per intact frame): under MPI they stay on the rank that found them
(gathered strips them) and only the bounded lists of problems travel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .format import WRITTEN

if TYPE_CHECKING:
    from mpi4py import MPI

MAX_LISTED = 1000  # problems of each kind a check lists by default; all are counted
MERGE_TAG = 7002  # the shares' reports, sent up the merge tree


@dataclass
class Problem:
    """One finding. kind: damaged, uncommitted, orphaned or index; warning if harmless."""

    kind: str
    message: str
    block: int | None = None

    def __str__(self) -> str:
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
    listed: int | None = MAX_LISTED  # problems listed per kind (None: all)
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    rows: npt.NDArray[np.void] = field(  # newest frames
        default_factory=lambda: np.zeros(0, WRITTEN))
    entries: int = 0  # committed blocks read and verified
    files: int = 0
    frames: int = 0
    repairable: bool = True  # False when the directory file itself is unreadable
    decompressed: bool = True  # False for a quick check
    # a new version in progress beside the volume (a killed replacement): its directory
    # file -> intact frames in its data files (this share's)
    in_progress: dict[str, int] = field(default_factory=dict)

    def add(self, problem: Problem) -> None:
        """Count one problem and list it (until trimmed)."""
        self.add_found(problem.kind, 1, [problem])

    def add_found(self, kind: str, count: int, problems: list[Problem]) -> None:
        """Count `count` problems of a kind, listing the given ones (at least those of the
        lowest `listed` block numbers among them); trim when the list grows long."""
        if not count:
            return
        self.counts[kind] = self.counts.get(kind, 0) + count
        self.problems += problems
        if self.listed is not None and len(self.problems) > 2 * self.listed + 100:
            self.trim()

    def trim(self) -> None:
        """Sort the problems, and keep of each kind the `listed` of the lowest block numbers."""
        self.problems.sort(key=lambda p: (p.block is not None, p.block or 0, p.kind))
        if self.listed is None:
            return
        kept: list[Problem] = []
        per_kind: dict[str, int] = {}
        for p in self.problems:
            per_kind[p.kind] = per_kind.get(p.kind, 0) + 1
            if per_kind[p.kind] <= self.listed:
                kept.append(p)
        self.problems = kept

    @classmethod
    def merge(cls, shares: list[Report]) -> Report:
        """One report of the shares: counts and totals summed, rows joined, lists trimmed."""
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
    def n_problems(self) -> int:
        """Problems found, listed or not: nonzero means the volume is not clean."""
        return sum(self.counts.values())

    @property
    def damaged_blocks(self) -> set[int]:
        """Block numbers whose committed data cannot be read (of the listed problems)."""
        return {p.block for p in self.problems if p.kind == "damaged" and p.block is not None}

    def lines(self) -> list[str]:
        """One line per listed problem, one per kind with problems left unlisted, one per
        warning, then the summary."""
        listed: dict[str, int] = {}
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


def gathered(comm: MPI.Comm, share: Report) -> tuple[Report | None, npt.NDArray[np.void]]:
    """(every rank's Report merged on rank 0, None elsewhere; this rank's share's rows).
    The rows stay here, for a collective repair: the reports travel without them."""
    rows, share.rows = share.rows, share.rows[:0]
    return _merged_on_rank0(comm, share), rows


def _merged_on_rank0(comm: MPI.Comm, share: Report) -> Report | None:
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
