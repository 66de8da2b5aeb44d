"""Format 1 (the original blockfs) and format 2 directory files, byte by byte."""
import json
import struct

import numpy as np
import pytest

from blockfs_mpi import Compression, Directory, FormatError
from blockfs_mpi import format as fmt
from blockfs_mpi.compression import numcodecs_blosc
from blockfs_mpi.geometry import Geometry
from conftest import microscopy_volume


def test_real_format1_volume_reads_every_voxel(format1_copy):
    expected = np.load(format1_copy / "fixture-voxels.npz")["voxels"]
    directory = Directory.open(format1_copy / "fixture.blockfs")
    assert directory.version == 1
    assert directory.shape == (100, 90, 80) and directory.dtype == np.uint16
    assert (directory.x_block_size, directory.y_block_size, directory.z_block_size) == (32, 32, 32)
    assert directory.metadata == {"VoxelSize": [1.8, 1.8, 2.0], "Source": "synthetic fixture"}
    assert directory.compression is Compression.zstd and directory.compression_level == 5
    # The absolute /scratch/... names fall back to the files beside the directory file.
    assert directory.block_filenames == [str(format1_copy / f"fixture.blockfs.{i}")
                                         for i in range(3)]
    np.testing.assert_array_equal(directory[:], expected)
    # Never written: one inside the index, one past the end of the short directory file.
    for x, y, z in ((32, 32, 32), (64, 64, 96)):
        assert not directory.read_block(x, y, z).any()


def write_format1(path, volume, block, n_files, compression, level, stored=None):
    """A format 1 volume written from the spec (as the original lays it out).

    stored: the directory file's name as the original's user gave it (relative to the
    writer's working directory, or absolute); the original stores the data files'
    names as `<stored>.<i>` and writes them beside the directory file. Default: an
    absolute path of another machine."""
    zb, yb, xb = block
    z_extent, y_extent, x_extent = volume.shape
    geometry = Geometry(x_extent, y_extent, z_extent, xb, yb, zb)
    stored = stored or f"/elsewhere/{path.name}"
    files = [f"{stored}.{i}" for i in range(n_files)]
    header = fmt.Header(geometry=geometry, dtype=volume.dtype, data_files=files,
                        compression=compression, compression_level=level, version=1,
                        metadata={"Lab": "test"}, n_offset_bits=40, n_size_bits=24)
    codec = numcodecs_blosc().Blosc(cname=compression.name, clevel=level)  # as the original did
    data = [bytearray() for _ in range(n_files)]
    offsets = np.zeros(geometry.n_blocks, np.uint64)
    sizes = np.zeros(geometry.n_blocks, np.uint64)
    for x, y, z in geometry.block_origins():
        number = geometry.block_number(x, y, z)
        if left_unwritten(number):
            continue
        zs, ys, xs = geometry.block_shape(x, y, z)
        payload = codec.encode(np.ascontiguousarray(volume[z:z + zs, y:y + ys, x:x + xs]))
        target = data[number % n_files]
        offsets[number], sizes[number] = len(target), len(payload)
        target += payload
    last = int(np.nonzero(sizes)[0].max()) + 1  # the original stops at the last block written
    path.write_bytes(fmt.encode_header1(header) + fmt.encode_entries1(header, offsets[:last],
                                                                      sizes[:last]))
    for i, blob in enumerate(data):
        path.with_name(f"{path.name}.{i}").write_bytes(bytes(blob))
    return geometry


def left_unwritten(number):
    """Whether write_format1 leaves block `number` unwritten (some blocks are)."""
    return number % 5 == 3


def as_written(volume, geometry):
    """The voxels a volume written by write_format1 reads back: its unwritten blocks zero."""
    expected = volume.copy()
    for x, y, z in geometry.block_origins():
        if left_unwritten(geometry.block_number(x, y, z)):
            zs, ys, xs = geometry.block_shape(x, y, z)
            expected[z:z + zs, y:y + ys, x:x + xs] = 0
    return expected


@pytest.mark.parametrize("block,n_files,compression,level", [
    ((32, 32, 32), 1, Compression.zstd, 5),
    ((16, 24, 40), 3, Compression.lz4, 3),
    ((64, 64, 64), 2, Compression.zlib, 1),
    ((8, 16, 16), 4, Compression.blosclz, 9),
    ((20, 20, 20), 5, Compression.lz4hc, 4),
])
def test_format1_from_spec(tmp_path, block, n_files, compression, level):
    volume = microscopy_volume((50, 61, 77))
    path = tmp_path / "spec.blockfs"
    geometry = write_format1(path, volume, block, n_files, compression, level)
    directory = Directory.open(path)
    np.testing.assert_array_equal(directory[:], as_written(volume, geometry))
    assert directory.metadata == {"Lab": "test"}


def test_format1_entries_round_trip():
    header = fmt.Header(geometry=Geometry(10, 10, 10), dtype=np.dtype("u2"), data_files=["a"],
                        version=1, n_offset_bits=21, n_size_bits=17)
    offsets = np.array([0, 524304, (1 << 21) - 1], np.uint64)
    sizes = np.array([524304 % (1 << 17), 1, (1 << 17) - 1], np.uint64)
    raw = fmt.encode_entries1(header, offsets, sizes)
    assert len(raw) == 3 * 5
    got_offsets, got_sizes = fmt.decode_entries1(header, raw)
    np.testing.assert_array_equal(got_offsets, offsets)
    np.testing.assert_array_equal(got_sizes, sizes)


