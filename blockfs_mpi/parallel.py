"""The thin MPI layer: is this an MPI job, which communicator, rank-0 output, aborts.

MPI is initialised only when it is really in use (a launcher started us, or
a communicator was passed in): a plain `python` run never loads libmpi, so
fork-based multiprocessing keeps working and no launcher is needed.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from mpi4py import MPI

# Variables the common launchers (MPICH/Hydra, Open MPI/PRRTE, PMIx, Slurm's PMI2) set.
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")

log = logging.getLogger("blockfs_mpi")

IDLE_POLL_FIRST, IDLE_POLL_MAX = 1e-4, 1e-2  # seconds between tests of a pending barrier
# Seconds a failing rank waits between writing its message and MPI_Abort: Hydra can kill the
# job before it has forwarded what the rank wrote last (CI once lost blockfs2hdf's message).
ABORT_GRACE = 0.5

T = TypeVar("T")
Row = TypeVar("Row", bound=np.generic)
Shared = TypeVar("Shared", bound=BaseException)
R = TypeVar("R", covariant=True)


class Main(Protocol[R]):
    """A program's main(argv): argv=None means sys.argv[1:] (docopt's default)."""

    def __call__(self, argv: list[str] | None = None) -> R: ...


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process (BLOCKFS_MPI=0/1 overrides)."""
    forced = os.environ.get("BLOCKFS_MPI")
    if forced in ("0", "1"):
        return forced == "1"
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def world() -> MPI.Comm | None:
    """MPI.COMM_WORLD under an MPI launcher, else None (one rank, no MPI)."""
    if not launched_by_mpi():
        return None
    from mpi4py import MPI
    return MPI.COMM_WORLD


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what SLURM or a launcher's binding
    allows), where the OS has one, else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def rank_of(comm: MPI.Comm | None) -> int:
    return 0 if comm is None else comm.Get_rank()


def size_of(comm: MPI.Comm | None) -> int:
    return 1 if comm is None else comm.Get_size()


def idle_barrier(comm: MPI.Comm | None) -> None:
    """A barrier that sleeps while it waits. MPI libraries busy-poll in blocking calls, so a
    rank that is done would spin a core that others could use: its own I/O thread, the
    kernel's write-back, or the ranks still working on an oversubscribed node."""
    if comm is None or comm.Get_size() < 2:
        return
    request = comm.Ibarrier()
    delay = IDLE_POLL_FIRST
    while not request.Test():
        time.sleep(delay)
        delay = min(2 * delay, IDLE_POLL_MAX)


def agree(comm: MPI.Comm | None, error: T | None) -> list[T]:
    """Every rank's error (None where all went well), gathered on every rank: the ranks then
    take the same branch, so none is left waiting in a collective call the others skip."""
    errors = [error] if comm is None else comm.allgather(error)
    return [e for e in errors if e is not None]


def on_rank0(comm: MPI.Comm | None, task: Callable[[], T],
             error_type: Callable[[str], Exception]) -> T | None:
    """Run task on rank 0 only and return its result there (None on the other ranks). If it
    fails, every rank raises error_type with rank 0's message, so none is left waiting."""
    result: T | None = None
    error: str | None = None
    if rank_of(comm) == 0:
        try:
            result = task()
        except Exception as e:
            error = f"rank 0: {e}"
    if comm is not None:
        error = comm.bcast(error, root=0)
    if error:
        raise everywhere(error_type(error))
    return result


def from_rank0(comm: MPI.Comm | None, task: Callable[[], T],
               error_type: Callable[[str], Exception]) -> T:
    """on_rank0, its result broadcast to every rank: what rank 0 alone should find out (a
    file's state, a plan) and every rank then acts on."""
    result = on_rank0(comm, task, error_type)  # None only on the ranks other than 0
    return cast(T, result if comm is None else comm.bcast(result, root=0))


def on_every_rank(comm: MPI.Comm | None, task: Callable[[], T],
                  error_type: Callable[[str], Exception]) -> T:
    """Run task on every rank and return its result there. If it fails on any rank, every
    rank raises error_type naming the ranks that failed, a message shared by several said
    once (the first of them named), so a program reports it once, not once per rank."""
    result: T  # set unless task raised, and then every rank raises below
    error: str | None = None
    try:
        result = task()
    except Exception as e:
        error = str(e)
    errors = agree(comm, None if error is None else (rank_of(comm), error))
    if errors:
        first: dict[str, int] = {}
        for rank, message in errors:
            first.setdefault(message, rank)
        raise everywhere(error_type("; ".join(f"rank {rank}: {message}"
                                              for message, rank in first.items())))
    return result


