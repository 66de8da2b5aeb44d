"""blockfs-write: every source kind, 1 and 2 ranks, resume after a real kill, memory, errors."""
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tifffile

from blockfs_mpi import Directory
from blockfs_mpi.convert import verify
from blockfs_mpi.sources import open_source
from blockfs_mpi.synthetic import SyntheticVolume
from conftest import kill_group, microscopy_volume, mpiexec, peak_rss_of_write, run_checked

SHAPE = (45, 70, 90)  # not multiples of the 32^3 blocks the tests use


def write_command(ranks, *args):
    """blockfs-write on `ranks` MPI ranks, or as a plain process when ranks is 0."""
    program = [sys.executable, "-m", "blockfs_mpi.write", *map(str, args)]
    return program if ranks == 0 else [mpiexec(), "-n", str(ranks), *program]


def run_write(ranks, *args, **kwargs):
    return run_checked(write_command(ranks, *args), **kwargs)


@pytest.fixture(scope="module")
def volume():
    return microscopy_volume(SHAPE, seed=3)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, volume):
    """The same volume as planes (mixed TIFF layouts), a stack, HDF5 and .npy."""
    folder = tmp_path_factory.mktemp("sources")
    (folder / "planes").mkdir()
    for z, plane in enumerate(volume):
        layout = [{}, {"compression": "zlib", "rowsperstrip": 7},
                  {"compression": "zlib", "tile": (32, 32)}][z % 3]
        tifffile.imwrite(folder / "planes" / f"img_{z}.tif", plane, **layout)
    tifffile.imwrite(folder / "stack.tif", volume)
    tifffile.imwrite(folder / "stack-zlib.tif", volume, compression="zlib")
    with h5py.File(folder / "volume.h5", "w") as f:
        f.create_dataset("/raw/channel0", data=volume, chunks=(16, 16, 16))
    np.save(folder / "volume.npy", volume)
    return {"planes": str(folder / "planes" / "img_*.tif"), "stack": str(folder / "stack.tif"),
            "stack-zlib": str(folder / "stack-zlib.tif"),
            "hdf5": f"{folder / 'volume.h5'}:/raw/channel0", "npy": str(folder / "volume.npy")}


@pytest.mark.parametrize("ranks", [0, 2])
@pytest.mark.parametrize("kind", ["planes", "stack", "stack-zlib", "hdf5", "npy"])
def test_every_source_kind(tmp_path, sources, volume, kind, ranks):
    output = tmp_path / "out.blockfs"
    run_write(ranks, sources[kind], output, "--block-size", 32, "--silent")
    directory = Directory.open(output)
    assert directory.block_size == (32, 32, 32)
    np.testing.assert_array_equal(directory[:], volume)


def test_synthetic_with_options(tmp_path):
    output = tmp_path / "out.blockfs"
    dirs = [tmp_path / "disk0", tmp_path / "disk1"]
    for d in dirs:
        d.mkdir()
    result = run_write(3, "synthetic:40x50x70", output, "--block-size", "16,32,64",
                       "--compression", "lz4", "--level", "3", "--dtype", "uint32",
                       "--data-dirs", ",".join(map(str, dirs)), "--stripe-count", 2,
                       "--stripe-size", 1048576, "--metadata", "VoxelSize=[1.8,1.8,2]",
                       "--metadata", "Lab=chung", "--verify")
    assert "identical to the source" in result.stderr
    directory = Directory.open(output)
    assert directory.block_size == (16, 32, 64) and directory.dtype == np.uint32
    assert directory.compression.name == "lz4" and directory.compression_level == 3
    assert directory.metadata == {"VoxelSize": [1.8, 1.8, 2], "Lab": "chung"}
    assert directory.block_filenames == [str(dirs[0] / "out.blockfs.0"),
                                         str(dirs[1] / "out.blockfs.1"),
                                         str(dirs[0] / "out.blockfs.2")]
    np.testing.assert_array_equal(directory[:], SyntheticVolume((40, 50, 70))[:, :, :])


def test_verify_counts_units_that_differ(tmp_path):
    """--verify's comparison: one block rewritten with other voxels is one unit that differs."""
    output = str(tmp_path / "out.blockfs")
    run_write(0, "synthetic:40x50x70", output, "--block-size", 16, "--silent")
    with Directory.resume(output) as directory:
        directory.write_block(np.zeros((16, 16, 16), np.uint16), 16, 16, 16)
    source = open_source("synthetic:40x50x70")
    assert verify(source, Directory.open(output), 1 << 30, None)[:2] == (1, 40 * 50 * 70 * 2)
    run_write(0, "synthetic:40x50x70", output, "--block-size", 16, "--overwrite", "--silent")
    assert verify(source, Directory.open(output), 1 << 30, None)[0] == 0


def test_help():
    result = run_write(0, "--help")
    assert "Usage:" in result.stdout and "--resume" in result.stdout


