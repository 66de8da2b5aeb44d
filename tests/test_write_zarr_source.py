"""blockfs-write from a zarr v3 source whose chunks are the new volume's blocks with its own
codecs copies each interior block's stored chunk as the block's payload (zarr_chunks): the
reverse of blockfs2zarr. Real files and real programs, under mpiexec too."""
import math
import os
import sys

import numpy as np
import pytest

from blockfs_mpi import Directory, pyramid, zarr_export
from blockfs_mpi.convert import amount
from blockfs_mpi.reader import BlockReader
from blockfs_mpi.zarr_metadata import chunk_key
from blockfs_mpi.zarr_shards import ABSENT, ShardGrid
from conftest import microscopy_volume, mpiexec, run_checked
from test_blockfs2zarr import make_volume, shard_index
from test_pyramid import reference_mean

CODEC = dict(compression="zstd", compression_level=1)  # blockfs-write's defaults
OPTIONS = ("--compression", "zstd", "--level", 1, "--silent")


def write_program(*args, n=0, expect_failure=False):
    """blockfs-write on n ranks under mpiexec (n=0: plain python, writer processes)."""
    command = [sys.executable, "-m", "blockfs_mpi.write", *map(str, args)]
    if n:
        command = [mpiexec(), "-n", str(n), *command]
    return run_checked(command, expect_failure=expect_failure)


def interior(path):
    """Numbers of the blocks of the volume at path not cut by its edge."""
    with Directory.open(str(path)) as volume:
        g = volume.geometry
        return [g.block_number(x, y, z) for x, y, z in g.block_origins()
                if g.block_shape(x, y, z) == g.block_size]


def payloads(path, numbers):
    reader = BlockReader(str(path))
    return {n: bytes(reader.payload(n)) for n in numbers}


CASES = [  # shape (z, y, x), block edge, dtype, --shard
    ((70, 100, 130), 32, np.uint16, 2),
    ((64, 128, 64), 64, np.uint8, 1),
    ((130, 70, 150), 64, np.uint16, 2),
]


@pytest.mark.mpi
@pytest.mark.parametrize("shape, block, dtype, shard", CASES)
@pytest.mark.parametrize("n", [0, 1, 2])
def test_round_trip_copies_interior_blocks_as_stored(tmp_path, shape, block, dtype, shard, n):
    """blockfs -> blockfs2zarr -> blockfs-write: the original voxels, and (plain or under MPI) each
    interior block's payload byte for byte the original's; the summary counts them, and its
    bytes in are the voxels' as on the decode path. Blocks never written (absent chunks)
    and edge blocks are read as voxels."""
    voxels = microscopy_volume(shape, dtype=dtype)
    original, expected = make_volume(tmp_path / "a.blockfs", voxels, (block,) * 3, skip={0},
                                     **CODEC)
    image = tmp_path / "a.ome.zarr"
    zarr_export.export_zarr(str(original), str(image), shard, n_workers=1, silent=True)
    result = write_program(image, tmp_path / "b.blockfs", "--block-size", block, *OPTIONS, n=n)
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "b.blockfs"))[:], expected)
    copied = [number for number in interior(original) if number != 0]
    assert "copying matching inner chunks as stored" in result.stderr
    assert f"({len(copied)} copied as stored)" in result.stderr
    assert f"{amount(voxels.nbytes)} in" in result.stderr
    assert payloads(tmp_path / "b.blockfs", copied) == payloads(original, copied)


@pytest.mark.mpi
def test_another_codec_is_decoded(tmp_path):
    """With another --level the chunks are not the volume's payloads: decoded as before."""
    voxels = microscopy_volume((70, 100, 130))
    original, _ = make_volume(tmp_path / "a.blockfs", voxels, (32, 32, 32), **CODEC)
    image = tmp_path / "a.ome.zarr"
    zarr_export.export_zarr(str(original), str(image), 2, n_workers=1, silent=True)
    result = write_program(image, tmp_path / "b.blockfs", "--block-size", 32, "--level", 3,
                           "--silent", n=2)
    assert "copied as stored" not in result.stderr
    assert "copying" not in result.stderr
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "b.blockfs"))[:], voxels)
    result = write_program(image, tmp_path / "c.blockfs", "--block-size", 16, *OPTIONS)
    assert "copying" not in result.stderr  # another block shape
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "c.blockfs"))[:], voxels)


