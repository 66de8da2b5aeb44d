"""Work handed out on demand: a rank that runs faster takes more.

Rank 0 keeps the count of pieces of work given out and answers the other
ranks' requests from a thread, while its main thread works like every other
rank. The thread polls for requests with short sleeps rather than blocking
in MPI (MPICH busy-polls inside blocking calls, which would take a core
from the compression); an answer waits at most a poll interval plus the
time to get the interpreter lock. No one-sided MPI: passive-target RMA here
only progresses when the target rank enters MPI, which rank 0, compressing,
does not.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpi4py import MPI

ASK, GIVE = 7101, 7102
POLL = 1e-3  # seconds between rank 0's looks for requests


def threads_allowed() -> bool:
    """True if MPI lets several threads of a process call it at once."""
    from mpi4py import MPI
    return MPI.Query_thread() == MPI.THREAD_MULTIPLE


class Dealer:
    """Deal the numbers 0..n-1 over comm, each to exactly one rank, as ranks ask for them.

    Collective: every rank creates it, iterates over it and closes it. Without MPI
    every number goes to this process; if MPI runs without full thread support
    (MPI_THREAD_MULTIPLE, mpi4py's default), rank r takes r, r + size, ... instead.
    """

    def __init__(self, n: int, comm: MPI.Comm | None) -> None:
        self.n = n
        self._next = 0
        self._step = 1  # numbers this rank takes without asking: every one, or every size-th
        self._done = False  # this rank has been told that nothing is left
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.comm: MPI.Comm | None = None
        if comm is not None and comm.Get_size() > 1 and not threads_allowed():
            self._next, self._step = comm.Get_rank(), comm.Get_size()
        elif comm is not None and comm.Get_size() > 1:
            self.comm = comm.Dup()
        if self.comm is not None and self.comm.Get_rank() == 0:
            self._thread = threading.Thread(target=self._serve, name="blockfs-dealer",
                                            daemon=True)
            self._thread.start()

    def _take(self) -> int | None:
        """The next number not yet dealt, or None."""
        with self._lock:
            if self._stop.is_set() or self._next >= self.n:
                return None
            self._next += self._step
            return self._next - self._step

    def _serve(self) -> None:
        """Rank 0's thread: answer every request until each other rank has been told that
        nothing is left."""
        from mpi4py import MPI
        comm = self.comm
        assert comm is not None  # the thread runs on rank 0 of a communicator
        waiting = comm.Get_size() - 1
        status = MPI.Status()
        while waiting:
            if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=ASK, status=status):
                time.sleep(POLL)
                continue
            rank = status.Get_source()
            if not comm.recv(source=rank, tag=ASK):  # that rank stopped early
                waiting -= 1
                continue
            number = self._take()
            comm.send(number, dest=rank, tag=GIVE)
            waiting -= number is None

    def __iter__(self) -> Iterator[int]:
        """The numbers dealt to this rank, in the order it receives them."""
        while True:
            if self.comm is None or self.comm.Get_rank() == 0:
                number = self._take()
            else:
                self.comm.send(True, dest=0, tag=ASK)
                number = self.comm.recv(source=0, tag=GIVE)
            if number is None:
                self._done = True
                return
            yield number

    def close(self, wait: bool = True) -> None:
        """Stop dealing: rank 0 tells every rank that asks that nothing is left and waits
        until each has been told so or has said it stopped; a rank that stops before it was
        told (an error) says so, and rank 0 is not left waiting for it. wait=False (an error
        on rank 0): rank 0's thread goes on telling the others, without rank 0 waiting for
        them to finish what they hold, so that its error ends the job at once."""
        self._stop.set()
        if self.comm is not None and self.comm.Get_rank() != 0 and not self._done:
            self.comm.send(False, dest=0, tag=ASK)
        if self._thread is not None:
            if not wait:
                return  # the thread still uses the communicator; it ends on its own
            self._thread.join()
        if self.comm is not None:
            self.comm.Free()
            self.comm = None

    def __enter__(self) -> Dealer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close(wait=error is None)