# ------------------------------------------------------------------ resume --

def rank_pids(output):
    """PIDs of the python ranks (not mpiexec) of a blockfs-write job writing output."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                with open(f"/proc/{entry}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            if name.startswith("python") and str(output).encode() in argv:
                pids.append(int(entry))
    return pids


def start_and_kill(output, shape, kill, ranks=2):
    """Start a writer job, wait until frames reach the data files, then SIGKILL."""
    command = write_command(ranks, f"synthetic:{shape}", output, "--silent", "--level", "9")
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True,  # frames on disk early, 1 MiB at a time
                           env=dict(os.environ, BLOCKFS_BUFFER_SIZE=str(1 << 20)))
    deadline = time.monotonic() + 60
    data = [f"{output}.{r}" for r in range(ranks)]
    while sum(os.path.getsize(p) for p in data if os.path.exists(p)) < (4 << 20):
        assert job.poll() is None, f"job ended before it could be killed: {job.communicate()}"
        assert time.monotonic() < deadline, "no data reached the data files in 60 s"
        time.sleep(0.05)
    if kill == "one rank":
        os.kill(rank_pids(output)[-1], signal.SIGKILL)
    else:
        kill_group(job.pid)
    job.communicate(timeout=60)
    assert job.returncode != 0


@pytest.mark.mpi
@pytest.mark.parametrize("kill", ["one rank", "whole job"])
def test_resume_after_a_real_kill(tmp_path, kill):
    output = tmp_path / "out.blockfs"
    shape = "192x384x384"
    start_and_kill(output, shape, kill)
    result = run_write(2, f"synthetic:{shape}", output, "--resume", "--silent", timeout=300)
    summary = [line for line in result.stderr.splitlines() if "blocks written" in line][-1]
    present = int(summary.split(" already present")[0].split(", ")[-1])
    written = int(summary.split(" blocks written")[0].split()[-1])
    assert present > 0 and written > 0 and present + written == 3 * 6 * 6, summary
    directory = Directory.open(output)
    volume = SyntheticVolume((192, 384, 384))
    for z in range(0, 192, 64):  # every voxel, a slab at a time
        np.testing.assert_array_equal(directory[z:z + 64], volume[z:z + 64])


def test_resume_of_a_complete_volume_writes_nothing(tmp_path):
    output = tmp_path / "out.blockfs"
    run_write(0, "synthetic:40x40x40", output, "--block-size", 16, "--silent")
    result = run_write(0, "synthetic:40x40x40", output, "--block-size", 16, "--resume")
    assert "0 blocks written, 27 already present" in result.stderr
    np.testing.assert_array_equal(Directory.open(output)[:], SyntheticVolume((40, 40, 40))[:])


def test_resume_of_another_volume_is_refused(tmp_path):
    output = tmp_path / "out.blockfs"
    run_write(0, "synthetic:40x40x40", output, "--silent")
    result = run_write(0, "synthetic:40x40x48", output, "--resume", expect_failure=True)
    assert "cannot be resumed" in result.stderr


# ------------------------------------------------------------------ memory --

@pytest.mark.mpi
def test_memory_stays_within_budget(tmp_path):
    """64 planes of 4 MiB would take 256 MiB a rank; the budget is 160 MiB."""
    peaks, plane = peak_rss_of_write(tmp_path, tmp_path / "out.blockfs", "--memory", "160M",
                                     "--level", "1", "--silent")
    assert max(peaks) < 160 * 1024, f"peak RSS per rank {peaks} KiB exceeds the 160 MiB budget"
    directory = Directory.open(tmp_path / "out.blockfs")
    np.testing.assert_array_equal(directory[63], plane)


# ------------------------------------------------------------------ errors --

def test_bad_plane_names_the_file_and_rank(tmp_path, volume):
    (tmp_path / "planes").mkdir()
    for z in range(8):
        tifffile.imwrite(tmp_path / "planes" / f"img_{z}.tif", volume[z, :4])
    (tmp_path / "planes" / "img_5.tif").write_bytes(b"not a tiff at all")
    result = run_write(2, str(tmp_path / "planes" / "img_*.tif"), tmp_path / "out.blockfs",
                       "--block-size", 4, "--silent", expect_failure=True, timeout=60)
    # Runs of units are dealt as ranks ask for them: either rank may meet plane 5 first.
    assert re.search(r"^\[rank [01]\] error: \S*img_5\.tif: cannot read TIFF plane",
                     result.stderr, re.M), result.stderr


def test_planes_of_different_shapes(tmp_path, volume):
    (tmp_path / "planes").mkdir()
    for z in range(4):
        tifffile.imwrite(tmp_path / "planes" / f"img_{z}.tif", volume[z, :60 if z == 2 else 70])
    result = run_write(0, str(tmp_path / "planes" / "img_*.tif"), tmp_path / "out.blockfs",
                       "--silent", expect_failure=True)
    assert "img_2.tif: plane is (60, 90) uint16, the first plane" in result.stderr


def test_empty_glob(tmp_path):
    result = run_write(0, str(tmp_path / "nothing_*.tif"), tmp_path / "out.blockfs",
                       expect_failure=True)
    assert "no files match" in result.stderr


def make_bad_sources(folder):
    """Files that are not usable sources, each by a different fault."""
    import h5py
    np.save(folder / "flat.npy", np.zeros((4, 4), np.uint16))
    (folder / "garbage.npy").write_bytes(b"not numpy")
    (folder / "garbage.tif").write_bytes(b"not a tiff")
    with h5py.File(folder / "f.h5", "w") as f:
        f["flat"] = np.zeros((4, 4), np.uint16)


@pytest.mark.mpi
@pytest.mark.parametrize("source, words", [
    ("{in}/flat.npy", ["flat.npy", "2-D, not 3-D"]),
    ("{in}/garbage.npy", ["garbage.npy", "cannot read .npy"]),
    ("{in}/absent.npy", ["absent.npy", "no such .npy file"]),
    ("{in}/garbage.tif", ["garbage.tif", "cannot read TIFF"]),
    ("{in}/absent.tif", ["absent.tif", "no such TIFF file"]),
    ("{in}/f.h5:/flat", ["f.h5:/flat", "2-D, not 3-D"]),
    ("{in}/f.h5:/none", ["f.h5", "no dataset '/none'"]),
    ("{in}/absent.h5:/v", ["absent.h5", "cannot open HDF5 file"]),
    ("synthetic:10x10", ["expected synthetic:ZxYxX"]),
    ("{in}/volume.zarr", ["volume.zarr", "not a source"]),
])
def test_bad_sources_are_one_line(tmp_path, source, words):
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    output.mkdir()
    make_bad_sources(inputs)
    result = run_write(2, source.format(**{"in": inputs}), output / "v.blockfs", "--silent",
                       expect_failure=True)
    assert any(all(w in line for w in words) for line in result.stderr.splitlines()), \
        result.stderr
    assert "Traceback" not in result.stderr
    assert not list(output.iterdir())


def test_existing_output_is_kept(tmp_path):
    output = tmp_path / "out.blockfs"
    run_write(0, "synthetic:30x30x30", output, "--silent")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    result = run_write(2, "synthetic:30x30x30", output, "--silent", expect_failure=True)
    assert "exists: pass --resume" in result.stderr
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    result = run_write(0, "synthetic:20x20x20", output, "--overwrite", "--memory", "1M",
                       expect_failure=True)  # a bad option replaces nothing
    assert "too small" in result.stderr
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    run_write(0, "synthetic:20x20x20", output, "--overwrite", "--silent")
    assert Directory.open(output).shape == (20, 20, 20)


@pytest.mark.parametrize("args,message", [
    (["--block-size", "0"], "--block-size"),
    (["--memory", "lots"], "not a size"),
    (["--memory", "1M"], "too small"),
    (["--compression", "gzip"], "unknown compression"),
    (["--metadata", "novalue"], "key=value"),
    (["--dtype", "foo"], "--dtype 'foo': not a numpy data type"),
])
def test_bad_options(tmp_path, args, message):
    result = run_write(0, "synthetic:20x20x20", tmp_path / "out.blockfs", *args,
                       expect_failure=True)
    assert message in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("ranks", [pytest.param(2, marks=pytest.mark.mpi), 0])
def test_full_disk(tmp_path, ranks):
    """A writer that runs out of space fails with a clear error: on every rank under mpiexec,
    and without it from the local writer processes."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        result = run_write(ranks, "synthetic:256x256x256", small / "out.blockfs", "--silent",
                           expect_failure=True, timeout=120)
        assert "No space left on device" in result.stderr
        assert "not committed" in result.stderr
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_ranks_take_whole_runs_of_units(tmp_path):
    """Units go out on demand in runs of neighbours (16 units of one block row = 2 z-slabs
    here): each run lies wholly in one rank's data file, both ranks take runs, and together
    they cover the volume."""
    output = tmp_path / "out.blockfs"
    run_write(2, "synthetic:256x64x64", output, "--block-size", 8, "--silent")
    directory = Directory.open(output)
    writers = {}  # z-slab pair (a run) -> data files holding its blocks
    for x, y, z in directory.geometry.block_origins():
        file_number, _, _ = directory.reader.entry(directory.geometry.block_number(x, y, z))
        writers.setdefault(z // 16, set()).add(file_number)
    assert sorted(writers) == list(range(16))
    assert all(len(files) == 1 for files in writers.values()), writers
    # Both ranks take runs: rank 1's first request is answered within a millisecond or so,
    # while rank 0 alone needs seconds for all 16 runs (3.6 s on a loaded 2-core machine).
    assert {file for files in writers.values() for file in files} == {0, 1}
