"""The directory file under MPI: made by every rank with MPI-IO and the volume's striping
hints, written collectively, a slice per rank, at create() and at close().

argv: folder, scenario. MPI.File is replaced by a subclass that records, per rank, every
Open (name, mode, hints) and every write (name, kind, bytes). Scenarios:
  counts  a volume made with striping hints: at create() and at close() every rank writes
          its slice of the directory file (rank 0 also the head), collectively, no more;
          the file is opened by every rank with MODE_EXCL and the hints; both directory
          directory file create() commits is byte for byte the single-process writer's;
  rows    collective_commit of the same rows on any number of ranks writes the directory
          file the single-process commit() writes (the test compares 1 and 3 ranks too);
  open-fails  the first name rank 0 picks exists: another is tried by every rank, the
          commit succeeds and the other file is untouched; when every name is taken, every
          rank raises naming it; a commit whose folder is a file raises on every rank naming
          rank 0 and the file; nothing is left behind;
  write-fails rank 1's collective write fails: every rank raises naming rank 1 and the
          file, the committed volume stands and no temporary file is left.
"""
import os
import sys

import numpy as np
from mpi4py import MPI

from blockfs_mpi import Directory, WriterError
from blockfs_mpi import commit as commit_module
from blockfs_mpi import format as fmt
from blockfs_mpi.atomic import write_atomically
from blockfs_mpi.commit import collective_commit, commit
from blockfs_mpi.format import WRITTEN
from blockfs_mpi.geometry import Geometry
from blockfs_mpi.index_build import index_spans
from blockfs_mpi.reader import read_header
from common import comm, say, shared_path

rank, size = comm.rank, comm.size
opened = []  # (name, mode, hints) of every MPI.File.Open on this rank
written = []  # (name, "Write_at" or "Write_at_all", bytes) of every write on this rank
FAIL_WRITE_ON = None  # a rank whose collective writes raise (after writing), as on a bad disk


class RecordingFile(MPI.File):
    """MPI.File that records what is opened and written through it."""

    @classmethod
    def Open(cls, comm, filename, amode=MPI.MODE_RDONLY, info=MPI.INFO_NULL):
        hints = dict(info.items()) if info != MPI.INFO_NULL else {}
        opened.append((os.fspath(filename), amode, hints))
        handle = super().Open(comm, filename, amode, info)
        handle.name = os.fspath(filename)
        return handle

    def Write_at(self, offset, buf):
        written.append((self.name, "Write_at", _length(buf)))
        return super().Write_at(offset, buf)

    def Write_at_all(self, offset, buf):
        written.append((self.name, "Write_at_all", _length(buf)))
        result = super().Write_at_all(offset, buf)
        if rank == FAIL_WRITE_ON:
            raise MPI.Exception(MPI.ERR_IO)
        return result


def _length(buf):
    return memoryview(buf[0] if isinstance(buf, list) else buf).nbytes


MPI.File = RecordingFile


def commit_writes(start=0):
    """{kind: bytes} written since written[start] to temporary directory files (.commit)."""
    totals = {}
    for name, kind, length in written[start:]:
        if name.endswith(".commit"):
            totals[kind] = totals.get(kind, 0) + length
    return totals


def commit_opens(start=0):
    return [(mode, hints) for name, mode, hints in opened[start:] if name.endswith(".commit")]


def single_process_file(path, parts):
    """The bytes of the directory file the single-process writer makes of parts (rank 0)."""
    write_atomically(path, *parts)
    with open(path, "rb") as f:
        return f.read()


def slice_bytes(n_blocks, head):
    """Bytes this rank may write to a directory file: its slice, and rank 0 the head."""
    spans = index_spans(n_blocks, size)
    return int(spans[rank + 1] - spans[rank]) * fmt.ENTRY.itemsize + (len(head) if rank == 0 else 0)


def counts():
    path = shared_path("counts.blockfs")
    hints = {"striping_factor": 4, "striping_unit": 1 << 20}
    directory = Directory(16 * 1000, 16, 16, np.uint16, path, comm=comm, x_block_size=16,
                          y_block_size=16, z_block_size=16, hints=hints)
    n_blocks = directory.geometry.n_blocks
    directory.create()
    created = commit_writes()
    with open(path, "rb") as f:
        empty = f.read()
    comm.Barrier()
    if rank == 0:
        expected = single_process_file(os.path.join(sys.argv[1], "counts-one.blockfs"),
                                       fmt.empty_directory2_parts(directory.header))
        assert empty == expected, "create() under MPI wrote another directory file"
    head = fmt.encode_head2(directory.header, n_blocks, read_header(path).index_crc32c)
    mine = slice_bytes(n_blocks, head)
    assert created == {"Write_at_all": mine}, f"rank {rank} at create(): {created}, slice {mine}"
    before_writes, before_opens = len(written), len(opened)
    for block in range(7 * rank, n_blocks, 7 * size):
        directory.write_block(np.full((16, 16, 16), block, np.uint16), 16 * block, 0, 0)
    directory.close()
    closed = commit_writes(before_writes)
    assert closed == {"Write_at_all": mine}, f"rank {rank} at close(): {closed}, slice {mine}"
    for mode, given in commit_opens() + commit_opens(before_opens):
        assert mode & MPI.MODE_EXCL and mode & MPI.MODE_CREATE, f"rank {rank}: mode {mode}"
        assert given.get("striping_factor") == "4" and given.get("striping_unit") == str(1 << 20) \
            and given.get("romio_ds_write") == "disable", f"rank {rank}: hints {given}"
    assert len(commit_opens()) == 2, f"rank {rank}: {commit_opens()}"
    say(f"bytes to the directory file: create {created}, close {closed}, slice {mine}")
    comm.Barrier()
    if rank == 0:
        committed = Directory.open(path)
        assert all(int(committed[0, 0, 16 * b]) == b for b in range(0, n_blocks, 7))