def route(comm: MPI.Comm | None, rows: npt.NDArray[Row],
          owners: npt.NDArray[np.integer[Any]]) -> npt.NDArray[Row]:
    """Send rows[i] (a numpy structured array) to rank owners[i]; the rows this rank receives,
    in rank order. Counted in rows, not bytes, so 2^31 rows fit in one exchange."""
    if comm is None or comm.Get_size() == 1:
        return rows
    from mpi4py import MPI
    order = np.argsort(owners, kind="stable")
    send_counts = np.bincount(owners, minlength=comm.Get_size()).astype(np.int64)
    receive_counts = np.empty_like(send_counts)
    comm.Alltoall(send_counts, receive_counts)
    received = np.empty(int(receive_counts.sum()), rows.dtype)
    row_type = MPI.BYTE.Create_contiguous(rows.dtype.itemsize).Commit()
    try:
        comm.Alltoallv([rows[order], (send_counts, np.cumsum(send_counts) - send_counts),
                        row_type],
                       [received, (receive_counts, np.cumsum(receive_counts) - receive_counts),
                        row_type])
    finally:
        row_type.Free()
    return received


def any_source() -> int:
    """MPI.ANY_SOURCE (only called once MPI is in use)."""
    from mpi4py import MPI
    return MPI.ANY_SOURCE


def abort(comm: MPI.Comm | None, message: str, code: int = 1) -> NoReturn:
    """End the whole job with a message ("[rank N] message" under MPI); never returns."""
    sys.stderr.write(f"{rank_label(comm, rank_of(comm))}{message}\n")
    sys.stderr.flush()
    if comm is not None and comm.Get_size() > 1:
        time.sleep(ABORT_GRACE)
        quiet_stderr()  # MPI_Abort's own "Abort(1) on node 0 ..." adds nothing to the message
        comm.Abort(code)
    sys.exit(code)


def quiet_stderr() -> None:
    """Send what this process writes to stderr from now on to /dev/null (its last words,
    written and flushed before, have reached the launcher)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def rank_label(comm: MPI.Comm | None, rank: int) -> str:
    """'[rank N] ' in an MPI program, '' in a single-process one."""
    return "" if comm is None else f"[rank {rank}] "


def error_lines(comm: MPI.Comm | None, error: BaseException) -> list[str]:
    """How a program reports an error every rank raised together: one line per rank whose
    error it is ("[rank N] error: ..."; without MPI "error: ..."). Those errors gather the
    ranks' messages as "rank N: ..." joined by "; " (on_rank0, agree)."""
    parts = re.split(r"; (?=rank \d+: )", str(error))
    lines: list[str] = []
    for part in parts:
        match = re.fullmatch(r"rank (\d+): (.*)", part, re.S)
        rank, message = (int(match.group(1)), match.group(2)) if match else (0, part)
        lines.append(f"{rank_label(comm, rank)}error: {message}")
    return lines


def everywhere(error: Shared) -> Shared:
    """Mark an error that every rank raises together, having agreed on it in a collective call:
    program() then ends the job cleanly, rank 0 reporting it once, with no MPI_Abort racing the
    launcher's forwarding of the message."""
    setattr(error, "raised_by_every_rank", True)  # noqa: B010 (no exception type declares it)
    return error


def program(main: Main[R]) -> Main[R]:
    """Decorate a program's main(argv): logging set up, and an error on any rank
    ends the whole job with its message instead of leaving the others waiting
    forever in their next collective call. The message is printed once, by the
    rank that has it, as "[rank N] error: ..." under MPI and "error: ..." without.
    Rank 0 logs INFO; the others only warnings and errors. Log lines name their
    rank under MPI."""
    usage = sys.modules[main.__module__].__doc__ or ""
    resume_hint = ("; rerun the same command with --resume to continue where it stopped"
                   if "--resume" in usage else "")

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> R:
        comm = world()
        rank = rank_of(comm)
        logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                            format=f"%(asctime)s {rank_label(comm, rank)}%(levelname)s "
                                   f"%(message)s")
        try:
            return main(argv)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            abort(comm, "interrupted" + resume_hint, 130)
        except BrokenPipeError:  # `blockfs-info v.blockfs | head -3`: the reader has had enough
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit either
            os.close(devnull)
            sys.exit(1)
        except Exception as e:
            if os.environ.get("BLOCKFS_TRACEBACK"):
                traceback.print_exc()
            if getattr(e, "raised_by_every_rank", False):
                if rank == 0:
                    sys.stderr.write("".join(line + "\n" for line in error_lines(comm, e)))
                sys.exit(1)
            abort(comm, f"error: {e}")
    return run


def fail_together(comm: MPI.Comm | None, error: str | None,
                  error_type: Callable[[str], Exception],
                  cleanup: Callable[[], object] | None = None) -> None:
    """End a collective step: every rank's error (a message naming the rank, or None) is
    gathered on every rank (agree); if any rank has one, every rank runs cleanup, if given,
    and raises error_type of the messages joined by "; ", marked everywhere."""
    errors = agree(comm, error)
    if errors:
        if cleanup is not None:
            cleanup()
        raise everywhere(error_type("; ".join(errors)))
