"""The zarr v3 / OME-Zarr 0.5 view of volumes and pyramids, read by zarr-python 3 in place.

Every voxel of volumes of several shapes (none a multiple of its blocks), block shapes, dtypes
and codecs, formats 1 and 2, read through zarr and dask.array.from_zarr as Directory reads
it; interior chunks are the stored payloads, edge chunks padded; absent and damaged blocks;
byte ranges and listings; OME metadata validated by ome-zarr-models; a view keeps reading
its commit while an MPI job commits a new one.
"""
import asyncio
import json
import os
import shutil

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.core.buffer import default_buffer_prototype  # noqa: E402

from blockfs_mpi import CorruptBlockError, Directory, open_zarr, pyramid  # noqa: E402
from blockfs_mpi.compression import Compression, numcodecs_blosc  # noqa: E402
from blockfs_mpi.reader import BlockReader  # noqa: E402
from blockfs_mpi.zarr_store import BlockfsStore  # noqa: E402
from blockfs_mpi.zarr_view import EdgeChunks  # noqa: E402
from conftest import FORMAT1_FIXTURE, microscopy_volume, run_mpi  # noqa: E402
from test_blockfs2zarr import make_volume  # noqa: E402
from test_format import as_written, write_format1  # noqa: E402


def same_as_directory(path, expected):
    """zarr-python and dask over the view read exactly what Directory reads (= expected)."""
    array = open_zarr(str(path))
    directory = Directory.open(str(path))
    assert isinstance(array, zarr.Array) and array.metadata.zarr_format == 3
    assert (array.shape, array.chunks) == (directory.shape, directory.block_size)
    assert array.dtype == directory.dtype.newbyteorder("<")  # zarr reads big-endian as native
    np.testing.assert_array_equal(directory[...], expected)
    np.testing.assert_array_equal(array[...], expected)
    z, y, x = expected.shape
    np.testing.assert_array_equal(array[z // 3:, 1:y - 1, x // 2], expected[z // 3:, 1:y - 1,
                                                                           x // 2])
    da = pytest.importorskip("dask.array")
    lazy = da.from_zarr(array)
    assert lazy.chunksize == directory.block_size
    np.testing.assert_array_equal(lazy.compute(), expected)
    return array


@pytest.mark.parametrize("shape, block, dtype, options", [
    ((37, 45, 51), (16, 16, 16), np.uint16, {}),
    ((20, 33, 70), (8, 16, 32), np.uint8, dict(compression="lz4", compression_level=5,
                                               shuffle="bit")),
    ((9, 50, 17), (4, 32, 8), np.float32, dict(compression="zlib", compression_level=9,
                                               shuffle="none")),
    ((33, 17, 40), (32, 16, 8), np.int32, dict(compression="blosclz", compression_level=3)),
    ((64, 32, 32), (16, 16, 16), ">u2", dict(compression="lz4hc", compression_level=1)),
])
def test_format2_volumes_read_identically(tmp_path, shape, block, dtype, options):
    voxels = microscopy_volume(shape, dtype=np.dtype(dtype))
    if np.dtype(dtype).kind == "f":
        voxels = voxels / 7
    path, expected = make_volume(tmp_path / "v.blockfs", voxels.astype(dtype), block,
                                 skip={1, 5}, **options)
    array = same_as_directory(path, expected)
    assert array.metadata.dimension_names == ("z", "y", "x")
    assert array.fill_value == 0


def test_real_format1_volume(format1_copy):
    expected = np.load(format1_copy / "fixture-voxels.npz")["voxels"]
    array = same_as_directory(format1_copy / "fixture.blockfs", expected)
    assert array.attrs["VoxelSize"] == [1.8, 1.8, 2.0]  # the volume's application metadata


@pytest.mark.parametrize("block, compression, level", [((16, 16, 16), Compression.zstd, 3),
                                                      ((8, 16, 24), Compression.lz4, 1)])
def test_format1_volumes(tmp_path, block, compression, level):
    voxels = microscopy_volume((30, 41, 50))
    geometry = write_format1(tmp_path / "f1.blockfs", voxels, block, 3, compression, level)
    same_as_directory(tmp_path / "f1.blockfs", as_written(voxels, geometry))


# ------------------------------------------------------------------ the chunks themselves --

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 20 x 20 x 20 uint16 volume in 8^3 blocks, block 1 (x 8, y 0, z 0) never written."""
    folder = tmp_path_factory.mktemp("small")
    path, expected = make_volume(folder / "small.blockfs", microscopy_volume((20, 20, 20)),
                                 (8, 8, 8), skip={1})
    return str(path), expected


def get(store, key, request=None):
    buffer = asyncio.run(store.get(key, default_buffer_prototype(), request))
    return None if buffer is None else buffer.to_bytes()


def test_interior_chunks_are_the_stored_payloads(small):
    path, _ = small
    store = BlockfsStore.open_path(path)
    reader = BlockReader(path)
    assert get(store, "c/0/0/0") == bytes(reader.payload(0))
    assert get(store, "c/1/1/0") == bytes(reader.payload(reader.header.geometry.block_number(
        0, 8, 8)))


def test_edge_chunks_are_padded_with_zeros(small):
    path, expected = small
    store = BlockfsStore.open_path(path)
    chunk = np.frombuffer(numcodecs_blosc().Blosc().decode(get(store, "c/2/0/1")), "<u2")
    chunk = chunk.reshape(8, 8, 8)
    np.testing.assert_array_equal(chunk[:4], expected[16:20, 0:8, 8:16])
    assert not chunk[4:].any()
    assert get(store, "c/2/0/1") == get(store, "c/2/0/1")  # from the cache the second time


def test_absent_keys(small):
    path, expected = small
    store = BlockfsStore.open_path(path)
    for key in ("c/0/0/1", "c/3/0/0", "c/0/0/0/0", "c/0/0", "c/-1/0/0", "c/a/0/0", "0/zarr.json",
                "zarr.json/x", "", "c/00/0/0x"):
        assert get(store, key) is None, key
        assert not asyncio.run(store.exists(key)), key
    assert asyncio.run(store.exists("c/0/0/0")) and asyncio.run(store.exists("zarr.json"))
    assert not open_zarr(path)[0:8, 0:8, 8:16].any()  # never written: zarr's fill value


def test_byte_ranges(small):
    path, _ = small
    store = BlockfsStore.open_path(path)
    whole = get(store, "c/0/1/1")
    assert get(store, "c/0/1/1", RangeByteRequest(3, 40)) == whole[3:40]
    assert get(store, "c/0/1/1", OffsetByteRequest(100)) == whole[100:]
    assert get(store, "c/0/1/1", SuffixByteRequest(16)) == whole[-16:]
    parts = asyncio.run(store.get_partial_values(
        default_buffer_prototype(), [("zarr.json", RangeByteRequest(0, 10)), ("c/0/0/1", None),
                                     ("c/0/0/0", SuffixByteRequest(4))]))
    assert parts[0].to_bytes() == get(store, "zarr.json")[:10] and parts[1] is None
    assert parts[2].to_bytes() == get(store, "c/0/0/0")[-4:]


def listed(iterator):
    async def collect():
        return [key async for key in iterator]
    return sorted(asyncio.run(collect()))


def test_listing(small):
    path, _ = small
    store = BlockfsStore.open_path(path)
    chunks = [f"c/{z}/{y}/{x}" for z in range(3) for y in range(3) for x in range(3)]
    chunks.remove("c/0/0/1")
    assert listed(store.list()) == sorted(["zarr.json"] + chunks)
    assert listed(store.list_prefix("c/2/")) == sorted(k for k in chunks if k.startswith("c/2/"))
    assert listed(store.list_dir("")) == ["c", "zarr.json"]
    assert listed(store.list_dir("c/0")) == ["0", "1", "2"]
    assert listed(store.list_dir("c/0/0/")) == ["0", "2"]


def test_read_only(small):
    store = BlockfsStore.open_path(small[0])
    buffer = default_buffer_prototype().buffer.from_bytes(b"x")
    with pytest.raises(ValueError):
        asyncio.run(store.set("c/0/0/0", buffer))
    with pytest.raises(ValueError):
        asyncio.run(store.delete("c/0/0/0"))
    with pytest.raises(ValueError):
        open_zarr(small[0])[0, 0, 0] = 1


def test_a_damaged_block_raises_the_checksum_error(small, tmp_path):
    shutil.copytree(os.path.dirname(small[0]), tmp_path / "copy")
    path, expected = str(tmp_path / "copy" / "small.blockfs"), small[1]
    reader = BlockReader(path)
    file_number, offset, size = reader.entry(0)
    reader.close()
    with open(reader.data_paths[file_number], "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    array = open_zarr(path)
    with pytest.raises(CorruptBlockError, match="block 0 .*checksum mismatch"):
        array[0:8, 0:8, 0:8]
    np.testing.assert_array_equal(array[8:, 8:, 8:], expected[8:, 8:, 8:])  # the rest reads


def test_edge_cache_is_bounded():
    cache = EdgeChunks(100)
    for number in range(10):
        cache.put(number, bytes(30))
    assert cache.size == 90 and cache.get(6) is None and cache.get(9) is not None
    cache.put(99, bytes(101))  # larger than the whole cache: not kept
    assert cache.get(99) is None


# ------------------------------------------------------------------------------- pyramids --

def validate(group):
    image = pytest.importorskip("ome_zarr_models.v05.image")
    return image.Image.from_zarr(group)


def test_pyramid_is_an_ome_zarr_image(tmp_path):
    voxels = microscopy_volume((37, 45, 51))
    folder = tmp_path / "brain"
    level1 = pyramid.level_path(str(folder), 1)
    os.makedirs(os.path.dirname(level1))
    make_volume(level1, voxels, (16, 16, 8), metadata={"VoxelSize": [0.5, 0.5, 2.0],
                                                       "VoxelSizeUnit": "micrometer"})
    pyramid.build(str(folder), 3, (500, 500, 2000), silent=True)
    group = open_zarr(str(folder))
    assert isinstance(group, zarr.Group) and sorted(group.array_keys()) == ["0", "1", "2"]
    multiscale = validate(group).ome_attributes.multiscales[0]
    assert [axis.name for axis in multiscale.axes] == ["z", "y", "x"]
    assert {axis.unit for axis in multiscale.axes} == {"micrometer"}
    scales = [d.coordinateTransformations[0].scale for d in multiscale.datasets]
    assert scales == [[2.0, 0.5, 0.5], [4.0, 1.0, 1.0], [8.0, 2.0, 2.0]]
    assert multiscale.type == "mean" and multiscale.name == "brain"
    for level in range(3):
        expected = Directory.open(pyramid.level_path(str(folder), level + 1))[...]
        np.testing.assert_array_equal(group[str(level)][...], expected)


def test_format1_pyramid_and_its_info_voxel_size(tmp_path):
    """precomputed-tif's layout around the original blockfs's volume; its VoxelSize has no
    unit (micrometres); without one, the info's resolution (nm); without either, 1 um."""
    folder = tmp_path / "tif"
    (folder / "1_1_1").mkdir(parents=True)
    for source in FORMAT1_FIXTURE.glob("fixture.blockfs.*"):
        shutil.copy(source, folder / "1_1_1" / source.name)
    shutil.copy(FORMAT1_FIXTURE / "fixture.blockfs", folder / "1_1_1" / "precomputed.blockfs")
    info = {"type": "segmentation", "scales": [{"key": "1_1_1", "resolution": [3, 3, 7]}]}
    (folder / "info").write_text(json.dumps(info))
    group = open_zarr(str(folder))
    multiscale = validate(group).ome_attributes.multiscales[0]
    assert multiscale.datasets[0].coordinateTransformations[0].scale == [2.0, 1.8, 1.8]
    assert multiscale.axes[0].unit == "micrometer" and multiscale.type == "mode"
    np.testing.assert_array_equal(group["0"][...],
                                  np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"])

    unrecorded = tmp_path / "unrecorded"
    level1 = pyramid.level_path(str(unrecorded), 1)
    os.makedirs(os.path.dirname(level1))
    make_volume(level1, microscopy_volume((10, 10, 10)), (8, 8, 8))
    (unrecorded / "info").write_text(json.dumps(info))
    multiscale = validate(open_zarr(str(unrecorded))).ome_attributes.multiscales[0]
    assert multiscale.datasets[0].coordinateTransformations[0].scale == [7, 3, 3]
    assert multiscale.axes[0].unit == "nanometer"
    os.remove(unrecorded / "info")
    multiscale = validate(open_zarr(str(unrecorded))).ome_attributes.multiscales[0]
    assert multiscale.datasets[0].coordinateTransformations[0].scale == [1, 1, 1]
    assert multiscale.axes[0].unit == "micrometer" and multiscale.type == "mean"


def test_not_a_volume(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.txt").write_text("hello")
    for path in (tmp_path / "empty", tmp_path / "text.txt", tmp_path / "nothing"):
        with pytest.raises(Exception, match=str(path.name)):
            open_zarr(str(path))


# ----------------------------------------------------------------------- commits in place --

@pytest.mark.mpi
@pytest.mark.parametrize("how", ["replace", "resume"])
def test_a_view_keeps_reading_its_commit(tmp_path, how):
    """A view opened before a 2-rank job replaces the volume (or resumes it, adding the
    blocks it lacked) reads the old commit throughout; a view opened after reads the new."""
    path = tmp_path / "volume.blockfs"
    old = np.full((40, 40, 40), 1, np.uint16)
    _, old = make_volume(path, old, (16, 16, 16), skip={0, 4, 8})
    view = open_zarr(str(path))
    run_mpi(2, "rewrite_volume.py", tmp_path, "volume.blockfs", how)
    np.testing.assert_array_equal(view[...], old)
    new = Directory.open(str(path))[...]
    assert (new == 0).sum() == 0 and (new == 2).any()
    np.testing.assert_array_equal(open_zarr(str(path))[...], new)
    if how == "replace":
        assert not os.path.exists(f"{path}.0")  # the old data files are gone: read by descriptor
