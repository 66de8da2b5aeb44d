"""The benchmark scripts still run end to end, at a trivial size (no timing is checked here).

peers.py needs the optional peer libraries of benchmarks/requirements.txt and
is skipped without them. The volume cache goes to a temporary folder.
"""
import importlib.util
import sys

import pytest

from conftest import ROOT, run_checked

BENCHMARKS = ROOT / "benchmarks"
QUIET = ["--max-load", "1000"]  # never wait for a quiet machine in a test


@pytest.fixture
def environment(tmp_path):
    return {"BLOCKFS_BENCH_CACHE": str(tmp_path)}


@pytest.mark.mpi
def test_scaling_runs(environment, tmp_path):
    result = run_checked([sys.executable, str(BENCHMARKS / "scaling.py"), "--blocks", "1e3",
                          "--ranks", "1", "--sweep-blocks", "1e3", "--many", "2", "--size", "64",
                          "--out", str(tmp_path / "scaling"), *QUIET], env=environment)
    assert "| rows | 1e+03 | 2 |" in result.stdout
    assert "| 2 | yes | 2 |" in result.stdout


@pytest.mark.mpi
@pytest.mark.skipif(not all(importlib.util.find_spec(name)
                            for name in ("zarr", "tensorstore", "h5py", "hdf5plugin")),
                    reason="peer libraries of benchmarks/requirements.txt not installed")
def test_peers_runs(environment, tmp_path):
    result = run_checked([sys.executable, str(BENCHMARKS / "peers.py"), "--size", "64",
                          "--reads", "10", "--no-defaults", "--out", str(tmp_path / "peers"),
                          *QUIET], env=environment)
    assert "| TensorStore zarr3 sharded |" in result.stdout
    assert "| blockfs_mpi, mpiexec -n 2 |" in result.stdout


@pytest.mark.mpi
def test_write_balance_runs(environment):
    result = run_checked([sys.executable, str(BENCHMARKS / "write_balance.py"), "--size", "128",
                          "--level", "1"], env=environment)
    assert "2 rank(s): compression ceiling" in result.stdout


@pytest.mark.mpi
def test_write_read_runs(environment):
    result = run_checked([sys.executable, str(BENCHMARKS / "write_read.py"), "--size", "64",
                          "--level", "1", "--repeats", "2"], env=environment)
    assert "medians of 2 rounds" in result.stdout
    assert "reads / decode" in result.stdout and "(rounds: " in result.stdout


def test_blosc_blocksize_runs(environment):
    result = run_checked([sys.executable, str(BENCHMARKS / "blosc_blocksize.py"), "--size", "64",
                          "--rounds", "1", *QUIET], env=environment)
    assert "| auto (0) |" in result.stdout and "| 131072 |" in result.stdout


def test_full_read_runs(environment):
    result = run_checked([sys.executable, str(BENCHMARKS / "full_read.py"), "--size", "64",
                          "--rounds", "1", *QUIET], env=environment)
    assert "read_threads 1:" in result.stdout and "read_threads default:" in result.stdout


@pytest.mark.mpi
@pytest.mark.skipif(not all(importlib.util.find_spec(name) for name in ("zarr", "tensorstore")),
                    reason="zarr and tensorstore (the test extra) not installed")
def test_blockfs2zarr_runs(environment, tmp_path):
    result = run_checked([sys.executable, str(BENCHMARKS / "blockfs2zarr.py"), "--sizes", "64",
                          "--levels", "1", "--rounds", "2", "--shard", "1",
                          "--out", str(tmp_path / "zarr"), *QUIET], env=environment)
    assert "| blockfs2zarr, mpiexec -n 2 |" in result.stdout
    assert "| blockfs-write from OME-Zarr / from .npy, MB/s (chunks copied) |" in result.stdout
    assert "| blockfs-write from OME-Zarr / from .npy at zstd-2, MB/s (decoded) |" \
        in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("zarr") is None, reason="needs the zarr extra")
def test_zarr_view_runs(environment):
    result = run_checked([sys.executable, str(BENCHMARKS / "zarr_view.py"), "--size", "64",
                          "--rounds", "1", "--reads", "3", "--requests", "3", "--clients", "2",
                          *QUIET], env=environment)
    assert "view / faster native:" in result.stdout and "zarr / precomputed:" in result.stdout
    assert "np.asarray / volume[:, :, :]:" in result.stdout


@pytest.mark.mpi
def test_pyramid_one_pass_runs(environment):
    result = run_checked([sys.executable, str(BENCHMARKS / "pyramid_one_pass.py"), "--size", "64",
                          "--rounds", "1", *QUIET], env=environment)
    assert "| synthetic 64^3 |" in result.stdout and "| 64 TIFF planes |" in result.stdout
