"""Check a blockfs volume, and with --repair rebuild its index from the data files' frames.

Checks every index entry (in range, inside its data file, frame and payload
checksums, decompresses to the block's size) and scans every data file's
frames (format 2) for blocks that are damaged, not committed (a killed job)
or orphaned. One line per problem (up to --max-listed of each kind, the
others counted), then a summary; exit status 0 only if the volume is clean and
complete: a volume whose writer did not finish (a killed job) is reported as
incomplete, with the command that completes it, even after a repair.
With --repair it commits a new index in which the newest intact frame of
each block wins; it never deletes data. Format 1 volumes have no frames:
their entries are checked and decoded, and they cannot be repaired.

Run under `mpiexec -n N` to split the data files across ranks.

Usage:
  blockfs-fsck <blockfs-file> [--repair] [--break-lock] [--quick] [--n-workers <n>]
               [--max-listed <n>] [--silent]
  blockfs-fsck -h | --help | --version

Arguments:
  <blockfs-file>  The volume's directory file.

Options:
  --repair           Rebuild and commit the index from the frames if a problem is found.
                     The volume is locked meanwhile: refused while another job changes it.
  --break-lock       With --repair: take over a lock that a job on another host left.
  --quick            Verify each block's frame, checksum and sizes without decompressing
                     it: several times faster; misses only a block stored undecodable.
  --n-workers <n>    Worker processes when run without mpiexec (default: one per core
                     this process may use). Under mpiexec every rank is one worker and
                     this option is not used.
  --max-listed <n>   Problems of each kind listed, lowest block numbers first; the rest
                     are counted in one line per kind [default: 1000].
  --silent           No progress bar.
  -h --help          Show this text.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from . import export, parallel
from .check import check, checked_shares
from .completion import incomplete_line, is_incomplete
from .errors import BlockfsError
from .lock import volume_locks
from .options import number_in_range, parse_command_line
from .reader import read_header
from .repair import repair, repair_collectively
from .report import MAX_LISTED, Report

if TYPE_CHECKING:
    from mpi4py import MPI


def fsck(path: str, comm: MPI.Comm | None = None, n_workers: int = 1, fix: bool = False,
         silent: bool = False, out: Callable[[str], object] = print,
         listed: int | None = MAX_LISTED, quick: bool = False, break_lock: bool = False) -> int:
    """blockfs-fsck: check, print the problems (up to `listed` of each kind) and a summary
    (rank 0), repair if asked and needed, then check again. Collective under MPI. Returns
    the exit status (0 = clean). With fix, the volume is locked throughout (LockedError if
    another job changes it; break_lock: see lock.py)."""
    with volume_locks([path] if fix else [], comm, break_lock):
        return _fsck(path, comm, n_workers, fix, silent, out, listed, quick)


def _fsck(path: str, comm: MPI.Comm | None, n_workers: int, fix: bool, silent: bool,
          out: Callable[[str], object], listed: int | None, quick: bool) -> int:
    """fsck() once the volume is locked (or needs no lock)."""
    rank = parallel.rank_of(comm)
    found, rows = checked_shares(path, comm, n_workers, silent, listed, quick)
    report = cast(Report, found)  # None on the other ranks, which never read it
    if rank == 0:
        for line in report.lines():
            out(line)
    needed, repairable = (report.n_problems > 0, report.repairable) if rank == 0 else (False, False)
    if comm is not None:  # rank 0's verdict on every rank
        needed, repairable = comm.bcast((needed, repairable), root=0)
    if not (fix and needed):
        return int(needed) or incomplete(path, found, out)
    try:
        changed = (repair(path, report) if comm is None
                   else repair_collectively(path, comm, rows, repairable))
    except BlockfsError as e:
        if rank == 0:
            out(str(e))
        return 1
    if rank == 0:
        out(f"{path}: repaired, {changed} index entries changed")
    report = cast(Report, check(path, comm, n_workers, silent, listed, quick))
    if rank == 0:
        out("after repair:")
        for line in report.lines():
            out(line)
    return (int(report.n_problems > 0) or incomplete(path, report, out)) if rank == 0 else 0


def incomplete(path: str, report: Report | None, out: Callable[[str], object]) -> int:
    """On rank 0 of a clean check: say so and return 1 if the volume's writer did not finish
    (a repaired index holds what was written, not the blocks never written); else 0."""
    if report is None:  # another rank: rank 0 speaks for the job
        return 0
    header = read_header(path)
    if not is_incomplete(header):
        return 0
    out(incomplete_line(path, header, report.entries))
    return 1


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    n_workers = export.check_workers(args["--n-workers"]) or parallel.usable_cores()
    listed = number_in_range("--max-listed", args["--max-listed"], 0, 10**9)
    status = fsck(args["<blockfs-file>"], parallel.world(), n_workers,
                  fix=args["--repair"], silent=args["--silent"], listed=listed,
                  quick=args["--quick"], break_lock=args["--break-lock"])
    sys.exit(status)


if __name__ == "__main__":
    main()
