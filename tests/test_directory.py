"""The Directory API on one rank (no MPI): the contract lab code depends on."""
import os
import pickle
import socket
import subprocess
import sys
import threading
import tracemalloc
from multiprocessing.connection import Connection

import numpy as np
import pytest

from blockfs_mpi import (
    BlockCoordinateError,
    BlockfsError,
    BlockShapeError,
    Compression,
    CorruptBlockError,
    Directory,
    FormatError,
    OptionError,
    ReadOnlyError,
    WriterError,
    local_writers,
)
from blockfs_mpi import format as fmt
from blockfs_mpi import writer as writer_module
from blockfs_mpi.compression import make_codec
from blockfs_mpi.geometry import Geometry
from blockfs_mpi.index_build import build_index
from blockfs_mpi.reader import BlockReader
from blockfs_mpi.writer import BlockWriter, PosixFile
from conftest import microscopy_volume, run_mpi, write_array

SHAPE = (70, 100, 130)  # (z, y, x): not multiples of the block size


@pytest.fixture
def volume():
    return microscopy_volume(SHAPE)


@pytest.fixture
def written(tmp_path, volume):
    write_array(tmp_path / "v.blockfs", volume)
    return tmp_path / "v.blockfs"


def test_attributes(tmp_path):
    directory = Directory(130, 100, 70, np.uint16, tmp_path / "v.blockfs", n_filenames=3,
                          x_block_size=32, y_block_size=16, z_block_size=8,
                          compression=Compression.lz4, compression_level=3,
                          metadata={"VoxelSize": [1.8, 1.8, 2.0]})
    assert directory.shape == (70, 100, 130)
    assert (directory.x_extent, directory.y_extent, directory.z_extent) == (130, 100, 70)
    assert (directory.x_block_size, directory.y_block_size, directory.z_block_size) == (32, 16, 8)
    assert directory.get_block_size(128, 96, 64) == (6, 4, 2)
    directory.create()
    directory.close()
    opened = Directory.open(tmp_path / "v.blockfs")
    assert opened.shape == (70, 100, 130) and opened.dtype == np.uint16
    assert opened.compression is Compression.lz4 and opened.compression_level == 3
    assert opened.metadata == {"VoxelSize": [1.8, 1.8, 2.0]}
    assert opened.block_filenames == [str(tmp_path / f"v.blockfs.{i}") for i in range(3)]
    assert opened.get_block_size(0, 0, 0) == (8, 16, 32)


def test_every_voxel_round_trips(written, volume):
    directory = Directory.open(written)
    np.testing.assert_array_equal(directory[:], volume)
    np.testing.assert_array_equal(directory[5:66, 31:33, 1:129], volume[5:66, 31:33, 1:129])
    np.testing.assert_array_equal(directory[-1, 3, :], volume[-1, 3, :])
    np.testing.assert_array_equal(directory[10], volume[10])
    np.testing.assert_array_equal(directory.read_block(128, 96, 64), volume[64:, 96:, 128:])


@pytest.mark.parametrize("key", [
    (slice(-5, None), slice(None, -90), slice(120, 500)),  # negative bounds, past the end
    (slice(40, 10), 0, slice(None)),  # an empty range
    (-70, slice(None), -1), (0, 0, 0), (slice(None), 99),
])
def test_indexing_follows_numpy(written, volume, key):
    np.testing.assert_array_equal(Directory.open(written)[key], volume[key])


def reading_threads(directory, monkeypatch, key=slice(None)):
    """The names of the threads that read blocks for directory[key]."""
    names = set()
    read_block = Directory.read_block

    def spy(self, x, y, z):
        names.add(threading.current_thread().name)
        return read_block(self, x, y, z)
    monkeypatch.setattr(Directory, "read_block", spy)
    directory[key]
    monkeypatch.setattr(Directory, "read_block", read_block)
    return names


def test_regions_are_read_by_threads(written, volume, monkeypatch):
    directory = Directory.open(written)
    directory.read_threads = 3
    assert len(reading_threads(directory, monkeypatch)) == 3
    assert reading_threads(directory, monkeypatch, (0, 0, 0)) == {"MainThread"}  # one block
    np.testing.assert_array_equal(directory[3:69, 5:99, 7:], volume[3:69, 5:99, 7:])
    directory.read_threads = 1
    assert reading_threads(directory, monkeypatch) == {"MainThread"}


