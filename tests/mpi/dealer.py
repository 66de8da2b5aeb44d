"""The dealer: every number goes to exactly one rank, a slow rank takes fewer, a rank that
stops early does not leave rank 0 waiting for it, and an error on rank 0 does not wait for
the others.

argv: folder (unused). Any number of ranks; the last one is slow (with 1 rank, rank 0).
"""
import time

from blockfs_mpi.dealer import Dealer
from common import comm, say

rank, size = comm.rank, comm.size
slow = size - 1


def deal(n, pause, stop_after=None):
    """The numbers this rank is dealt out of n, sleeping `pause` s after each."""
    got = []
    with Dealer(n, comm) as dealt:
        for number in dealt:
            got.append(number)
            if len(got) == stop_after:
                break
            time.sleep(pause)
    return got


everyone = comm.gather(deal(120, 0.02 if rank == slow else 0.002), root=0)
if rank == 0:
    assert sorted(n for got in everyone for n in got) == list(range(120)), everyone
    if size > 1:
        assert len(everyone[slow]) < min(len(got) for got in everyone[:slow]) / 3, \
            [len(got) for got in everyone]

# Rank 1 stops after two numbers (an error on it): the others get the rest, rank 0 ends.
everyone = comm.gather(deal(50, 0.001, stop_after=2 if rank == 1 else None), root=0)
if rank == 0:
    assert sorted(n for got in everyone for n in got) == list(range(50)), everyone
    if size > 1:
        assert len(everyone[1]) == 2

for n in (0, 1):  # fewer numbers than ranks
    everyone = comm.gather(deal(n, 0), root=0)
    if rank == 0:
        assert sorted(x for got in everyone for x in got) == list(range(n)), everyone

# Rank 0 fails while the others each hold a 2-second piece: its error leaves the dealer at
# once, not after they finish (the job would then end with the error, not wait for them).
if size > 1:
    started = time.monotonic()
    dealer = Dealer(2 * size, comm)
    try:
        with dealer as dealt:
            for _ in dealt:
                if rank == 0:
                    time.sleep(0.3)  # the others have their pieces by now
                    raise RuntimeError("rank 0 failed")
                time.sleep(2)
    except RuntimeError:
        assert rank == 0 and time.monotonic() - started < 1.5, time.monotonic() - started
    dealer.close()  # rank 0's thread has meanwhile told the others that nothing is left
say("ok")
