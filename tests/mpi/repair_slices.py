"""blockfs-fsck --repair under MPI rebuilds the index in slices, like a writers' commit.

argv: folder holding volume.blockfs, left by resume_resized.py's commit step (4 ranks) and
its crash step run on 5 ranks: frames of blocks 1, 4, 7, ... in the data files, not
committed, some of them in data file 4, which the directory file does not name. Block 3's
committed frame is damaged here first: with no intact frame, it keeps its entry.
Rank 0 repairs one copy alone (comm=None); all ranks repair another copy together. The
two directory files must be the same bytes, and the repaired volume must read back.
"""
import os
import shutil
import sys

from blockfs_mpi.directory import Directory
from blockfs_mpi.errors import CorruptBlockError
from blockfs_mpi.fsck import fsck
from blockfs_mpi.index import read_index
from blockfs_mpi.reader import read_header
from blockfs_mpi.synthetic import SyntheticVolume
from common import comm, say, shared_path

DAMAGED = 3
source_folder = sys.argv[1]
alone, together = shared_path("alone"), shared_path("together")
if comm.rank == 0:
    source_path = os.path.join(source_folder, "volume.blockfs")
    header = read_header(source_path)
    entry = read_index(source_path, header)[DAMAGED]
    with open(f"{source_path}.{entry['file']}", "r+b") as f:  # one payload byte flipped
        f.seek(int(entry["offset"] + entry["size"] // 2))
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    for folder in (alone, together):
        os.mkdir(folder)
        for name in os.listdir(source_folder):
            if name.startswith("volume.blockfs"):
                shutil.copy(os.path.join(source_folder, name), folder)
comm.Barrier()
alone_path, together_path = (os.path.join(f, "volume.blockfs") for f in (alone, together))

lines = []
status = fsck(together_path, comm, fix=True, silent=True, out=lines.append)
if comm.rank == 0:
    assert status == 1, "\n".join(lines)  # block 3 stays damaged
    after = lines[lines.index("after repair:"):]
    assert any("uncommitted: block 1 " in line for line in lines), lines
    assert any("volume.blockfs.4: data file not named" in line for line in lines), lines
    assert [line.split(":")[0] for line in after[1:-1]] == ["damaged"], after
    assert f"damaged: block {DAMAGED} " in after[1], after
    alone_lines = []
    assert fsck(alone_path, None, fix=True, silent=True, out=alone_lines.append) == 1
    changed = [line for line in lines if "index entries changed" in line]
    assert changed == [line.replace(alone, together) for line in alone_lines
                       if "index entries changed" in line], (changed, alone_lines)
    with open(alone_path, "rb") as a, open(together_path, "rb") as b:
        assert a.read() == b.read(), "the distributed repair differs from the serial one"
comm.Barrier()

assert read_header(together_path).data_files[-1] == "volume.blockfs.4"  # named now
volume = Directory.open(together_path)
source = SyntheticVolume(volume.shape)
origins = list(volume.geometry.block_origins())
for i in range(comm.rank, len(origins), comm.size):
    x, y, z = origins[i]
    zs, ys, xs = volume.get_block_size(x, y, z)
    if i == DAMAGED:
        try:
            volume.read_block(x, y, z)
        except CorruptBlockError:
            continue
        raise AssertionError("the damaged block read without an error")
    expected = source[z:z + zs, y:y + ys, x:x + xs] if i % 3 != 2 else 0
    assert (volume.read_block(x, y, z) == expected).all(), f"block {i} at {(x, y, z)}"
say("ok")
