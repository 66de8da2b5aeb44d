"""blockfs2tif, blockfs2jp2k and blockfs2hdf under a real mpiexec on 1 and 3 ranks.

The volume's extents are not multiples of its block size and neither its 5
z-slabs nor its 100 blocks divide among 3 ranks. Every voxel of every output
is read back with the real libraries (tifffile and Pillow, glymur, h5py and
h5dump/h5ls) and compared with the source.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import Directory, export
from blockfs_mpi.synthetic import SyntheticVolume
from conftest import mpiexec, run_checked, write_array

SHAPE = (70, 50, 75)  # (z, y, x); blocks of 16: 5 x 4 x 5 = 100 blocks, 5 z-slabs
BLOCK = 16


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """(path, voxels) of a blockfs volume with ragged edge blocks."""
    path = tmp_path_factory.mktemp("export") / "volume.blockfs"
    voxels = SyntheticVolume(SHAPE)[:]
    z, y, x = SHAPE
    directory = Directory(x, y, z, np.uint16, str(path), n_filenames=2, x_block_size=BLOCK,
                          y_block_size=BLOCK, z_block_size=BLOCK)
    directory.create()
    directory[:, :, :] = voxels
    directory.close()
    return path, voxels


def run_program(n, module, *args, expect_failure=False):
    """blockfs_mpi.<module> on n ranks under mpiexec (n=0: plain python, no launcher)."""
    command = [sys.executable, "-m", f"blockfs_mpi.{module}", *map(str, args)]
    if n:
        command = [mpiexec(), "-n", str(n), *command]
    return run_checked(command, expect_failure=expect_failure)


def read_planes(pattern, n, reader):
    return np.stack([reader(pattern % z) for z in range(n)])


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(np.iinfo(np.uint16).max ** 2 / mse)


# ----------------------------------------------------------------- TIFF --

@pytest.mark.mpi
@pytest.mark.parametrize("n, options", [(1, ["--compression", "0"]), (3, []),
                                        (3, ["--compression", "9", "--y-stripe", "20"])])
def test_tif_every_voxel_in_tifffile_and_pillow(tmp_path, volume, n, options):
    import tifffile
    from PIL import Image
    source, voxels = volume
    pattern = str(tmp_path / "new" / "folder" / "img_%04d.tiff")
    run_program(n, "blockfs2tif", "--input", source, "--output-pattern", pattern, *options)
    assert len(os.listdir(tmp_path / "new" / "folder")) == SHAPE[0]
    np.testing.assert_array_equal(read_planes(pattern, SHAPE[0], tifffile.imread), voxels)
    np.testing.assert_array_equal(
        read_planes(pattern, SHAPE[0], lambda p: np.array(Image.open(p))), voxels)
    expected = "NONE" if "0" in options else "ADOBE_DEFLATE"
    assert tifffile.TiffFile(pattern % 0).pages[0].compression.name == expected


def test_tif_local_workers_and_format1(tmp_path, format1_copy):
    import tifffile
    source = next(p for p in format1_copy.iterdir() if p.suffix == ".blockfs")
    expected = Directory.open(source)[:]
    pattern = str(tmp_path / "f1_%d.tif")
    run_program(0, "blockfs2tif", "--input", source, "--output-pattern", pattern,
                "--n-workers", "2", "--silent")
    np.testing.assert_array_equal(read_planes(pattern, len(expected), tifffile.imread), expected)


def test_bigtiff_only_over_4_gib():
    from blockfs_mpi.export_tiff import tiff_options
    assert tiff_options(2 ** 32, 0)["bigtiff"] and not tiff_options(2 ** 31, 0)["bigtiff"]
    assert tiff_options(10, 6)["compressionargs"] == {"level": 6}


# --------------------------------------------------------- JPEG 2000 --

@pytest.mark.mpi
@pytest.mark.parametrize("n, psnr_asked", [(1, None), (3, None), (3, 60)])
def test_jp2k_round_trip(tmp_path, volume, glymur, n, psnr_asked):
    source, voxels = volume
    pattern = str(tmp_path / "jp2" / "img_%04d.jp2")
    options = ["--psnr", psnr_asked] if psnr_asked else []
    run_program(n, "blockfs2jp2k", "--input", source, "--output-pattern", pattern, *options)
    planes = read_planes(pattern, SHAPE[0], lambda p: glymur.Jp2k(p)[:])
    if psnr_asked is None:
        np.testing.assert_array_equal(planes, voxels)
    else:
        assert psnr(planes, voxels) >= psnr_asked - 1


def test_jp2k_says_how_to_get_openjpeg(monkeypatch, glymur):
    from blockfs_mpi.export_jp2k import require_glymur
    monkeypatch.setattr(glymur.version, "openjpeg_version_tuple", (0, 0, 0))
    with pytest.raises(RuntimeError, match="libopenjp2-7"):
        require_glymur()


# --------------------------------------------------------------- HDF5 --

def check_hdf(dest, name, voxels, compression):
    import h5py
    with h5py.File(dest, "r") as f:
        dataset = f[name]
        assert dataset.chunks == (BLOCK, BLOCK, BLOCK)
        assert dataset.compression == compression
        np.testing.assert_array_equal(dataset[:], voxels)
        assert f["kept"][()] == 42
    if shutil.which("h5ls") and shutil.which("h5dump"):
        listing = subprocess.run(["h5ls", "-r", str(dest)], capture_output=True, text=True,
                                 check=True).stdout
        assert f"/{name}" in listing and "{70, 50, 75}" in listing
        if compression == "lzf":
            return  # lzf is h5py's own filter; HDF5's tools cannot decode it
        dump = subprocess.run(["h5dump", "-d", f"/{name}", "-s", "69,49,74", "-c", "1,1,1",
                               str(dest)], capture_output=True, text=True, check=True).stdout
        assert f"(69,49,74): {voxels[-1, -1, -1]}" in dump


def hdf_with_other_dataset(path):
    import h5py
    with h5py.File(path, "w") as f:
        f["kept"] = 42
    return path


@pytest.mark.mpi
@pytest.mark.parametrize("n, compression", [(1, "gzip"), (3, "gzip"), (3, "lzf"), (1, "none")])
def test_hdf_serial_h5py(tmp_path, volume, n, compression):
    source, voxels = volume
    dest = hdf_with_other_dataset(tmp_path / "out.h5")
    result = run_program(n, "blockfs2hdf", source, dest, "a/b/volume", "--compression",
                         compression)
    assert "write_direct_chunk (serial h5py)" in result.stderr
    check_hdf(dest, "a/b/volume", voxels, None if compression == "none" else compression)


@pytest.mark.mpi
def test_hdf_existing_dataset_needs_overwrite(tmp_path, volume):
    source, voxels = volume
    dest = hdf_with_other_dataset(tmp_path / "out.h5")
    run_program(3, "blockfs2hdf", source, dest, "v", "--compression-opts", "1")
    result = run_program(3, "blockfs2hdf", source, dest, "v", expect_failure=True)
    assert result.stderr.count("dataset v exists; use --overwrite") == 1, result.stderr
    run_program(3, "blockfs2hdf", source, dest, "v", "--overwrite", "--silent")
    check_hdf(dest, "v", voxels, "gzip")


PARALLEL_VENV = Path(os.environ.get(
    "BLOCKFS_PARALLEL_HDF5_VENV",
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "blockfs_mpi" / "venv-h5py-mpi")).absolute()
MPIEXEC_OPENMPI = "/usr/bin/mpiexec.openmpi"
# Open MPI refuses to run as root without these; Debian's h5py picks its MPI build with the last.
OPENMPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
               "H5PY_ALWAYS_USE_MPI": "1"}


def parallel_hdf5_ready():
    python = PARALLEL_VENV / "bin" / "python"
    if not (python.exists() and os.path.exists(MPIEXEC_OPENMPI)):
        return False
    check = subprocess.run([str(python), "-c", "import h5py, blockfs_mpi, sys; "
                            "sys.exit(not h5py.get_config().mpi)"], capture_output=True,
                           env=dict(os.environ, **OPENMPI_ENV))
    return check.returncode == 0


@pytest.mark.mpi
@pytest.mark.skipif(not parallel_hdf5_ready(),
                    reason=f"no parallel h5py in {PARALLEL_VENV} with {MPIEXEC_OPENMPI}: run "
                           f"scripts/setup-parallel-hdf5.sh (scripts/test.sh does)")
@pytest.mark.parametrize("n, compression", [(1, "gzip"), (3, "gzip"), (3, "none")])
def test_hdf_parallel_h5py_collective_writes(tmp_path, volume, n, compression):
    source, voxels = volume
    dest = hdf_with_other_dataset(tmp_path / "out.h5")
    command = [MPIEXEC_OPENMPI, "--oversubscribe", "-n", str(n), PARALLEL_VENV / "bin" / "python",
               "-m", "blockfs_mpi.blockfs2hdf", source, dest, "volume",
               "--compression", compression]
    result = run_checked(list(map(str, command)), env=OPENMPI_ENV)
    assert "collective writes through the mpio driver" in result.stderr
    check_hdf(dest, "volume", voxels, None if compression == "none" else compression)


# ------------------------------------------------------------- errors --

def one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert any(all(w in line for w in words) for line in lines), result.stderr


@pytest.mark.parametrize("module, args, words", [
    ("blockfs2tif", ["--input", "{missing}", "--output-pattern", "{tmp}/a_%d.tif"],
     ["no such blockfs directory file"]),
    ("blockfs2jp2k", ["--input", "{missing}", "--output-pattern", "{tmp}/a_%d.jp2"],
     ["no such blockfs directory file"]),
    ("blockfs2hdf", ["{missing}", "{tmp}/o.h5", "v"], ["no such blockfs directory file"]),
    ("blockfs2tif", ["--input", "{src}", "--output-pattern", "{tmp}/a.tif"], ["%d-style field"]),
    ("blockfs2jp2k", ["--input", "{src}", "--output-pattern", "{tmp}/a_%d_%d.jp2"],
     ["%d-style field"]),
    ("blockfs2tif", ["--input", "{src}", "--output-pattern", "{file}/a_%d.tif"],
     ["cannot create output folder"]),
    ("blockfs2hdf", ["{src}", "{file}/o.h5", "v"], ["error", "o.h5"]),
    ("blockfs2hdf", ["{src}", "{file}", "v"], ["a-file exists and is not an HDF5 file"]),
    ("blockfs2tif", ["--input", "{src}", "--output-pattern", "{tmp}/a_%d.tif",
                     "--compression", "10"], ["--compression must be a number from 0 to 9"]),
    ("blockfs2jp2k", ["--input", "{src}", "--output-pattern", "{tmp}/a_%d.jp2",
                      "--psnr", "-3"], ["--psnr must be"]),
    ("blockfs2hdf", ["{src}", "{tmp}/o.h5", "v", "--compression-opts", "11"],
     ["--compression-opts must be a number from 0 to 9"]),
    ("blockfs2hdf", ["{src}", "{tmp}/o.h5", "v", "--compression", "zip"],
     ["--compression must be gzip, lzf or none"]),
])
def test_bad_input_fails_with_one_line(tmp_path, volume, module, args, words):
    regular_file = tmp_path / "a-file"
    regular_file.write_text("not a folder")
    names = dict(missing=tmp_path / "missing.blockfs", tmp=tmp_path, src=volume[0],
                 file=regular_file)
    result = run_program(0, module, *[a.format(**names) for a in args], expect_failure=True)
    one_line_error(result, *words)


@pytest.mark.parametrize("n, options", [pytest.param(3, [], marks=pytest.mark.mpi),
                                        (0, ["--n-workers", "3"])])
def test_a_plane_that_cannot_be_written_ends_the_job(tmp_path, volume, n, options):
    """Plane 40 (third slab) is an existing folder that --overwrite cannot replace: its rank,
    or local worker, fails in the middle of the job, and the job ends with its message
    instead of hanging."""
    (tmp_path / "x_40.tif").mkdir()
    result = run_program(n, "blockfs2tif", "--input", volume[0], "--output-pattern",
                         tmp_path / "x_%d.tif", "--overwrite", "--silent", *options,
                         expect_failure=True)
    assert "x_40.tif" in result.stderr and "Is a directory" in result.stderr, result.stderr


def forked_children(pid):
    """Processes forked by pid: they run pid's own command line (a helper would not)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        command = f.read()
    found = []
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        for child in map(int, f.read().split()):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as g:
                    if g.read() == command:
                        found.append(child)
            except FileNotFoundError:
                pass
    return found


