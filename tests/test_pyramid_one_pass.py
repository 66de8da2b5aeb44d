"""blockfs-write --levels makes level 2 in the same pass as level 1 (issue 19): the pyramid is
voxel-identical to the two-pass one (level 1, then pyramid.build as blockfs-downsample runs
it) for mean and mode, odd extents, cubic and non-cubic blocks, on 1, 2 and 3 ranks and
without mpiexec; a job killed mid-pass completes with --resume; which level-2 blocks a
resumed job keeps; the unit plan and memory budget; the per-rank memory bound."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from blockfs_mpi import Directory, pyramid
from blockfs_mpi.convert import (
    LEVEL2_OVERHEAD,
    REGION_COPIES,
    WRITER_OVERHEAD,
    blocks_in_budget,
    plan_units,
)
from blockfs_mpi.errors import BlockfsError
from blockfs_mpi.geometry import Geometry
from blockfs_mpi.lock import VolumeLock
from blockfs_mpi.reader import read_header
from blockfs_mpi.synthetic import SyntheticVolume
from conftest import kill_group, microscopy_volume, mpiexec, peak_rss_of_write, run_checked
from test_pyramid import reference_mean, reference_mode

pytestmark = pytest.mark.timeout(300)


def write_command(ranks, *args):
    """blockfs-write on `ranks` MPI ranks, or as a plain process when ranks is 0."""
    program = [sys.executable, "-m", "blockfs_mpi.write", *map(str, args)]
    return program if ranks == 0 else [mpiexec(), "-n", str(ranks), *program]


COUNTING_READS = """
import atexit, collections, json, os, runpy
from blockfs_mpi.reader import BlockReader
reads, read = collections.Counter(), BlockReader.read
def counted(self, number, shape):
    reads[self.path] += 1
    return read(self, number, shape)
BlockReader.read = counted
out = os.path.join(os.environ["BLOCK_READS"], str(os.getpid()))
atexit.register(lambda: open(out, "w").write(json.dumps(reads)))
runpy.run_module("blockfs_mpi.write", run_name="__main__")
"""


def counting_write(folder, ranks, *args):
    """Run write_command with every process counting the blocks it reads: how many blocks of
    each level of the pyramid in folder they read, in all, and the job's stderr."""
    counts = folder.parent / "block-reads"
    counts.mkdir()
    command = write_command(ranks, *args)
    at = command.index("-m")
    result = run_checked([*command[:at], "-c", COUNTING_READS, *command[at + 2:]],
                         env={"BLOCK_READS": str(counts)})
    reads = [json.loads(path.read_text()) for path in counts.iterdir()]
    assert len(reads) == max(ranks, 1), result.stderr
    return [sum(r.get(pyramid.level_path(str(folder), level), 0) for r in reads)
            for level in range(1, 6)], result.stderr


def tight_memory(block_size, itemsize, method):
    """The --memory at which a unit is 2x2x2 blocks: several units across x."""
    voxels = int(np.prod(block_size))
    return (WRITER_OVERHEAD + LEVEL2_OVERHEAD
            + 8 * voxels * (pyramid.reduction_bytes(method, itemsize) + REGION_COPIES * itemsize))


def two_pass(folder, voxels, block_size, levels, method):
    """Today's two-pass pyramid of voxels in folder: level 1 written, then every level made
    from the one below by pyramid.build (what blockfs-downsample runs)."""
    path = pyramid.level_path(str(folder), 1)
    os.makedirs(os.path.dirname(path))
    z, y, x = voxels.shape
    zb, yb, xb = block_size
    with Directory(x, y, z, voxels.dtype, path, n_filenames=2, z_block_size=zb,
                   y_block_size=yb, x_block_size=xb) as directory:
        directory.create()
        directory[:, :, :] = voxels
    pyramid.build(str(folder), levels, method=method, silent=True)
    return folder


