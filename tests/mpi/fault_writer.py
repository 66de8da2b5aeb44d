"""A writer job for fault injection: `first` commits the even blocks; `second` resumes and
adds the odd ones, pausing (marker file, then sleep) where the test kills it.

argv: folder, first|second, pause point (none, before-write, mid-write, commit), pausing rank
or "all". Every rank writes pid.<rank> at start and paused.<rank> (blocks written) when paused.
"""
import os
import sys
import time

from blockfs_mpi import Directory
from blockfs_mpi import commit as commit_module
from blockfs_mpi.synthetic import SyntheticVolume
from common import comm, new_volume, say, shared_path, write_blocks

folder, step, point, pausing = sys.argv[1:5]
path = shared_path("volume.blockfs")
directory_shape = (90, 100, 150)  # new_volume's default (z, y, x)
with open(os.path.join(folder, f"pid.{comm.rank}"), "w") as f:
    f.write(str(os.getpid()))


def pause(here, written=0):
    """Tell the test we are at `here`, then wait to be killed."""
    if here == point and pausing in ("all", str(comm.rank)):
        with open(os.path.join(folder, f"paused.{comm.rank}"), "w") as f:
            f.write(str(written))
        time.sleep(120)


def torn_commit(target, *parts):
    """write_atomically with a pause halfway through writing the temporary file."""
    data = b"".join(parts)
    with commit_module.atomic_file(target) as fd:
        os.write(fd, data[:len(data) // 2])
        pause("commit")
        os.write(fd, data[len(data) // 2:])


if step == "first":
    directory, source = new_volume(path)
    write_blocks(directory, source, lambda i: i % 2 == 0 and (i // 2) % comm.size == comm.rank)
    directory.close()
    say("ok")
    sys.exit()

directory, source = Directory.resume(path), SyntheticVolume(directory_shape)
directory._writer.buffer_size = 1  # every frame goes to the I/O thread at once: many kill points
commit_module.write_atomically = torn_commit
pause("before-write")
mine = [i for i, _ in enumerate(directory.geometry.block_origins())
        if i % 2 == 1 and (i // 2) % comm.size == comm.rank]
write_blocks(directory, source, lambda i: i in mine[:len(mine) // 2])
pause("mid-write", len(mine) // 2)
write_blocks(directory, source, lambda i: i in mine[len(mine) // 2:])
directory.close()
say("ok")
