"""Resuming with another number of ranks than the job that wrote the frames.

argv: folder, step. Steps, each its own mpiexec job:
  commit  (4 ranks) writes and commits blocks 0, 3, 6, ...;
  crash   (4 ranks) resumes, writes blocks 1, 4, 7, ..., waits until its frames are on disk
          and ends without close(): nothing of it is committed, as if it had been killed;
  finish  (any ranks) resumes: the blocks of both earlier jobs are present, also in data
          files no rank of this job appends to; it writes the rest and commits;
  again   (any ranks) resumes a complete volume, writes nothing, commits.
After finish and again every block reads back.
"""
import sys

from blockfs_mpi import Directory
from blockfs_mpi.synthetic import SyntheticVolume
from common import comm, commit_every, say, shared_path, write_blocks

step = sys.argv[2]
path = shared_path("volume.blockfs")
if step == "commit":
    commit_every(path, 3)
    say("ok")
    sys.exit()

if step == "finish":  # the crashed job's blocks are on disk but not committed
    committed = Directory.open(path)
    x, y, z = list(committed.geometry.block_origins())[1]
    assert not committed.read_block(x, y, z).any(), "the crashed job committed"
directory = Directory.resume(path)
source = SyntheticVolume(directory.shape)
origins = list(directory.geometry.block_origins())
mine = lambda i: i % comm.size == comm.rank  # noqa: E731
if step == "crash":
    write_blocks(directory, source, lambda i: i % 3 == 1 and mine(i))
    directory._backend.writer.flush()
    directory._backend.writer._wait()  # the frames are in the data file: end as if killed, no close()
    say("ok")
    sys.exit()
present = [directory.has_block(*origin) for origin in origins]
expected = [i % 3 != 2 if step == "finish" else True for i in range(len(origins))]
assert present == expected, f"rank {comm.rank}: present blocks differ"
write_blocks(directory, source, lambda i: not present[i] and mine(i))
directory.close()
volume = Directory.open(path)
for x, y, z in origins[comm.rank::comm.size]:
    zs, ys, xs = volume.get_block_size(x, y, z)
    assert (volume.read_block(x, y, z) == source[z:z + zs, y:y + ys, x:x + xs]).all(), (x, y, z)
say("ok")
