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
from common import comm, commit_every, say, shared_path, write_blocks

folder, step, point, pausing = sys.argv[1:5]
path = shared_path("volume.blockfs")
directory_shape = (90, 100, 150)  # common.new_volume's default (z, y, x)


def publish(name, text):
    """Write folder/name whole, by renaming a finished file: the test reads it as soon as it
    sees it, and may kill this rank right then."""
    target = os.path.join(folder, name)
    with open(f"{target}.partial", "w") as f:
        f.write(text)
    os.replace(f"{target}.partial", target)


def pause(here, written=0):
    """Tell the test we are at `here`, then wait to be killed."""
    if here == point and pausing in ("all", str(comm.rank)):
        publish(f"paused.{comm.rank}", str(written))
        time.sleep(120)


publish(f"pid.{comm.rank}", str(os.getpid()))


def paused_commit(comm, temporary, path):
    """The commit's last step after a pause: the new directory file is written and fsynced
    under its temporary name by every rank, not yet renamed over the committed one."""
    pause("commit")
    put_in_place(comm, temporary, path)


put_in_place = commit_module._put_in_place


if step == "first":
    commit_every(path, 2)
    say("ok")
    sys.exit()

directory, source = Directory.resume(path), SyntheticVolume(directory_shape)
directory._backend.writer.buffer_size = 1  # every frame goes to the I/O thread at once: many kill points
commit_module._put_in_place = paused_commit
pause("before-write")
mine = [i for i, _ in enumerate(directory.geometry.block_origins())
        if i % 2 == 1 and (i // 2) % comm.size == comm.rank]
write_blocks(directory, source, lambda i: i in mine[:len(mine) // 2])
pause("mid-write", len(mine) // 2)
write_blocks(directory, source, lambda i: i in mine[len(mine) // 2:])
directory.close()
say("ok")