def test_format2_header_rejected_by_format1_magic(tmp_path):
    directory = Directory(10, 10, 10, np.uint8, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    directory.close()
    raw = (tmp_path / "v.blockfs").read_bytes()
    assert raw[:8] == fmt.FORMAT2_MAGIC != fmt.FORMAT1_MAGIC
    md_size, index_offset, n_entries = struct.unpack_from("<IIQ", raw, 8)
    meta = json.loads(raw[32:32 + md_size])
    assert meta["data_files"] == ["v.blockfs.0"] and meta["version"] == 2
    assert index_offset % 16 == 0 and n_entries == 1
    assert len(raw) == index_offset + 16


@pytest.mark.parametrize("damage,message", [
    (lambda raw: b"NotBlock" + raw[8:], "not a blockfs directory file"),
    (lambda raw: raw[:20], "truncated directory header"),
    (lambda raw: raw[:-8], "truncated directory file"),
    (lambda raw: raw[:40] + bytes([raw[40] ^ 0xFF]) + raw[41:], "metadata checksum"),
    (lambda raw: raw[:9] + bytes([raw[9] ^ 0x01]) + raw[10:], "header checksum"),
    (lambda raw: b"", "not a blockfs directory file"),
])
def test_bad_directory_files(tmp_path, damage, message):
    directory = Directory(10, 10, 10, np.uint8, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    directory.close()
    path = tmp_path / "v.blockfs"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(FormatError, match=message) as info:
        Directory.open(path)
    assert str(path) in str(info.value)


def rewrite_metadata(path, **changes):
    """Rewrite a format 2 directory file's JSON by hand, from the spec, with valid checksums."""
    raw = path.read_bytes()
    md_size, index_offset, n_entries = struct.unpack_from("<IIQ", raw, 8)
    meta = json.loads(raw[32:32 + md_size])
    meta.update(changes)
    metadata = json.dumps(meta).encode()
    offset = -(-(32 + len(metadata)) // 16) * 16
    head = fmt.FORMAT2_MAGIC + struct.pack("<IIQI", len(metadata), offset, n_entries,
                                           fmt.crc32c(metadata))
    head += struct.pack("<I", fmt.crc32c(head))
    path.write_bytes(head + metadata + b"\0" * (offset - 32 - len(metadata)) + raw[index_offset:])


@pytest.mark.parametrize("changes,message", [
    ({"compression": "snappy7"}, "unknown compression"),
    ({"dtype": "not-a-dtype"}, "unknown dtype"),
    ({"dtype": "U8"}, "unsupported dtype"),
    ({"x_extent": "many"}, "bad metadata"),
    ({"compression_level": 12}, "compression level must be a whole number from 0 to 9"),
    ({"shuffle": "sideways"}, "unknown shuffle"),
])
def test_unknown_compression_or_dtype(tmp_path, changes, message):
    path = tmp_path / "v.blockfs"
    directory = Directory(10, 10, 10, np.uint8, path, n_filenames=1)
    directory.create()
    directory.close()
    rewrite_metadata(path, **changes)
    with pytest.raises(FormatError, match=message):
        Directory.open(path)


def test_missing_directory_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such blockfs directory file"):
        Directory.open(tmp_path / "nothing.blockfs")


def test_frame_header_round_trip():
    head = fmt.encode_frame_header(1234, b"payload", 99)
    assert len(head) == fmt.FRAME_SIZE
    assert fmt.decode_frame_header(head, "x") == (1234, 7, 99, fmt.crc32c(b"payload"))
    with pytest.raises(FormatError, match="damaged frame header"):
        fmt.decode_frame_header(head[:5] + bytes([head[5] ^ 1]) + head[6:], "x")


@pytest.mark.parametrize("n_blocks,chunk", [(20, 7), (21, 7), (3, 7), (1, 1)])
def test_empty_directory_in_chunks_is_the_whole_empty_index(n_blocks, chunk):
    """create() writes a new volume's missing entries as pieces of one small chunk: the same
    bytes, index checksum included, as the whole empty index."""
    header = fmt.Header(Geometry(8 * n_blocks, 8, 8, 8, 8, 8), np.dtype(np.uint16), ["v.0"])
    pieces = fmt.empty_directory2_parts(header, chunk)
    whole = fmt.directory2_parts(header, fmt.empty_index(n_blocks))
    assert b"".join(bytes(p) for p in pieces) == b"".join(bytes(p) for p in whole)
    assert len(pieces) == 1 + -(-n_blocks // chunk)


@pytest.mark.parametrize("length_a,length_b", [(0, 0), (5, 0), (0, 7), (1, 1), (100, 3),
                                               (12345, 678901), (3, 2 ** 20 + 17)])
def test_crc32c_combine(length_a, length_b):
    """The CRC-32C of two pieces joined, from the pieces' CRCs and the second's length."""
    rng = np.random.default_rng(length_a + length_b)
    a, b = rng.bytes(length_a), rng.bytes(length_b)
    assert fmt.crc32c_combine(fmt.crc32c(a), fmt.crc32c(b), length_b) == fmt.crc32c(a + b)
