"""Count the progress reports each rank sends: progress_messages.py <silent: 0|1>.

Each rank counts 2 items of 10 bytes, the second after more than the report interval;
prints "rank r: messages m totals items bytes", m the reports sent after the first item.
"""
import sys
import time

from mpi4py import MPI

from blockfs_mpi.progress import Progress

comm = MPI.COMM_WORLD
progress = Progress(comm, 2 * comm.size, "test", unit="item", disable=sys.argv[1] == "1")
progress.update(1, 10)
# A report is due at the first update only if this rank was held up for the interval since
# Progress() (a loaded machine): the test counts the reports sent after it.
first = progress.messages
assert first == 0 or time.monotonic() - progress.started >= progress.interval, first
time.sleep(progress.interval + 0.1)  # past the interval: a report is due unless silent
progress.update(1, 10)
items, nbytes, _ = progress.close()
sys.stdout.write(f"rank {comm.rank}: messages {progress.messages - first} totals {items} "
                 f"{nbytes}\n")
