"""Ranks that reach close() early wait for rank 0 without burning their core."""
import time

from common import comm, new_volume, say, shared_path, write_blocks

LATE = 2.0  # seconds rank 0 keeps the others waiting once they are all at close()

path = shared_path("volume.blockfs")
directory, source = new_volume(path)
write_blocks(directory, source, lambda i: i % comm.size == comm.rank)
if comm.rank == 0:
    # Rank 0 is late from the moment the last other rank has reached close(): each waits there
    # for at least LATE, however long its own writes took on a loaded machine.
    for rank in range(1, comm.size):
        comm.recv(source=rank, tag=1)
    time.sleep(LATE)
else:
    comm.send("at close", dest=0, tag=1)  # a small message: sent without waiting for rank 0
wall, cpu = time.monotonic(), time.process_time()
directory.close()
wall, cpu = time.monotonic() - wall, time.process_time() - cpu
if comm.rank != 0:
    assert wall > LATE / 2, f"close() took {wall:.2f} s: rank 0 was not late after all"
    # A rank spinning in MPI would spend about its share of a core (under a busy machine or
    # oversubscription still well above a quarter); one that sleeps spends next to nothing.
    assert cpu < wall / 4, f"waiting {wall:.2f} s in close() cost {cpu:.2f} s of CPU"
say(f"ok (waited {wall:.2f} s for {cpu:.3f} s of CPU)")