def same_rows():
    """Rows for blocks all over the volume, dealt over the ranks (file = block % 3)."""
    n_blocks = 5000
    header = fmt.Header(Geometry(n_blocks * 16, 16, 16, 16, 16, 16), np.dtype(np.uint16),
                        [f"rows.blockfs.{r}" for r in range(3)])
    blocks = np.arange(0, n_blocks, 3, dtype=np.uint64)
    rows = np.zeros(len(blocks), WRITTEN)
    rows["block"], rows["file"], rows["size"] = blocks, blocks % 3, 100
    rows["offset"] = blocks * 128 + fmt.FRAME_SIZE
    rows["sequence"] = blocks + 1
    return header, rows


def rows():
    header, every_row = same_rows()
    path = os.path.join(sys.argv[1], f"rows-{size}.blockfs")
    collective_commit(comm, path, header, every_row[rank::size])
    comm.Barrier()
    if rank == 0:
        one = os.path.join(sys.argv[1], "rows-single.blockfs")
        commit(one, header, every_row)
        with open(path, "rb") as f, open(one, "rb") as g:
            assert f.read() == g.read(), "the MPI commit differs from the single-process one"


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".commit"))


def taken():
    folder = sys.argv[1]
    header, every_row = same_rows()
    path = shared_path("taken.blockfs")
    other = os.path.join(folder, ".taken.blockfs.other.commit")
    if rank == 0:
        with open(other, "wb") as f:
            f.write(b"another commit's")
    real = commit_module.temporary_name
    names = iter([other])
    commit_module.temporary_name = lambda p: next(names, None) or real(p)
    start = len(opened)
    collective_commit(comm, path, header, every_row[rank::size])
    tried = [name for name, _, _ in opened[start:]]
    assert tried[0] == other and len(tried) == 2 and tried[1] != other, f"rank {rank}: {tried}"
    commit_module.temporary_name = lambda p: other  # every name is taken
    try:
        collective_commit(comm, path, header, every_row[rank::size])
        raised = None
    except WriterError as e:
        raised = str(e)
    finally:
        commit_module.temporary_name = real
    assert raised is not None and "rank 0" in raised and other in raised, f"rank {rank}: {raised}"
    comm.Barrier()
    with open(other, "rb") as f:
        assert f.read() == b"another commit's", "a file the commit did not make was changed"
    assert leftovers(folder) == [os.path.basename(other)], leftovers(folder)
    assert Directory.open(path).reader is not None


def unwritable():
    folder = sys.argv[1]
    header, every_row = same_rows()
    plain = shared_path("plain")
    before = leftovers(folder)
    if rank == 0:
        open(plain, "wb").close()
    comm.Barrier()
    path = os.path.join(plain, "v.blockfs")  # its folder is a file: nothing can be made there
    try:
        collective_commit(comm, path, header, every_row[rank::size])
        raised = None
    except WriterError as e:
        raised = str(e)
    assert raised is not None and f"{path} not committed" in raised and "rank 0: cannot create" \
        in raised and f".{os.path.basename(path)}." in raised, f"rank {rank}: {raised}"
    comm.Barrier()
    assert leftovers(folder) == before, leftovers(folder)


def write_fails():
    global FAIL_WRITE_ON
    folder = sys.argv[1]
    header, every_row = same_rows()
    path = shared_path("fails.blockfs")
    collective_commit(comm, path, header, every_row[rank::size])
    with open(path, "rb") as f:
        before = f.read()
    comm.Barrier()
    FAIL_WRITE_ON = 1
    try:
        collective_commit(comm, path, header, every_row[::-1][rank::size])
        raised = None
    except WriterError as e:
        raised = str(e)
    finally:
        FAIL_WRITE_ON = None
    assert raised is not None and "rank 1: cannot write " in raised \
        and f".{os.path.basename(path)}." in raised and ".commit" in raised, \
        f"rank {rank}: {raised}"
    comm.Barrier()
    with open(path, "rb") as f:
        assert f.read() == before, "the committed volume changed"
    assert leftovers(folder) == [], leftovers(folder)


def open_fails():
    taken()
    unwritable()


{"counts": counts, "rows": rows, "open-fails": open_fails, "write-fails": write_fails}[
    sys.argv[2]]()
say("ok")