def assert_same_pyramid(got, expected, levels):
    """Every level of two pyramids voxel-identical, with the same geometry, and same info."""
    for level in range(1, levels + 1):
        a = Directory.open(pyramid.level_path(str(got), level))
        b = Directory.open(pyramid.level_path(str(expected), level))
        assert (a.shape, a.block_size, a.dtype) == (b.shape, b.block_size, b.dtype), level
        np.testing.assert_array_equal(a[:, :, :], b[:, :, :], err_msg=f"level {level}")
    assert json.loads((got / "info").read_text()) == json.loads((expected / "info").read_text())


def labels_volume(shape, seed=0):
    """Integer labels with many ties within 2x2x2 groups (mode's hard case)."""
    return np.random.default_rng(seed).integers(0, 4, shape).astype(np.uint32)


@pytest.mark.parametrize("method,block,shape,ranks", [
    ("mean", "32", (75, 99, 131), 1),
    ("mean", "64", (67, 70, 150), 2),
    ("mean", "16,32,24", (45, 99, 131), 3),
    ("mode", "32", (75, 70, 99), 3),
    ("mode", "64", (67, 131, 70), 1),
    ("mode", "16,32,24", (45, 67, 101), 2),
    ("mean", "32", (75, 99, 131), 0),
])
def test_one_pass_equals_two_pass(tmp_path, method, block, shape, ranks):
    voxels = microscopy_volume(shape) if method == "mean" else labels_volume(shape)
    np.save(tmp_path / "source.npy", voxels)
    block_size = tuple(int(n) for n in block.split(",")) * (3 if "," not in block else 1)
    memory = tight_memory(block_size, voxels.dtype.itemsize, method)
    result = run_checked(write_command(
        ranks, tmp_path / "source.npy", tmp_path / "one", "--levels=3", "--block-size", block,
        "--memory", memory, *(["--labels"] if method == "mode" else []), "--silent"))
    level2_blocks = Geometry(*((n + 1) // 2 for n in shape[::-1]),
                             *block_size[::-1]).block_count
    assert f"level 2: {level2_blocks} blocks written, 0 already present" in result.stderr
    expected = two_pass(tmp_path / "two", voxels, block_size, 3, method)
    assert_same_pyramid(tmp_path / "one", expected, 3)
    if method == "mean":  # and both are the 2x2x2 means of the level below
        np.testing.assert_array_equal(
            Directory.open(pyramid.level_path(str(tmp_path / "one"), 2))[:, :, :],
            reference_mean(voxels))


@pytest.mark.mpi
@pytest.mark.parametrize("block,method,held", [("16", "mean", True), ("15", "mean", False),
                                               ("16,32,24", "mode", True)])
def test_levels_above_2_are_made_from_what_the_pass_kept(tmp_path, block, method, held):
    """Where level 3 is small (at most MIN_BLOCKS_PER_RANK blocks) the pass keeps it in
    memory, and levels 3.. are made without reading level 2 back (no block of any level is
    read), for mean (level 2 reduced a unit at a time) and mode (a block at a time); with odd
    blocks, whose 2x2x2 groups straddle level-2 blocks, level 2 is read once."""
    shape = (75, 99, 131)
    voxels = microscopy_volume(shape) if method == "mean" else labels_volume(shape)
    np.save(tmp_path / "source.npy", voxels)
    pyr = tmp_path / "pyr"
    reads, _ = counting_write(pyr, 2, tmp_path / "source.npy", pyr, "--levels=5",
                              "--block-size", block, "--silent",
                              *(["--labels"] if method == "mode" else []))
    level2 = Directory.open(pyramid.level_path(str(pyr), 2)).geometry
    level3_bytes = 19 * 25 * 33 * voxels.dtype.itemsize
    reduction = pyramid.reduction_bytes(method, voxels.dtype.itemsize)
    assert pyramid.held_level3_bytes(level2, voxels.dtype.itemsize, 1 << 30, reduction) == (
        level3_bytes if held else 0)
    assert reads == ([0, 0, 0, 0, 0] if held else [0, level2.block_count, 0, 0, 0])
    reference = reference_mean if method == "mean" else reference_mode
    for level in range(1, 6):
        got = Directory.open(pyramid.level_path(str(pyr), level))
        np.testing.assert_array_equal(got[:, :, :], voxels, err_msg=f"level {level}")
        voxels = reference(voxels)


def test_integer_mean_is_the_general_mean():
    """The integer mean (one axis at a time) gives the floors of every group's exact mean, for
    every integer type at its extremes and every parity of extents."""
    rng = np.random.default_rng(7)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64):
        info = np.iinfo(dtype)
        for shape in [(1, 1, 1), (2, 3, 1), (5, 4, 7), (6, 6, 8), (17, 3, 2)]:
            block = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
            np.testing.assert_array_equal(pyramid.downsample(block), reference_mean(block),
                                          err_msg=f"{np.dtype(dtype)} {shape}")