def test_reading_threads_follow_the_cpu_affinity(written):
    """Under SLURM or a launcher's binding a process may use fewer cores than the node has:
    the default thread count is what its affinity allows."""
    script = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
              "from blockfs_mpi import Directory; "
              "print(Directory.open(sys.argv[1])._read_thread_count())")
    result = subprocess.run([sys.executable, "-c", script, str(written)], capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "1"
    assert Directory.open(written)._read_thread_count() == len(os.sched_getaffinity(0))


def test_one_reading_thread_in_an_mpi_rank(written, monkeypatch):
    monkeypatch.setenv("BLOCKFS_MPI", "1")  # what an MPI launcher's variables say
    assert reading_threads(Directory.open(written), monkeypatch) == {"MainThread"}


def test_a_damaged_block_fails_a_threaded_read(tmp_path, volume):
    path = write_array(tmp_path / "v.blockfs", volume, n_filenames=1)
    index = Directory.open(path).reader
    file_number, offset, size = index.entry(5)
    with open(f"{path}.0", "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    directory = Directory.open(path)
    directory.read_threads = 4
    with pytest.raises(CorruptBlockError, match="block 5 .*checksum mismatch"):
        directory[:]


@pytest.mark.parametrize("key, message", [
    ((0, 0, 0, 0), "too many indices"),
    ((0, 100, 0), "index 100 is out of bounds for axis 1 with size 100"),
    (-71, "index -71 is out of bounds for axis 0"),
])
def test_bad_index(written, key, message):
    with pytest.raises(IndexError, match=message):
        Directory.open(written)[key]


def test_create_twice_is_refused(tmp_path):
    directory = Directory(10, 10, 10, np.uint8, tmp_path / "v.blockfs")
    directory.create()
    with pytest.raises(BlockfsError, match="create\\(\\) on a volume that is"):
        directory.create()
    directory.close()


def test_write_block_and_read_block_like_the_original(tmp_path):
    a = np.random.randint(0, 65535, (64, 64, 64), np.uint16)
    b = np.random.randint(0, 65535, (64, 64, 64), np.uint16)
    directory = Directory(1024, 1024, 1024, np.uint16, str(tmp_path / "v.blockfs"),
                          compression=Compression.zstd, n_filenames=1)
    directory.create()
    directory.write_block(a, 64, 128, 192)
    directory.write_block(b, 0, 0, 0)
    directory.close()
    np.testing.assert_array_equal(directory.read_block(64, 128, 192), a)  # after close, too
    opened = Directory.open(str(tmp_path / "v.blockfs"))
    np.testing.assert_array_equal(opened.read_block(0, 0, 0), b)
    assert not opened.read_block(192, 128, 64).any()


@pytest.mark.parametrize("compression", list(Compression))
def test_every_compression(tmp_path, volume, compression):
    write_array(tmp_path / "v.blockfs", volume, compression=compression, compression_level=4)
    np.testing.assert_array_equal(Directory.open(tmp_path / "v.blockfs")[:], volume)


@pytest.mark.parametrize("level, piece", [(1, 256 << 10), (3, 256 << 10), (5, 256 << 10),
                                          (9, 512 << 10)])
def test_zstd_blosc_pieces_of_at_least_256_kib(level, piece):
    """At zstd-1 to 4 Blosc is told to cut a 64^3 uint16 block into 256 KiB pieces (it would
    take 32-128 KiB); the buffer records that, and a plain numcodecs Blosc, as the original
    blockfs reads with, decodes it."""
    from numcodecs import Blosc
    block = microscopy_volume((64, 64, 64))
    payload = make_codec(Compression.zstd, level).encode(block)
    assert int.from_bytes(payload[8:12], "little") == piece  # Blosc header: blocksize
    decoded = np.frombuffer(Blosc().decode(payload), np.uint16).reshape(block.shape)
    np.testing.assert_array_equal(decoded, block)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_dtypes(tmp_path, dtype):
    volume = microscopy_volume((40, 40, 40)).astype(dtype)
    write_array(tmp_path / "v.blockfs", volume)
    got = Directory.open(tmp_path / "v.blockfs")[:]
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, volume)


def test_last_write_of_a_block_wins(tmp_path):
    directory = Directory(64, 64, 64, np.uint8, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    for value in (1, 2, 3):
        directory.write_block(np.full((64, 64, 64), value, np.uint8), 0, 0, 0)
    directory.close()
    assert (Directory.open(tmp_path / "v.blockfs")[:] == 3).all()


def test_write_payload_stores_a_payload_as_it_is_and_refuses_one_of_another_size(tmp_path):
    """write_payload frames a block's Blosc buffer as it is (the reader gets it back byte for
    byte); a buffer whose header gives another size than its block's, an edge block's
    clipped size included, or that is no Blosc buffer, is refused naming the block."""
    path = str(tmp_path / "v.blockfs")
    codec = make_codec("zstd", 1)
    block = microscopy_volume((16, 16, 16))
    payload = codec.encode(block)
    with Directory(24, 16, 16, np.uint16, path, x_block_size=16, y_block_size=16,
                   z_block_size=16) as directory:
        directory.create()
        directory.write_payload(payload, 0, 0, 0)
        for bad, x in ((payload, 16), (b"not blosc", 0), (payload[:-1], 0)):
            with pytest.raises(BlockShapeError, match=rf"block at \(x={x}, y=0, z=0\)"):
                directory.write_payload(bad, x, 0, 0)
        directory.write_block(block[:, :, :8], 16, 0, 0)
    volume = Directory.open(path)
    np.testing.assert_array_equal(volume[:, :, :16], block)
    assert bytes(BlockReader(path).payload(0)) == payload


def test_writer_keeps_a_small_row_per_frame(tmp_path, monkeypatch):
    """A writer remembers a frame in a 32-byte row (not a dict entry of ~240 B), in chunks
    that roll over without losing a row; a block written again keeps its newest frame."""
    monkeypatch.setattr(writer_module, "ROWS_PER_CHUNK", 500)
    writer = BlockWriter(PosixFile(str(tmp_path / "d.0"), truncate=True), 0,
                         make_codec("lz4", 1))
    block = np.zeros((2, 2, 2), np.uint16)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for number in range(6000):
        writer.write(number % 4500, block)
    grown = tracemalloc.get_traced_memory()[0] - before - sum(map(len, writer._buffers))
    tracemalloc.stop()
    rows = writer.close()
    assert grown / 6000 < 64  # a dict of tuples took ~240
    assert len(rows) == 6000 and (rows["file"] == 0).all()
    assert rows["offset"][0] == fmt.FRAME_SIZE and (np.diff(rows["offset"].astype(int)) > 0).all()
    index = build_index(Geometry(4500 * 2, 2, 2, 2, 2, 2), rows)
    assert (index["offset"][:1500] == rows["offset"][4500:]).all()  # the second writes win
    assert (index["offset"][1500:] == rows["offset"][1500:4500]).all()


def test_writer_frames_smaller_and_larger_than_its_buffer(tmp_path):
    """Frames land intact and in order while the two append buffers take turns, one of them
    growing for a frame larger than the buffer (4 KiB here forces an append almost every frame)."""
    path = tmp_path / "d.0"
    codec = make_codec("zstd", 1)
    writer = BlockWriter(PosixFile(str(path), truncate=True), 0, codec, buffer_size=4096)
    noise = np.random.default_rng(7)  # incompressible: payloads of 4 KiB to 256 KiB
    blocks = [noise.integers(0, 256, (depth, 64, 64), np.uint8) for depth in (1, 40, 2, 64, 3, 64, 1)]
    for number, block in enumerate(blocks):
        writer.write(number, block)
    rows = writer.close()
    data = path.read_bytes()
    assert len(data) == sum(fmt.FRAME_SIZE + int(size) for size in rows["size"])
    for row, block in zip(rows, blocks):
        start, end = int(row["offset"]), int(row["offset"]) + int(row["size"])
        number, size, _, _ = fmt.decode_frame_header(data[start - fmt.FRAME_SIZE:start], path)
        assert (number, size) == (row["block"], row["size"])
        decoded = np.frombuffer(codec.decode(data[start:end]), np.uint8).reshape(block.shape)
        np.testing.assert_array_equal(decoded, block)


def test_context_manager_and_block_filenames_elsewhere(tmp_path, volume):
    elsewhere = tmp_path / "spindles"
    elsewhere.mkdir()
    names = [str(elsewhere / f"part{i}.bin") for i in range(3)]
    z, y, x = volume.shape
    with Directory(x, y, z, np.uint16, tmp_path / "v.blockfs", block_filenames=names) as d:
        d.create()
        d[:] = volume
    assert all(os.path.getsize(name) > 0 for name in names)
    opened = Directory.open(tmp_path / "v.blockfs")
    assert opened.block_filenames == names
    np.testing.assert_array_equal(opened[:], volume)


def test_exception_in_context_commits_nothing(tmp_path, volume):
    z, y, x = volume.shape
    with pytest.raises(RuntimeError):
        with Directory(x, y, z, np.uint16, tmp_path / "v.blockfs", n_filenames=1) as d:
            d.create()
            d.write_block(volume[:64, :64, :64], 0, 0, 0)
            raise RuntimeError("user code failed")
    assert not Directory.open(tmp_path / "v.blockfs")[:].any()  # the empty commit stands
    assert os.path.getsize(tmp_path / "v.blockfs.0") > 0  # the frame is kept for repair


def test_never_written_blocks_read_as_zeros(tmp_path):
    directory = Directory(100, 100, 100, np.uint16, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    directory.close()
    assert not Directory.open(tmp_path / "v.blockfs")[:].any()


def test_pickled_read_directory_reads_in_another_process(written, volume):
    import multiprocessing
    directory = Directory.open(written)
    directory.read_block(0, 0, 0)  # descriptors opened here must not leak into the child
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply(Directory.read_block, (pickle.loads(pickle.dumps(directory)), 32, 32, 32))
        threads = pool.apply(Directory._read_thread_count, (directory,))
    np.testing.assert_array_equal(got, volume[32:64, 32:64, 32:64])
    assert threads == 1  # in a worker process, the processes are the parallelism


# ---------------------------------------------------------------- bad input --

def new_volume(tmp_path):
    directory = Directory(100, 100, 100, np.uint16, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    return directory


@pytest.mark.parametrize("shape", [(64, 64, 63), (36, 64, 64), (64, 64)])
def test_wrong_block_shape(tmp_path, shape):
    directory = new_volume(tmp_path)
    with pytest.raises(BlockShapeError, match=r"block at \(x=0, y=0, z=0\) must have shape"):
        directory.write_block(np.zeros(shape, np.uint16), 0, 0, 0)
    directory.close()


def test_edge_block_at_clipped_shape(tmp_path):
    directory = new_volume(tmp_path)
    directory.write_block(np.ones((36, 36, 36), np.uint16), 64, 64, 64)
    with pytest.raises(BlockShapeError):
        directory.write_block(np.ones((64, 64, 64), np.uint16), 64, 64, 64)
    directory.close()
    assert Directory.open(tmp_path / "v.blockfs")[64:, 64:, 64:].all()


@pytest.mark.parametrize("block", [
    np.full((64, 64, 64), 70000, np.int64),
    np.full((64, 64, 64), -1, np.int32),
    np.full((64, 64, 64), 1.5, np.float32),
])
def test_unsafe_dtype(tmp_path, block):
    directory = new_volume(tmp_path)
    with pytest.raises(BlockShapeError, match="cannot be stored as uint16"):
        directory.write_block(block, 0, 0, 0)
    directory.close()


def test_integers_that_fit_are_accepted(tmp_path):
    directory = new_volume(tmp_path)
    directory.write_block(np.full((64, 64, 64), 65535, np.int64), 0, 0, 0)
    directory.close()
    assert (Directory.open(tmp_path / "v.blockfs").read_block(0, 0, 0) == 65535).all()


@pytest.mark.parametrize("x,y,z,message", [
    (100, 0, 0, "outside"), (0, -64, 0, "outside"), (0, 0, 32, "not a multiple"),
])
def test_bad_coordinates(tmp_path, x, y, z, message):
    directory = new_volume(tmp_path)
    with pytest.raises(BlockCoordinateError, match=message):
        directory.write_block(np.zeros((64, 64, 64), np.uint16), x, y, z)
    with pytest.raises(BlockCoordinateError, match=message):
        directory.read_block(x, y, z)
    directory.close()


def test_partial_block_assignment_refused(tmp_path):
    directory = new_volume(tmp_path)
    with pytest.raises(BlockCoordinateError, match="whole blocks"):
        directory[0:10, 0:64, 0:64] = 1
    directory.close()


def test_write_to_volume_opened_for_reading(written):
    directory = Directory.open(written)
    with pytest.raises(ReadOnlyError, match="opened for reading"):
        directory.write_block(np.zeros((32, 32, 32), np.uint16), 0, 0, 0)


def test_write_before_create(tmp_path):
    directory = Directory(64, 64, 64, np.uint16, tmp_path / "v.blockfs")
    with pytest.raises(BlockfsError, match="call create"):
        directory.write_block(np.zeros((64, 64, 64), np.uint16), 0, 0, 0)


@pytest.mark.parametrize("options, message", [
    ({"compression": "brotli"}, "unknown compression 'brotli': expected one of zstd, "),
    ({"dtype": "nonsense"}, "unknown dtype 'nonsense'"),
    ({"dtype": "U8"}, "unsupported dtype 'U8'"),
    ({"compression_level": 12}, "compression level must be a whole number from 0 to 9, not 12"),
    ({"compression_level": "high"}, "compression level must be .*, not 'high'"),
    ({"shuffle": "sideways"}, "unknown shuffle 'sideways'"),
])
def test_bad_arguments_are_option_errors(tmp_path, options, message):
    """A bad argument is an OptionError (a ValueError), never a FormatError: that one means
    a file is not a blockfs file."""
    arguments = {"dtype": np.uint16, **options}
    dtype = arguments.pop("dtype")
    with pytest.raises(OptionError, match=message) as info:
        Directory(64, 64, 64, dtype, tmp_path / "v.blockfs", **arguments)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, FormatError)
    assert not list(tmp_path.iterdir())


def test_codec_arguments_are_option_errors():
    with pytest.raises(OptionError, match="unknown compression 'gzip'"):
        Compression.parse("gzip")
    assert Compression.parse("lz4") is Compression.parse(Compression.lz4) is Compression.lz4
    with pytest.raises(OptionError, match="from 0 to 9, not -1"):
        make_codec("zstd", -1)
    with pytest.raises(OptionError, match="unknown shuffle"):
        make_codec(Compression.zstd, 5, "random")
    assert make_codec("zstd", np.int64(5)).clevel == 5


def test_missing_folder(tmp_path):
    directory = Directory(64, 64, 64, np.uint16, tmp_path / "no" / "v.blockfs")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        directory.create()


# ------------------------------------------------------------ damaged files --

def single_block_volume(tmp_path):
    directory = Directory(64, 64, 64, np.uint16, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    directory.write_block(microscopy_volume((64, 64, 64)), 0, 0, 0)
    directory.close()
    return tmp_path / "v.blockfs", tmp_path / "v.blockfs.0"


def test_checksum_mismatch(tmp_path):
    path, data = single_block_volume(tmp_path)
    raw = bytearray(data.read_bytes())
    raw[fmt.FRAME_SIZE + 100] ^= 0x40
    data.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlockError, match=r"v.blockfs.0: block 0 .*checksum mismatch"):
        Directory.open(path).read_block(0, 0, 0)


def test_truncated_data_file(tmp_path):
    path, data = single_block_volume(tmp_path)
    os.truncate(data, os.path.getsize(data) - 10)
    with pytest.raises(CorruptBlockError, match="past the end of the data file"):
        Directory.open(path).read_block(0, 0, 0)


def test_index_entry_past_end_of_data_file(tmp_path):
    path, _ = single_block_volume(tmp_path)
    raw = bytearray(path.read_bytes())
    header = fmt.parse_directory(lambda o, n: raw[o:o + n], len(raw), str(path))
    entry = np.frombuffer(raw, fmt.ENTRY, 1, header.index_offset).copy()
    entry["offset"] += 10 ** 9
    raw[header.index_offset:header.index_offset + 16] = entry.tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlockError, match="past the end of the data file"):
        Directory.open(path).read_block(0, 0, 0)


def test_zeroed_index_is_an_error_not_zeros(tmp_path):
    path, _ = single_block_volume(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-16:] = bytes(16)
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBlockError, match="damaged index entry of block 0"):
        Directory.open(path).read_block(0, 0, 0)


def test_truncated_directory_file(tmp_path):
    path, _ = single_block_volume(tmp_path)
    os.truncate(path, os.path.getsize(path) - 3)
    with pytest.raises(FormatError, match="truncated directory file"):
        Directory.open(path)


def test_missing_data_file(tmp_path):
    path, data = single_block_volume(tmp_path)
    data.unlink()
    with pytest.raises(FileNotFoundError, match="v.blockfs.0: data file of volume"):
        Directory.open(path).read_block(0, 0, 0)


def test_writer_process_failure_is_reported(tmp_path):
    directory = Directory(64, 64, 128, np.uint16, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    directory.start_writer_processes()
    directory._backend.processes._processes[0].kill()
    with pytest.raises(WriterError):
        directory.write_block(np.zeros((64, 64, 64), np.uint16), 0, 0, 0)
    with pytest.raises(WriterError, match="died"):
        directory.close()


def test_a_writer_process_whose_owner_dies_with_its_reply_unread_ends(tmp_path):
    """An owner killed before it read its writer's "ready" (Ctrl-C while the writers start)
    resets their control socket rather than closing it: the writer still ends, having
    written what it acknowledged, instead of waiting for blocks forever (it holds the
    owner's stdout and stderr open)."""
    ours, theirs = socket.socketpair()
    with theirs:
        process = local_writers._start_writer(theirs.fileno())
    control = Connection(ours.detach())
    control.send((str(tmp_path / "w0"), os.urandom(32), str(tmp_path / "d.0"), 0,
                  ("zstd", 1, "byte"), np.dtype(np.uint16), 10))
    assert control.poll(60), "the writer did not say it is ready"
    control.close()  # its "ready" unread: a reset, not an end of file, reaches the writer
    assert process.wait(timeout=60) == 0


def test_new_volumes_default_to_zstd_1(tmp_path):
    """The default codec chosen from benchmarks/README.md; zstd-5 is one option away."""
    directory = Directory(64, 64, 64, np.uint16, tmp_path / "v.blockfs", n_filenames=1)
    directory.create()
    directory.close()
    opened = Directory.open(tmp_path / "v.blockfs")
    assert opened.compression is Compression.zstd and opened.compression_level == 1


def every_third_block_unwritten(directory, volume):
    """Write every block but each third one; the written blocks' indexes."""
    written = set()
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if i % 3 != 2:
            zs, ys, xs = directory.get_block_size(x, y, z)
            directory.write_block(volume[z:z + zs, y:y + ys, x:x + xs], x, y, z)
            written.add(i)
    return written


def stored(directory):
    """The indexes of the blocks that has_block says are stored."""
    return {i for i, origin in enumerate(directory.geometry.block_origins())
            if directory.has_block(*origin)}


def test_has_block_local_writers_reading_and_resumed(tmp_path, volume):
    """has_block says whether a block is stored on every kind of Directory without MPI:
    being written through local writer processes, closed, opened for reading, resumed."""
    path = tmp_path / "v.blockfs"
    directory = Directory(130, 100, 70, np.uint16, path, n_filenames=2, x_block_size=32,
                          y_block_size=32, z_block_size=32)
    assert stored(directory) == set()  # not created yet
    directory.create()
    assert stored(directory) == set()
    written = every_third_block_unwritten(directory, volume)
    assert stored(directory) == written  # written here, not yet committed
    directory.close()
    assert stored(directory) == written  # now from the committed index
    assert stored(Directory.open(path)) == written
    resumed = Directory.resume(path)
    assert stored(resumed) == written
    resumed[0:32, 0:32, 64:96] = volume[0:32, 0:32, 64:96]  # block 2, unwritten until now
    assert stored(resumed) == written | {2}
    resumed.close()
    assert stored(Directory.open(path)) == written | {2}
    with pytest.raises(BlockCoordinateError):
        resumed.has_block(1, 0, 0)


def test_has_block_on_the_real_format1_volume(format1_copy):
    """The original blockfs left blocks (32, 32, 32) and (64, 64, 96) unwritten; the second
    lies past the end of its (short) index."""
    directory = Directory.open(format1_copy / "fixture.blockfs")
    unwritten = {(x, y, z) for x, y, z in directory.geometry.block_origins()
                 if not directory.has_block(x, y, z)}
    assert unwritten == {(32, 32, 32), (64, 64, 96)}


@pytest.mark.parametrize("n", [2, 3])
def test_has_block_under_mpi(tmp_path, n):
    result = run_mpi(n, "has_block.py", tmp_path)
    assert result.stdout.count(": ok") == n, result.stdout + result.stderr


def test_readers_nobody_closed_leak_no_descriptors(tmp_path):
    """A reader opens its data files with its directory file (to keep reading the version it
    opened); one dropped without close() gives them back when it is garbage-collected."""
    import gc
    path = write_array(str(tmp_path / "v.blockfs"), np.ones((40, 40, 40), np.uint16),
                       n_filenames=3)
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(100):
        assert Directory.open(path)[0, 0, 0] == 1
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == before
