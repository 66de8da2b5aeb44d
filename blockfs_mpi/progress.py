"""One progress bar for a whole MPI job, drawn by rank 0.

Other ranks send their counts to rank 0 with non-blocking sends, every
report_interval(ranks) seconds: half a second up to 16 ranks, longer in
proportion beyond, so that rank 0 receives about 32 messages a second at
most however large the job. With the bar off (--silent) nothing is sent
until close(), which sums the counts in one reduction. Rank 0 folds in
whatever has arrived whenever it updates. No rank ever waits for another
except once, in close(), and then it sleeps (parallel.idle_barrier) rather
than spinning on a core the others may need.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from tqdm import tqdm

from . import parallel

if TYPE_CHECKING:
    from mpi4py import MPI

REPORT_INTERVAL = 0.5
RANKS_AT_BASE_INTERVAL = 16  # up to this many ranks report every REPORT_INTERVAL
TAG = 7001


def report_interval(ranks: int) -> float:
    """Seconds between a rank's reports to rank 0 in a job of `ranks` ranks."""
    return REPORT_INTERVAL * max(1.0, ranks / RANKS_AT_BASE_INTERVAL)


class Progress:
    """A tqdm bar of `total` items (blocks, planes, chunks) and their bytes, over all ranks.

    Create and close it on every rank (both are collective); call update()
    as work is done. `disable=True` (--silent) draws nothing.
    """

    def __init__(self, comm: MPI.Comm | None, total: int | None, desc: str, unit: str = "block",
                 disable: bool = False) -> None:
        self.comm: MPI.Comm | None = None if comm is None or comm.Get_size() == 1 else comm.Dup()
        self.rank = parallel.rank_of(comm)
        self.silent = disable  # then nothing is sent before close()
        self.interval = report_interval(parallel.size_of(comm))
        self.messages = 0  # reports this rank has sent to rank 0
        self.bytes = 0
        self.items = 0
        self.started = time.monotonic()
        self._unsent = [0, 0]
        self._last_report = self.started
        self._requests: list[MPI.Request] = []
        self._finished = 0  # ranks whose final report rank 0 has received
        self.bar: tqdm | None = None  # tqdm has no type hints: Any to mypy
        if self.rank == 0:
            self.bar = tqdm(total=total, desc=desc, unit=unit, disable=disable, file=sys.stderr,
                            mininterval=REPORT_INTERVAL, dynamic_ncols=True)

    def update(self, items: int = 1, nbytes: int = 0) -> None:
        """Count work done on this rank."""
        if self.rank == 0:
            self._advance(items, nbytes)
            if not self.silent:
                self._receive()
            return
        self._unsent[0] += items
        self._unsent[1] += nbytes
        if self.silent:
            return
        now = time.monotonic()
        if now - self._last_report >= self.interval:
            self._send(done=False)
            self._last_report = now

    def _advance(self, items: int, nbytes: int) -> None:
        self.items += items
        self.bytes += nbytes
        if self.bar is not None:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            self.bar.set_postfix_str(f"{self.bytes / elapsed / 1e6:.1f} MB/s", refresh=False)
            self.bar.update(items)

    def _send(self, done: bool) -> None:
        assert self.comm is not None  # only ranks other than 0 send, and then there is one
        self._requests = [r for r in self._requests if not r.Test()]
        self._requests.append(self.comm.isend((*self._unsent, done), dest=0, tag=TAG))
        self._unsent = [0, 0]
        self.messages += 1

    def _receive(self, until_all_done: bool = False) -> None:
        if self.comm is None:
            return
        others = self.comm.Get_size() - 1
        while ((until_all_done and self._finished < others)
               or self.comm.Iprobe(source=parallel.any_source(), tag=TAG)):
            items, nbytes, done = self.comm.recv(source=parallel.any_source(), tag=TAG)
            self._advance(items, nbytes)
            self._finished += bool(done)  # a rank's last report may arrive before close()

    def close(self) -> tuple[int, int, float]:
        """Collective: gather the last counts, close the bar; (items, bytes, seconds) of the job."""
        if self.comm is not None and self.silent:
            parallel.idle_barrier(self.comm)
            mine = (self.items + self._unsent[0], self.bytes + self._unsent[1])
            totals = tuple(self.comm.allreduce(n) for n in mine)
            self.comm.Free()
            self.comm = None
        elif self.comm is not None:
            parallel.idle_barrier(self.comm)
            if self.rank == 0:
                self._receive(until_all_done=True)
            else:
                self._send(done=True)
                for request in self._requests:
                    request.wait()
            totals = self.comm.bcast((self.items, self.bytes), root=0)
            self.comm.Free()
            self.comm = None
        else:
            totals = (self.items, self.bytes)
        if self.bar is not None:
            self.bar.close()
        return (*totals, time.monotonic() - self.started)
