"""has_block on 2+ ranks: while writing each rank knows its own blocks; after close() and
Directory.open every rank sees every committed block, and never one left unwritten."""
from blockfs_mpi import Directory
from common import comm, new_volume, say, shared_path, write_blocks

path = shared_path("volume.blockfs")
directory, source = new_volume(path)
origins = list(directory.geometry.block_origins())
writer = {i: i % (comm.size + 1) for i in range(len(origins))}  # rank comm.size: nobody
write_blocks(directory, source, lambda i: writer[i] == comm.rank)
for i, origin in enumerate(origins):
    assert directory.has_block(*origin) == (writer[i] == comm.rank), (comm.rank, i, "writing")
directory.close()
for volume in (directory, Directory.open(path)):
    for i, origin in enumerate(origins):
        assert volume.has_block(*origin) == (writer[i] < comm.size), (comm.rank, i, "committed")
say("ok")
