"""The dealer, one scenario per job: dealer.py <folder (unused)> <scenario>.

  slow          a rank that is held up takes fewer: the last rank holds its first number until
                every other rank has been told that nothing is left, so it gets that one only
                (numbers dealt in advance would give it its share); each other rank holds its
                first number until the last rank has one;
  early-stop    rank 1 stops after two numbers (an error on it): the others get the rest and
                rank 0 is not left waiting for it;
  few           fewer numbers than ranks (0 and 1): each number once, nobody waits;
  rank0-fails   rank 0 fails while every other rank holds a piece: its error leaves the
                dealer at once, not after they finish (the job then ends with the error).

Each rank waits for the others with messages on COMM_WORLD (the dealer has its own
communicator), never with sleeps, so what each rank gets does not depend on timing. Every
message sent is received, also by a rank that started so late that it got no number (an
unreceived message fails MPI_Finalize, and the launcher then kills the job). A wait that
outlasts WAIT fails the job with what was waited for. Any number of ranks.
"""
import sys
import time

from blockfs_mpi.dealer import Dealer
from common import comm, say

rank, size = comm.rank, comm.size
WAIT = 30  # seconds: a message that has not come by then never will (the test allows 60)
SIGNAL = 99  # the tag of the scenarios' own messages


def wait_for(sources, what):
    """Receive one SIGNAL message from each rank in sources, sleeping while none is there
    (MPICH busy-polls in a blocking receive, which would take a core from the dealing)."""
    pending = [comm.irecv(source=source, tag=SIGNAL) for source in sources]
    deadline = time.monotonic() + WAIT
    while pending:
        assert time.monotonic() < deadline, f"rank {rank}: no word in {WAIT} s that {what}"
        time.sleep(0.001)
        pending = [request for request in pending if not request.test()[0]]


def signal(targets):
    """Send one SIGNAL message to each rank in targets."""
    for request in [comm.isend(True, dest=target, tag=SIGNAL) for target in targets]:
        request.wait()


def check_all_dealt(got, n):
    """Every number out of n went to exactly one rank; what each rank got, on rank 0."""
    everyone = comm.gather(got, root=0)
    if rank == 0:
        assert sorted(x for numbers in everyone for x in numbers) == list(range(n)), everyone
    return everyone


def slow():
    held, others = size - 1, range(size - 1)
    got = []
    with Dealer(120, comm) as dealt:
        for number in dealt:
            got.append(number)
            if rank == held and len(got) == 1:
                signal(others)  # it holds a number (the others would otherwise take them all)
                wait_for(others, "the other ranks were told that nothing is left")
            elif len(got) == 1:
                wait_for([held], f"rank {held} holds a number")
        if rank != held:
            if not got:  # a rank that started late may find every number taken: it still
                wait_for([held], f"rank {held} holds a number")  # takes the word it was sent
            signal([held])  # this loop ended: nothing was left for this rank
    everyone = check_all_dealt(got, 120)
    if rank == 0 and size > 1:
        assert len(everyone[held]) == 1, [len(numbers) for numbers in everyone]


def early_stop():
    others = [r for r in range(size) if r != 1]
    got = []
    with Dealer(50, comm) as dealt:
        for number in dealt:
            got.append(number)
            if rank == 1 and len(got) == 2:
                break
            if rank != 1 and size > 1 and len(got) == 1:
                wait_for([1], "rank 1 stopped")  # until then rank 1 is dealt what it asks for
    if rank == 1:
        signal(others)  # the dealer is closed: rank 0 was told that rank 1 stopped
    elif size > 1 and not got:  # a rank that started late may find every number taken:
        wait_for([1], "rank 1 stopped")  # it still takes the word rank 1 sent it
    everyone = check_all_dealt(got, 50)
    if rank == 0 and size > 1:
        assert len(everyone[1]) == 2, everyone


def few():
    for n in (0, 1):
        got = []
        with Dealer(n, comm) as dealt:
            got.extend(dealt)
        check_all_dealt(got, n)


def rank0_fails():
    if size == 1:
        return
    dealer = Dealer(2 * size, comm)
    try:
        with dealer as dealt:
            for _ in dealt:
                if rank == 0:
                    wait_for(range(1, size), "every other rank holds a piece")
                    raise RuntimeError("rank 0 failed")
                signal([0])  # this rank holds a piece ...
                wait_for([0], "rank 0 left the dealer")  # ... until rank 0 has left it
    except RuntimeError:
        assert rank == 0
        signal(range(1, size))  # rank 0 left the dealer while every other rank held a piece
    dealer.close()  # rank 0's thread has meanwhile told the others that nothing is left


{"slow": slow, "early-stop": early_stop, "few": few, "rank0-fails": rank0_fails}[sys.argv[2]]()
say("ok")
