"""Real mpiexec jobs on 1, 2 and 4 ranks: per-rank data files, collective commit, failures."""
import pytest

from conftest import run_mpi

pytestmark = pytest.mark.mpi
RANKS = [1, 2, 4]


@pytest.mark.parametrize("n", RANKS)
@pytest.mark.parametrize("pattern", ["round-robin", "rank0-only", "uneven", "reversed"])
def test_write_then_read_every_voxel(tmp_path, n, pattern):
    result = run_mpi(n, "write_read.py", tmp_path, pattern)
    assert result.stdout.count(": ok") == n


@pytest.mark.parametrize("n", RANKS)
def test_block_written_by_two_ranks(tmp_path, n):
    result = run_mpi(n, "duplicates.py", tmp_path)
    assert result.stdout.count(": ok") == n


@pytest.mark.parametrize("scenario, n", [("tiny", 4), ("rows", 1), ("rows", 3),
                                         ("duplicates", 3), ("duplicates", 4)])
def test_commit_in_slices(tmp_path, scenario, n):
    """Each rank builds and writes its slice of the index: fewer blocks than ranks (tiny),
    rows for every slice from every rank and memory per rank (rows), duplicates found in
    several slices (duplicates). One scenario per job: a failure hides no other."""
    result = run_mpi(n, "commit_slices.py", tmp_path, scenario)
    assert result.stdout.count(": ok") == n


@pytest.mark.parametrize("scenario, n", [("slow", 1), ("slow", 3), ("early-stop", 3),
                                         ("few", 3), ("rank0-fails", 3)])
def test_dealer(tmp_path, scenario, n):
    """Work dealt on demand: each number once, a held-up rank takes fewer, an early stop
    ends, fewer numbers than ranks, an error on rank 0 does not wait. One scenario per job."""
    result = run_mpi(n, "dealer.py", tmp_path, scenario, timeout=60)
    assert result.stdout.count(": ok") == n, result.stdout


@pytest.mark.parametrize("n", [1, 3])
def test_repair_in_slices(tmp_path, n):
    """fsck --repair on n ranks: uncommitted frames of 5 ranks, one of them in a data file the
    directory file does not name; the same directory file as a repair by one process."""
    for ranks, step in ((4, "commit"), (5, "crash")):
        run_mpi(ranks, "resume_resized.py", tmp_path, step)
    result = run_mpi(n, "repair_slices.py", tmp_path)
    assert result.stdout.count(": ok") == n, result.stdout


@pytest.mark.parametrize("n", [2, 3])
def test_resume_with_another_number_of_ranks(tmp_path, n):
    """Frames committed and uncommitted by 4 ranks, resumed and completed by n, then by 1."""
    for ranks, step in ((4, "commit"), (4, "crash"), (n, "finish"), (1, "again")):
        result = run_mpi(ranks, "resume_resized.py", tmp_path, step)
        assert result.stdout.count(": ok") == ranks, (step, result.stdout)


@pytest.mark.parametrize("n", [2, 4])
def test_two_volumes_on_halves_of_the_job(tmp_path, n):
    result = run_mpi(n, "two_volumes.py", tmp_path)
    assert result.stdout.count(": ok") == n


@pytest.mark.parametrize("n", [2, 4])
def test_one_rank_cannot_create_its_file(tmp_path, n):
    result = run_mpi(n, "create_failure.py", tmp_path)
    assert result.stdout.count(": ok") == n


@pytest.mark.parametrize("n", [2, 4])
def test_failing_rank_ends_the_job(tmp_path, n):
    result = run_mpi(n, "rank_raises.py", tmp_path, expect_failure=True, timeout=60,
                     abort_on_exception=False)
    assert "[rank 1]" in result.stderr and "the stitching on this rank failed" in result.stderr


@pytest.mark.parametrize("n", [2, 4])
def test_ranks_waiting_at_close_sleep(tmp_path, n):
    result = run_mpi(n, "idle_wait.py", tmp_path, timeout=60)
    assert result.stdout.count(": ok") == n