def test_integer_mean_sums_small_values_in_their_own_type():
    """Values of which 8 fit the block's type are summed in it (12-bit data in uint16), up to
    the last such value; one more and the sums are wider: the means are exact either way."""
    rng = np.random.default_rng(8)
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dtype)
        low, high = -(-info.min // 8), info.max // 8  # 8 * low >= min, 8 * high <= max
        for shape in [(2, 2, 2), (5, 4, 7), (9, 3, 5), (18, 6, 8)]:
            for top, own in ((high, True), (high + 1, False)):
                block = rng.integers(low, top, shape, dtype=dtype, endpoint=True)
                block.flat[0] = top  # the largest value present decides
                assert (pyramid.mean_accumulator(block) == np.dtype(dtype)) == own
                np.testing.assert_array_equal(pyramid.downsample(block), reference_mean(block),
                                              err_msg=f"{np.dtype(dtype)} {shape} {top}")


def test_integer_mean_of_slabs_summed_in_different_types_and_of_views():
    """Each SLAB of planes picks its own accumulator (one slab of small values in the block's
    type, the next wider), and a view with gaps (a block cut from a unit) is reduced as a
    copy of it would be: exact means every time."""
    rng = np.random.default_rng(9)
    for dtype in (np.uint16, np.int16, np.uint8):
        info = np.iinfo(dtype)
        unit = rng.integers(0, info.max // 8, (3 * pyramid.SLAB + 3, 20, 40), dtype=dtype,
                            endpoint=True)
        unit[pyramid.SLAB:2 * pyramid.SLAB] = info.max  # the second slab overflows the type
        assert pyramid.mean_accumulator(unit[:pyramid.SLAB]) == np.dtype(dtype)
        assert pyramid.mean_accumulator(unit[pyramid.SLAB:2 * pyramid.SLAB]) != np.dtype(dtype)
        for block in (unit, unit[:, 3:17, 10:29], unit[1:, ::2, 5:]):
            np.testing.assert_array_equal(pyramid.downsample(block), reference_mean(block),
                                          err_msg=f"{np.dtype(dtype)} {block.shape}")


# ------------------------------------------------------------ the plan --

@pytest.mark.parametrize("whole_rows", [False, True])
@pytest.mark.parametrize("block_size", [(32, 32, 32), (64, 64, 64), (16, 32, 24)])
def test_units_cover_whole_level2_blocks_within_budget(block_size, whole_rows):
    geometry = Geometry(333, 201, 97, *block_size[::-1])
    zb, yb, xb = block_size
    for method in pyramid.METHODS:
        reduction = pyramid.reduction_bytes(method, 2)
        for memory in (tight_memory(block_size, 2, method), 1 << 30):
            units = plan_units(geometry, 2, memory, reduction, whole_rows)
            if whole_rows and memory == 1 << 30:  # TIFF rows are read once, not once a unit
                assert all((x0, x1) == (0, geometry.shape[2]) for *_, x0, x1 in units)
            covered = np.zeros(geometry.shape, np.uint8)
            for z0, z1, y0, y1, x0, x1 in units:
                assert z0 % (2 * zb) == y0 % (2 * yb) == x0 % (2 * xb) == 0
                assert z1 - z0 <= 2 * zb and y1 - y0 <= 2 * yb
                assert (x1 - x0) % (2 * xb) == 0 or x1 == geometry.shape[2]
                blocks = -(-(z1 - z0) // zb) * -(-(y1 - y0) // yb) * -(-(x1 - x0) // xb)
                held = (WRITER_OVERHEAD + LEVEL2_OVERHEAD + 8 * zb * yb * xb * reduction
                        + REGION_COPIES * blocks * zb * yb * xb * 2)
                assert held <= memory
                covered[z0:z1, y0:y1, x0:x1] += 1
            assert (covered == 1).all()
    with pytest.raises(BlockfsError, match="too small .* and level 2 in the same pass"):
        blocks_in_budget(block_size, 2, tight_memory(block_size, 2, "mode") - 1,
                         pyramid.reduction_bytes("mode", 2))


def test_labels_of_floats_refused_before_anything_is_written(tmp_path):
    np.save(tmp_path / "f.npy", np.ones((8, 8, 8), np.float32))
    result = run_checked(write_command(0, tmp_path / "f.npy", tmp_path / "pyr", "--levels=2",
                                       "--labels"), expect_failure=True)
    assert "mode is for integer label volumes, not float32" in result.stderr
    assert not (tmp_path / "pyr").exists()


# ------------------------------------------------------------ resume --

def data_bytes(volume):
    """Bytes in the data files that a volume's directory file names (0 before it exists)."""
    if not volume.exists():
        return 0
    paths = [volume.parent / name for name in read_header(str(volume)).data_files]
    return sum(os.path.getsize(path) for path in paths if path.exists())


@pytest.mark.mpi
def test_resume_after_a_kill_during_the_pass(tmp_path):
    """SIGKILL of the whole job once level 1's data files have frames (at --level 7 the job
    has seconds left to run then), then --resume: the pyramid of an uninterrupted run."""
    shape, spec = (192, 384, 384), "synthetic:192x384x384"
    pyr = tmp_path / "pyr"
    command = write_command(2, spec, pyr, "--levels=3", "--level", "7", "--silent")
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True,  # frames on disk early, 256 KiB at a time
                           env=dict(os.environ, BLOCKFS_BUFFER_SIZE=str(256 << 10)))
    level1 = pyr / "1_1_1" / pyramid.DIRECTORY_NAME
    deadline = time.monotonic() + 60
    while data_bytes(level1) == 0:
        assert job.poll() is None, f"job ended before it could be killed: {job.communicate()}"
        assert time.monotonic() < deadline, "no data reached the data files in 60 s"
        time.sleep(0.05)
    kill_group(job.pid)
    job.communicate(timeout=60)
    assert job.returncode != 0
    result = run_checked(write_command(2, spec, pyr, "--levels=3", "--resume", "--silent"),
                         timeout=300)
    present = int(re.search(r"(\d+) blocks written, (\d+) already present", result.stderr)[2])
    assert 0 < present < 3 * 6 * 6, result.stderr
    expected = SyntheticVolume(shape)[:, :, :]
    for level in (1, 2, 3):
        got = Directory.open(pyramid.level_path(str(pyr), level))
        np.testing.assert_array_equal(got[:, :, :], expected, err_msg=f"level {level}")
        expected = reference_mean(expected)


def cut_data_files(volume, keep):
    """Truncate every data file of a volume to a fraction of its size: the frames beyond
    never reached the disk, as when a job is killed."""
    for path in Directory.open(str(volume)).block_filenames:
        os.truncate(path, int(os.path.getsize(path) * keep))


@pytest.mark.mpi
def test_resume_keeps_the_intact_level2_frames(tmp_path):
    """Level-2 frames that reached the disk were reduced from whole units: a resumed job keeps
    them (and level 1's) and writes the rest, with 2 ranks where the first job had 3."""
    voxels = microscopy_volume((75, 99, 131))
    np.save(tmp_path / "source.npy", voxels)
    args = [tmp_path / "source.npy", tmp_path / "pyr", "--levels=3", "--block-size=16",
            "--silent"]
    run_checked(write_command(3, *args))
    for level in (1, 2):
        cut_data_files(pyramid.level_path(str(tmp_path / "pyr"), level), 0.5)
    reads, stderr = counting_write(tmp_path / "pyr", 2, *args, "--resume")
    level2 = re.search(r"level 2: (\d+) blocks written, (\d+) already present", stderr)
    assert int(level2[1]) > 0 and int(level2[2]) > 0, stderr
    # level 3 from what the pass kept, and from the kept level-2 blocks, read once each
    assert reads[:3] == [0, int(level2[2]), 0]
    expected = two_pass(tmp_path / "two", voxels, (16, 16, 16), 3, "mean")
    assert_same_pyramid(tmp_path / "pyr", expected, 3)


def test_resume_remakes_a_level2_of_another_source(tmp_path):
    """A level 2 not started from level 1's source (level 1 was overwritten by itself) holds
    no block worth keeping: --resume makes it again from the source."""
    old, new = microscopy_volume((40, 50, 60), seed=1), microscopy_volume((40, 50, 60), seed=2)
    np.save(tmp_path / "old.npy", old)
    np.save(tmp_path / "new.npy", new)
    pyr = tmp_path / "pyr"
    run_checked(write_command(1, tmp_path / "old.npy", pyr, "--levels=2", "--block-size=16",
                              "--silent"))
    run_checked(write_command(1, tmp_path / "new.npy", pyramid.level_path(str(pyr), 1),
                              "--block-size=16", "--overwrite", "--silent"))
    result = run_checked(write_command(1, tmp_path / "new.npy", pyr, "--levels=2",
                                       "--block-size=16", "--resume"))
    assert "not started by blockfs-write --levels from this source" in result.stderr
    assert re.search(r"0 blocks written, \d+ already present; .* level 2: 8 blocks written, "
                     r"0 already present", result.stderr), result.stderr
    assert_same_pyramid(pyr, two_pass(tmp_path / "two", new, (16, 16, 16), 2, "mean"), 2)


@pytest.mark.mpi
def test_a_failure_above_level2_is_completed_by_resume(tmp_path):
    """When the levels above 2 fail (level 3 locked by another live process here) the job
    ends saying why, and --resume keeps every block of levels 1 and 2 and completes the
    pyramid."""
    voxels = microscopy_volume((80, 96, 112))
    np.save(tmp_path / "source.npy", voxels)
    pyr = tmp_path / "pyr"
    level3 = pyramid.level_path(str(pyr), 3)
    os.makedirs(os.path.dirname(level3))
    command = write_command(2, tmp_path / "source.npy", pyr, "--levels=3", "--block-size=16",
                            "--silent")
    with VolumeLock(level3):
        failed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert failed.returncode != 0 and f"{level3} is locked by" in failed.stderr, failed.stderr
    result = run_checked([*command, "--resume"], timeout=120)
    assert re.search(r"\b0 blocks written, 210 already present; .*level 2: 0 blocks written, "
                     r"36 already present", result.stderr), result.stderr
    assert_same_pyramid(pyr, two_pass(tmp_path / "two", voxels, (16, 16, 16), 3, "mean"), 3)


# ------------------------------------------------------------ memory --

@pytest.mark.mpi
def test_memory_stays_within_budget_with_levels(tmp_path):
    """As tests/test_write.py's memory test, with level 2 made in the same pass: 64 planes of
    4 MiB would take 256 MiB a rank; the budget is 160 MiB."""
    peaks, plane = peak_rss_of_write(tmp_path, tmp_path / "pyr", "--levels=3", "--memory",
                                     "160M", "--level", "1", "--silent")
    assert max(peaks) < 160 * 1024, f"peak RSS per rank {peaks} KiB exceeds the 160 MiB budget"
    level2 = Directory.open(pyramid.level_path(str(tmp_path / "pyr"), 2))
    np.testing.assert_array_equal(level2[31], reference_mean(plane[None].repeat(2, 0))[0])
    shutil.rmtree(tmp_path / "planes")