def test_a_killed_local_worker_ends_the_job(tmp_path):
    """A local worker killed from outside, as by the OOM killer, ends blockfs2tif with an
    error instead of leaving it waiting forever for that worker's slab."""
    slab = np.random.default_rng(0).poisson(300, (16, 256, 256)).astype(np.uint16)
    source = write_array(tmp_path / "long.blockfs", np.tile(slab, (32, 1, 1)), block=16)
    output = tmp_path / "planes"
    process = subprocess.Popen(
        [sys.executable, "-m", "blockfs_mpi.blockfs2tif", "--input", str(source),
         "--output-pattern", str(output / "p_%d.tif"), "--n-workers", "2", "--compression", "9",
         "--silent"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (output.exists() and any(output.iterdir())):  # the workers are at work
            assert process.poll() is None and time.monotonic() < deadline, "no plane written"
            time.sleep(0.01)
        workers = forked_children(process.pid)
        assert workers, "no worker processes found"
        os.kill(workers[0], signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 1, err
    assert "terminated abruptly" in err and "Traceback" not in err, err
    assert len(os.listdir(output)) < 512  # the kill landed before the end


@pytest.mark.parametrize("module", ["blockfs2tif", "blockfs2jp2k", "blockfs2hdf"])
def test_help(module):
    result = run_program(0, module, "--help")
    assert "Usage:" in result.stdout and "--silent" in result.stdout


# -------------------------------------------------------------- library --

@pytest.mark.parametrize("n_items", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_rounds_are_equal_on_every_rank_and_cover_every_item(n_items, size):
    class Comm:
        def __init__(self, rank):
            self.rank = rank

        def Get_rank(self):
            return self.rank

        def Get_size(self):
            return size

    per_rank = [export.rounds(n_items, Comm(r)) for r in range(size)]
    assert len({len(r) for r in per_rank}) == 1
    assert sorted(i for r in per_rank for i in r if i is not None) == list(range(n_items))


@pytest.mark.parametrize("pattern, ok", [("a_%04d.tif", True), ("%d/a.tif", True),
                                         ("a.tif", False), ("a_%d_%d.tif", False),
                                         ("a_%q.tif", False), ("100%_%d.tif", False)])
def test_check_pattern(pattern, ok):
    if ok:
        assert export.check_pattern(pattern) == pattern
    else:
        with pytest.raises(ValueError, match="%d-style field"):
            export.check_pattern(pattern)
