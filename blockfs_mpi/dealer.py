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
import threading
import time

from . import parallel

ASK, GIVE = 7101, 7102
POLL = 1e-3  # seconds between rank 0's looks for requests


def threads_allowed():
    """True if MPI lets several threads of a process call it at once."""
    from mpi4py import MPI
    return MPI.Query_thread() == MPI.THREAD_MULTIPLE


class Dealer:
    """Deal the numbers 0..n-1 over comm, each to exactly one rank, as ranks ask for them.

    Collective: every rank creates it, iterates over it and closes it. Without MPI
    every number goes to this process; if MPI runs without full thread support
    (MPI_THREAD_MULTIPLE, mpi4py's default), rank r takes r, r + size, ... instead.
    """

    def __init__(self, n, comm):
        self.n = n
        self._next = 0
        self._step = 1  # numbers this rank takes without asking: every one, or every size-th
        self._done = False  # this rank has been told that nothing is left
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.comm = None
        if parallel.size_of(comm) > 1 and not threads_allowed():
            self._next, self._step = comm.Get_rank(), comm.Get_size()
        elif parallel.size_of(comm) > 1:
            self.comm = comm.Dup()
        if self.comm is not None and self.comm.Get_rank() == 0:
            self._thread = threading.Thread(target=self._serve, name="blockfs-dealer",
                                            daemon=True)
            self._thread.start()

    def _take(self):
        """The next number not yet dealt, or None."""
        with self._lock:
            if self._stop.is_set() or self._next >= self.n:
                return None
            self._next += self._step
            return self._next - self._step

    def _serve(self):
        """Rank 0's thread: answer every request until each other rank has been told that
        nothing is left."""
        from mpi4py import MPI
        waiting = self.comm.Get_size() - 1
        status = MPI.Status()
        while waiting:
            if not self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=ASK, status=status):
                time.sleep(POLL)
                continue
            rank = status.Get_source()
            if not self.comm.recv(source=rank, tag=ASK):  # that rank stopped early
                waiting -= 1
                continue
            number = self._take()
            self.comm.send(number, dest=rank, tag=GIVE)
            waiting -= number is None

    def __iter__(self):
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

    def close(self, wait=True):
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

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close(wait=error is None)
