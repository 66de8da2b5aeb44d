"""Ranks that reach close() early wait for rank 0 without burning their core."""
import time

from common import comm, new_volume, say, shared_path, write_blocks

LATE = 2.0  # seconds rank 0 keeps the others waiting

path = shared_path("volume.blockfs")
directory, source = new_volume(path)
if comm.rank == 0:
    time.sleep(LATE)
write_blocks(directory, source, lambda i: i % comm.size == comm.rank)
wall, cpu = time.monotonic(), time.process_time()
directory.close()
wall, cpu = time.monotonic() - wall, time.process_time() - cpu
if comm.rank != 0:
    assert wall > LATE / 2, f"close() took {wall:.2f} s: rank 0 was not late after all"
    assert cpu < wall / 4, f"waiting {wall:.2f} s in close() cost {cpu:.2f} s of CPU"
say(f"ok (waited {wall:.2f} s for {cpu:.3f} s of CPU)")
