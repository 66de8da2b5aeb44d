"""Pyramids: blockfs-downsample and blockfs-write --levels on 1 and 3 ranks, odd extents,
every voxel of every level against a numpy 2x2x2 mean/mode reference; the documented route
of a level-1 volume into a pyramid (blockfs-mv, blockfs-downsample --output), formats 1 and 2."""
import json
import sys

import numpy as np
import pytest

from blockfs_mpi import Directory, pyramid
from blockfs_mpi.errors import BlockfsError
from blockfs_mpi.geometry import Geometry
from blockfs_mpi.options import voxel_size_option
from blockfs_mpi.reader import BlockReader, read_header
from conftest import microscopy_volume, mpiexec, run_checked, write_array
from volumes import format1_volume

pytestmark = pytest.mark.timeout(300)


def groups_of(a):
    """(values, present) of shape (z', y', x', 8): each 2x2x2 group, padded at odd edges."""
    padded = [(0, n % 2) for n in a.shape]
    values = np.pad(a, padded).reshape(a.shape[0] // 2 + a.shape[0] % 2, 2,
                                       a.shape[1] // 2 + a.shape[1] % 2, 2,
                                       a.shape[2] // 2 + a.shape[2] % 2, 2)
    present = np.pad(np.ones(a.shape, bool), padded).reshape(values.shape)
    order = (0, 2, 4, 1, 3, 5)
    shape = values.shape[0::2] + (8,)
    return values.transpose(order).reshape(shape), present.transpose(order).reshape(shape)


def reference_mean(a):
    values, present = groups_of(a)
    return (np.where(present, values, 0).sum(-1, dtype=np.int64) // present.sum(-1)).astype(a.dtype)


def reference_mode(a):
    values, present = groups_of(a)
    out = np.empty(values.shape[:3], a.dtype)
    for index in np.ndindex(out.shape):
        labels, counts = np.unique(values[index][present[index]], return_counts=True)
        out[index] = labels[np.argmax(counts)]  # unique sorts: the smallest label wins ties
    return out


def write_level1(dest, voxels, block=16):
    path = pyramid.level_path(str(dest), 1)
    (dest / "1_1_1").mkdir(parents=True)
    return write_array(path, voxels, block)


def check_pyramid(dest, voxels, levels, reference, voxel_size=(1, 1, 1)):
    """Every level equals the reference made from the level below; the info describes them."""
    info = json.loads((dest / "info").read_text())
    assert info["data_type"] == voxels.dtype.name and info["num_channels"] == 1
    assert [s["key"] for s in info["scales"]] == [pyramid.scale_key(n) for n in range(1, levels + 1)]
    expected = voxels
    for level, scale in enumerate(info["scales"], 1):
        got = Directory.open(pyramid.level_path(str(dest), level))[:, :, :]
        np.testing.assert_array_equal(got, expected, err_msg=f"level {level}")
        assert scale["size"] == list(expected.shape[::-1])
        assert scale["resolution"] == [v * 2 ** (level - 1) for v in voxel_size]
        assert scale["encoding"] == "raw" and scale["voxel_offset"] == [0, 0, 0]
        assert scale["chunk_sizes"] == [[16, 16, 16]]
        expected = reference(expected)
    return info


@pytest.mark.parametrize("ranks", [1, 3])
def test_downsample_mean_under_mpiexec(tmp_path, ranks):
    voxels = microscopy_volume((37, 45, 51))
    path = write_level1(tmp_path / "vol", voxels)
    run_checked([mpiexec(), "-n", str(ranks), sys.executable, "-m", "blockfs_mpi.downsample",
                 path, "--levels=5", "--voxel-size=1800,1800,2000", "--silent"])
    info = check_pyramid(tmp_path / "vol", voxels, 5, reference_mean, (1800, 1800, 2000))
    assert info["type"] == "image"
    assert info["scales"][-1]["size"] == [4, 3, 3]


@pytest.mark.parametrize("ranks", [1, 3])
def test_downsample_mode_of_labels(tmp_path, ranks):
    labels = np.random.default_rng(ranks).integers(0, 4, (23, 34, 19)).astype(np.uint32)
    path = write_level1(tmp_path / "labels", labels)
    run_checked([mpiexec(), "-n", str(ranks), sys.executable, "-m", "blockfs_mpi.downsample",
                 path, "--levels=3", "--labels", "--silent"])
    info = check_pyramid(tmp_path / "labels", labels, 3, reference_mode)
    assert info["type"] == "segmentation"


@pytest.mark.parametrize("ranks", [1, 3])
def test_write_with_levels(tmp_path, ranks):
    source = tmp_path / "source.npy"
    voxels = microscopy_volume((33, 40, 47))
    np.save(source, voxels)
    run_checked([mpiexec(), "-n", str(ranks), sys.executable, "-m", "blockfs_mpi.write",
                 str(source), str(tmp_path / "pyr"), "--levels=3", "--block-size=16",
                 "--voxel-size=2,2,5", "--silent"])
    check_pyramid(tmp_path / "pyr", voxels, 3, reference_mean, (2, 2, 5))


def test_each_block_below_is_read_once(tmp_path, monkeypatch):
    """A new level reads the level below exactly once, 2x2x2 blocks at a time."""
    voxels = microscopy_volume((37, 45, 51))
    write_level1(tmp_path / "vol", voxels)
    reads = []
    original = BlockReader.read
    monkeypatch.setattr(BlockReader, "read",
                        lambda self, number, shape: reads.append((self.path, number))
                        or original(self, number, shape))
    pyramid.build(str(tmp_path / "vol"), 2, silent=True)
    below = Directory.open(pyramid.level_path(str(tmp_path / "vol"), 1)).geometry
    level1_reads = [r for r in reads if r[0].endswith("1_1_1/precomputed.blockfs")]
    assert sorted(n for _, n in level1_reads) == list(range(below.n_blocks))


def test_downsample_edge_cases():
    np.testing.assert_array_equal(pyramid.downsample(np.array([[[1, 2, 7]]], np.uint8)),
                                  [[[1, 7]]])
    np.testing.assert_array_equal(pyramid.downsample(np.array([[[5, 5, 3]]], np.uint8), "mode"),
                                  [[[5, 3]]])
    np.testing.assert_array_equal(pyramid.downsample(np.array([[[-3, -4]]], np.int16)), [[[-4]]])
    ties = np.arange(8, dtype=np.uint64).reshape(2, 2, 2)[::-1]
    assert pyramid.downsample(ties, "mode").item() == 0


def test_refusals(tmp_path):
    write_level1(tmp_path / "vol", microscopy_volume((20, 20, 20)))
    pyramid.build(str(tmp_path / "vol"), 2, silent=True)
    with pytest.raises(BlockfsError, match="exists"):
        pyramid.build(str(tmp_path / "vol"), 2, silent=True)
    with pytest.raises(BlockfsError, match="unknown downsampling method"):
        pyramid.build(str(tmp_path / "vol"), 2, method="median", overwrite=True)
    write_level1(tmp_path / "float", np.ones((5, 5, 5), np.float32))
    with pytest.raises(BlockfsError, match="mode is for integer"):
        pyramid.build(str(tmp_path / "float"), 2, method="mode")
    with pytest.raises(BlockfsError, match="level 1"):
        pyramid.pyramid_folder(str(tmp_path / "elsewhere.blockfs"))
    with pytest.raises(BlockfsError, match="voxel-size"):
        voxel_size_option("1,2", None)
    run_checked([sys.executable, "-m", "blockfs_mpi.downsample",
                 str(tmp_path / "vol" / "1_1_1" / "precomputed.blockfs"), "--levels=2"],
                expect_failure=True)


# --------------------------------------- the documented route (issue 15) --

def level1_volume(kind, path):
    """A volume of format 1 (as the original blockfs writes it) or 2, 16^3 blocks, odd
    extents; returns its voxels."""
    if kind == "format1":
        return format1_volume(path, shape=(37, 45, 51), block=16)
    voxels = microscopy_volume((37, 45, 51))
    write_array(path, voxels, block=16)
    return voxels


def downsample(ranks, *args):
    return run_checked([mpiexec(), "-n", str(ranks), sys.executable, "-m",
                        "blockfs_mpi.downsample", *map(str, args), "--levels=3", "--silent"])


def assert_level1(pyr, kind):
    """Level 1 kept its format, its data files named after its new directory file."""
    path = pyramid.level_path(str(pyr), 1)
    header = read_header(path)
    names = [f"{pyramid.DIRECTORY_NAME}.{i}" for i in range(len(header.data_files))]
    assert header.version == (1 if kind == "format1" else 2)
    assert header.data_files == (names if kind == "format2"
                                 else [str(pyr / "1_1_1" / name) for name in names])


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_mv_into_a_pyramid_then_downsample(tmp_path, kind, ranks):
    """docs/neuroglancer.md: blockfs-mv /data/l1.blockfs /data/pyr/1_1_1/precomputed.blockfs,
    then blockfs-downsample /data/pyr/1_1_1/precomputed.blockfs; every voxel of every level."""
    source = tmp_path / "l1.blockfs"
    voxels = level1_volume(kind, source)
    (tmp_path / "pyr").mkdir()
    level1 = tmp_path / "pyr" / "1_1_1" / pyramid.DIRECTORY_NAME
    run_checked([mpiexec(), "-n", str(ranks), sys.executable, "-m", "blockfs_mpi.mv",
                 str(source), str(level1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pyr"]  # the source's files are gone
    assert_level1(tmp_path / "pyr", kind)
    downsample(ranks, level1)
    check_pyramid(tmp_path / "pyr", voxels, 3, reference_mean)


@pytest.mark.parametrize("kind,ranks,move", [("format1", 1, False), ("format1", 2, True),
                                             ("format2", 1, True), ("format2", 2, False)])
def test_downsample_any_volume_with_output(tmp_path, kind, ranks, move):
    """blockfs-downsample /data/l1.blockfs --output /data/pyr [--move]: the volume is copied
    (or moved) to pyr/1_1_1/precomputed.blockfs (pyr created), then the levels are made."""
    source = tmp_path / "l1.blockfs"
    voxels = level1_volume(kind, source)
    files = sorted(tmp_path.iterdir())
    result = downsample(ranks, source, "--output", tmp_path / "pyr", *(["--move"] if move else []))
    assert "piece/s" not in result.stderr  # --silent: no progress bar for the copy either
    left = sorted(p for p in tmp_path.iterdir() if p.name != "pyr")
    assert left == ([] if move else files)
    if not move:
        np.testing.assert_array_equal(Directory.open(str(source))[:, :, :], voxels)
    assert_level1(tmp_path / "pyr", kind)
    check_pyramid(tmp_path / "pyr", voxels, 3, reference_mean)


def test_output_refusals_move_nothing(tmp_path):
    """An existing level without --overwrite is refused before the volume moves; a volume
    that is the level 1 already stays where it is."""
    source = tmp_path / "l1.blockfs"
    voxels = level1_volume("format2", source)
    pyr = tmp_path / "pyr"
    (pyr / "2_2_2").mkdir(parents=True)
    write_array(pyramid.level_path(str(pyr), 2), np.zeros((3, 3, 3), np.uint16))  # an old one
    with pytest.raises(BlockfsError, match=r"2_2_2/precomputed.blockfs exists; pass --overwrite"):
        pyramid.place_level1(str(source), str(pyr), 2, move=True)
    assert source.exists() and not (pyr / "1_1_1").exists()
    level1 = pyramid.place_level1(str(source), str(pyr), 2, move=True, overwrite=True)
    assert level1 == pyramid.level_path(str(pyr), 1) and not source.exists()
    assert pyramid.place_level1(level1, str(pyr), 2, move=True) == level1  # in place already
    pyramid.build(str(pyr), 2, overwrite=True, silent=True)
    check_pyramid(pyr, voxels, 2, reference_mean)
    result = run_checked([sys.executable, "-m", "blockfs_mpi.downsample", level1, "--levels=2",
                          "--move"], expect_failure=True)
    assert "--move needs --output <pyramid folder>" in result.stderr


@pytest.mark.mpi
def test_small_levels_are_written_by_fewer_ranks(tmp_path):
    """A level is written by as many ranks as have MIN_BLOCKS_PER_RANK blocks each, so the
    small top levels of a big job make a few data files, not one per rank: on 3 ranks, level 2
    (128 blocks) by 2, levels 3 and 4 (16 and 2 blocks) by 1; every voxel still right."""
    assert pyramid.MIN_BLOCKS_PER_RANK == 64
    voxels = microscopy_volume((128, 128, 256))
    path = write_level1(tmp_path / "vol", voxels)
    run_checked([mpiexec(), "-n", "3", sys.executable, "-m", "blockfs_mpi.downsample",
                 path, "--levels=4", "--silent"], timeout=240)
    check_pyramid(tmp_path / "vol", voxels, 4, reference_mean)
    files = [len(read_header(pyramid.level_path(str(tmp_path / "vol"), level)).data_files)
             for level in (2, 3, 4)]
    assert files == [2, 1, 1]


@pytest.mark.mpi
def test_a_writer_rank_failing_on_a_small_level_ends_the_job(tmp_path):
    """A damaged block of level 1 fails the one rank that writes level 2 (8 blocks; the
    others wait outside its communicator): the job ends with its message naming the block."""
    voxels = microscopy_volume((64, 64, 64))
    path = write_level1(tmp_path / "vol", voxels)
    reader = BlockReader(path)
    file_number, offset, size = reader.entry(0)
    with open(reader.data_paths[file_number], "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = run_checked([mpiexec(), "-n", "3", sys.executable, "-m", "blockfs_mpi.downsample",
                          path, "--levels=2", "--silent"], expect_failure=True, timeout=60)
    assert "[rank 0] error:" in result.stderr and "block 0" in result.stderr, result.stderr


def test_which_levels_are_made_in_memory():
    """A level is made in rank 0's memory when it has at most MIN_BLOCKS_PER_RANK blocks and
    TOP_LEVEL_BYTES of voxels: wide voxels or large blocks keep a level of few blocks out."""
    assert pyramid.TOP_LEVEL_BYTES == 256 << 20
    level = Geometry(256, 256, 256)  # 4 x 4 x 4 blocks of 64^3
    assert level.block_count == pyramid.MIN_BLOCKS_PER_RANK and pyramid.in_memory(level, 8)
    assert not pyramid.in_memory(Geometry(256, 256, 257), 1)  # 80 blocks
    large = Geometry(512, 512, 512, 128, 128, 128)  # 64 blocks of 128^3
    assert pyramid.in_memory(large, 2) and not pyramid.in_memory(large, 4)  # 256, 512 MiB