@pytest.mark.mpi
def test_a_pyramid_reads_voxels(tmp_path):
    """With --levels, level 2 is reduced from each unit's voxels in the same pass: every
    block is read as voxels, and both levels are right."""
    voxels = microscopy_volume((70, 100, 130))
    original, _ = make_volume(tmp_path / "a.blockfs", voxels, (32, 32, 32), **CODEC)
    image = tmp_path / "a.ome.zarr"
    zarr_export.export_zarr(str(original), str(image), 2, n_workers=1, silent=True)
    result = write_program(image, tmp_path / "pyr", "--block-size", 32, "--levels", 2,
                           *OPTIONS, n=2)
    assert "copying" not in result.stderr and "copied as stored" not in result.stderr
    level1 = Directory.open(pyramid.level_path(str(tmp_path / "pyr"), 1))
    level2 = Directory.open(pyramid.level_path(str(tmp_path / "pyr"), 2))
    np.testing.assert_array_equal(level1[:], voxels)
    np.testing.assert_array_equal(level2[:], reference_mean(voxels))


@pytest.mark.mpi
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_an_unsharded_zarr_python_array_is_copied(tmp_path, dtype):
    """A zarr v3 array of zarr-python with blosc zstd 1 byte shuffle and 32^3 chunks: each
    interior block is its chunk file as it is."""
    zarr = pytest.importorskip("zarr")
    voxels = microscopy_volume((40, 96, 70), dtype=dtype)
    path = tmp_path / "a.zarr"
    compressor = zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="shuffle",
                                        typesize=voxels.dtype.itemsize)
    zarr.create_array(str(path), shape=voxels.shape, dtype=voxels.dtype, chunks=(32, 32, 32),
                      compressors=compressor)[:] = voxels
    result = write_program(path, tmp_path / "b.blockfs", "--block-size", 32, *OPTIONS, n=1)
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "b.blockfs"))[:], voxels)
    assert "(6 copied as stored)" in result.stderr  # 1 x 3 x 2 interior blocks
    with Directory.open(str(tmp_path / "b.blockfs")) as volume:
        number = volume.geometry.block_number(32, 64, 0)
    with open(path / chunk_key((0, 2, 1)), "rb") as f:
        assert payloads(tmp_path / "b.blockfs", [number])[number] == f.read()


def exported_shard(tmp_path, shape):
    """A volume of shape in 32^3 blocks exported as a.ome.zarr with shards of 2^3 blocks:
    the image, its first shard's path and that shard's index (offset, size per chunk)."""
    voxels = microscopy_volume(shape)
    original, _ = make_volume(tmp_path / "a.blockfs", voxels, (32, 32, 32), **CODEC)
    image = tmp_path / "a.ome.zarr"
    zarr_export.export_zarr(str(original), str(image), 2, n_workers=1, silent=True)
    shard = image / "0" / "c" / "0" / "0" / "0"
    with Directory.open(str(original)) as volume:
        return image, shard, shard_index(shard, ShardGrid(volume.geometry, 2))


@pytest.mark.mpi
@pytest.mark.parametrize("n", [0, 2])
def test_a_damaged_chunk_is_named(tmp_path, n):
    """An inner chunk whose Blosc header announces another size ends the job naming its
    shard file and block. (The block is one that the fingerprint's sampled regions miss:
    they are read as voxels, by TensorStore.)"""
    image, shard, index = exported_shard(tmp_path, (160, 64, 64))
    offset = int(index[4][0])  # block (z, y, x) = (1, 0, 0)
    assert offset != ABSENT
    with open(shard, "r+b") as f:
        f.seek(offset + 4)  # the Blosc header's nbytes
        f.write((math.prod((32, 32, 32)) * 2 + 2).to_bytes(4, "little"))
    result = write_program(image, tmp_path / "b.blockfs", "--block-size", 32, *OPTIONS, n=n,
                           expect_failure=True)
    assert f"{os.path.join(str(image), '0', 'c/0/0/0')}: the chunk of block (z, y, x) " \
           f"(1, 0, 0) is damaged" in result.stderr


@pytest.mark.mpi
def test_a_damaged_chunk_read_as_voxels_is_named(tmp_path):
    """A chunk the reader decodes (block 0, in the regions the resume fingerprint samples)
    whose Blosc data is damaged ends the job naming the array and the region."""
    image, shard, index = exported_shard(tmp_path, (64, 64, 64))
    offset, size = (int(n) for n in index[0])
    with open(shard, "r+b") as f:
        f.seek(offset + 16)  # past the Blosc header: the compressed data
        f.write(bytes(size - 16))
    result = write_program(image, tmp_path / "b.blockfs", "--block-size", 16, *OPTIONS, n=2,
                           expect_failure=True)
    assert f"{image / '0'}: cannot read z 0:" in result.stderr, result.stderr
