"""The directory file under MPI (issue 21, item 7): created by every rank with MPI-IO and the
volume's striping hints, written collectively a slice per rank at create() and close(), the
same bytes as the single-process writer's, failures said on every rank with nothing left."""
import pytest

from conftest import run_mpi

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [1, 3])
def test_every_rank_writes_its_slice_collectively_with_the_hints(tmp_path, n):
    """At create() and at close() each rank writes exactly its slice of the directory file
    (rank 0 also the head) with Write_at_all, into a file every rank opened with MODE_EXCL and
    the volume's striping hints; create() commits what the single-process writer does."""
    result = run_mpi(n, "commit_collective.py", tmp_path, "counts")
    assert result.stdout.count(": ok") == n, result.stdout


def test_same_directory_file_on_any_number_of_ranks(tmp_path):
    """The same rows committed on 1 and on 3 ranks: byte for byte the single-process
    commit()'s directory file, so also each other's."""
    for n in (1, 3):
        result = run_mpi(n, "commit_collective.py", tmp_path, "rows")
        assert result.stdout.count(": ok") == n, result.stdout
    assert (tmp_path / "rows-1.blockfs").read_bytes() == (tmp_path / "rows-3.blockfs").read_bytes()


@pytest.mark.parametrize("scenario", ["open-fails", "write-fails"])
def test_failures_are_said_on_every_rank_and_leave_nothing(tmp_path, scenario):
    """A taken name is replaced by another (and when all are taken every rank says so); a
    commit whose folder cannot hold it, or whose write fails on rank 1, raises on every rank
    naming the rank and the file, and no temporary file is left."""
    result = run_mpi(3, "commit_collective.py", tmp_path, scenario)
    assert result.stdout.count(": ok") == 3, result.stdout
