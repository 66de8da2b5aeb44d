"""blockfs2zarr: OME-Zarr 0.5 exports read back voxel for voxel by zarr-python and TensorStore.

Volumes of several shapes (none a multiple of its blocks), block shapes, dtypes and codecs,
formats 1 and 2, a pyramid; in this process, with local workers and under a real mpiexec on
1, 2 and 3 ranks (the same bytes every time); a job killed with SIGKILL then resumed gives
the bytes of an uninterrupted export; bad inputs end with a clear error and change nothing.
"""
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from blockfs_mpi import Directory, blockfs2zarr, export, pyramid, zarr_export
from blockfs_mpi import format as fmt
from blockfs_mpi.compression import Compression
from blockfs_mpi.reader import BlockReader, read_header
from blockfs_mpi.zarr_shards import ABSENT, ShardGrid
from conftest import import_peer, kill_group, microscopy_volume, mpiexec, run_checked
from test_format import as_written, write_format1


def make_volume(path, voxels, block=(16, 16, 16), skip=(), **options):
    """A format 2 volume of voxels with (z, y, x) blocks; blocks numbered in skip are never
    written. Returns (path, the voxels it reads back)."""
    z, y, x = voxels.shape
    expected = voxels.copy()
    with Directory(x, y, z, voxels.dtype, str(path), n_filenames=2, z_block_size=block[0],
                   y_block_size=block[1], x_block_size=block[2], **options) as directory:
        directory.create()
        for bx, by, bz in directory.geometry.block_origins():
            zs, ys, xs = directory.get_block_size(bx, by, bz)
            region = (slice(bz, bz + zs), slice(by, by + ys), slice(bx, bx + xs))
            if directory.geometry.block_number(bx, by, bz) in skip:
                expected[region] = 0
            else:
                directory.write_block(voxels[region], bx, by, bz)
    return path, expected


def read_zarr(output, level=0):
    """The array of an export's level, read with zarr-python."""
    zarr = pytest.importorskip("zarr")
    return zarr.open_array(os.path.join(output, str(level)), mode="r")[:]


def read_tensorstore(output, level=0):
    """The same array read with TensorStore's zarr3 driver."""
    ts = pytest.importorskip("tensorstore")
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file",
                                                   "path": os.path.join(output, str(level))}},
                    read=True).result()
    return store.read().result()


def check_readback(output, expected, level=0):
    for read in (read_zarr, read_tensorstore):
        got = read(output, level)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def validate_ome(output):
    """The image's metadata as ome-zarr-models validates it."""
    zarr = pytest.importorskip("zarr")
    image = pytest.importorskip("ome_zarr_models.v05.image")
    return image.Image.from_zarr(zarr.open_group(str(output), mode="r"))


def tree(folder):
    """{relative path: bytes} of every file under folder."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def file_names(folder):
    """The paths, relative to folder, of the files under it (none if it does not exist)."""
    return [os.path.relpath(os.path.join(root, name), folder)
            for root, _, names in os.walk(folder) for name in names]


def program(*args, n=0, expect_failure=False, env=None):
    """blockfs2zarr on n ranks under mpiexec (n=0: plain python)."""
    command = [sys.executable, "-m", "blockfs_mpi.blockfs2zarr", *map(str, args)]
    if n:
        command = [mpiexec(), "-n", str(n), *command]
    return run_checked(command, expect_failure=expect_failure, env=env)


# ------------------------------------------------------------- read back --

CASES = [  # shape (z, y, x), block (z, y, x), dtype, codec options, --shard
    ((70, 50, 75), (16, 16, 16), np.uint16, dict(compression="zstd", compression_level=5), 2),
    ((33, 47, 21), (8, 16, 32), np.uint8,
     dict(compression="lz4", compression_level=9, shuffle="bit"), 3),
    ((20, 30, 41), (16, 8, 8), np.float32,
     dict(compression="zlib", compression_level=1, shuffle="none"), 1),
    ((17, 19, 23), (16, 16, 16), np.int32, dict(compression="blosclz", compression_level=3), 8),
]


@pytest.mark.parametrize("shape, block, dtype, options, shard", CASES)
def test_export_reads_back_every_voxel(tmp_path, shape, block, dtype, options, shard):
    voxels = microscopy_volume(shape, dtype=dtype)
    if dtype == np.float32:
        voxels = voxels / np.float32(7)
    source, expected = make_volume(tmp_path / "v.blockfs", voxels, block, skip={1, 4},
                                   **options)
    output = tmp_path / "v.ome.zarr"
    zarr_export.export_zarr(str(source), str(output), shard, n_workers=1, silent=True)
    check_readback(output, expected)
    metadata = validate_ome(output).attributes.ome.multiscales[0]
    assert [axis.name for axis in metadata.axes] == ["z", "y", "x"]
    assert not os.path.exists(output / zarr_export.RECORD)


def shard_index(path, grid):
    """A shard file's (offset, nbytes) rows."""
    raw = open(path, "rb").read()[-grid.index_size:]
    assert fmt.crc32c(raw[:-4]) == int.from_bytes(raw[-4:], "little")
    return np.frombuffer(raw[:-4], "<u8").reshape(-1, 2)


def test_full_blocks_are_copied_as_stored_and_absent_ones_are_absent(tmp_path):
    voxels = microscopy_volume((40, 40, 40))
    source, _ = make_volume(tmp_path / "v.blockfs", voxels, skip={0})
    output = tmp_path / "out.ome.zarr"
    zarr_export.export_zarr(str(source), str(output), 4, n_workers=1, silent=True)
    reader = BlockReader(str(source))
    grid = ShardGrid(reader.header.geometry, 4)
    assert grid.shape == (1, 1, 1)
    shard = open(output / "0" / "c" / "0" / "0" / "0", "rb").read()
    index = shard_index(output / "0" / "c" / "0" / "0" / "0", grid)
    assert tuple(index[0]) == (ABSENT, ABSENT)  # block 0 was never written
    for dz, dy, dx in ((3, 0, 0), (3, 3, 3), (0, 1, 3)):  # past the volume's 3x3x3 blocks
        assert tuple(index[(dz * 4 + dy) * 4 + dx]) == (ABSENT, ABSENT)
    offset, size = index[(1 * 4 + 1) * 4 + 1]  # block (1, 1, 1): full, copied
    assert shard[offset:offset + size] == bytes(reader.payload(reader.header.geometry
                                                               .block_number(16, 16, 16)))
    offset, size = index[(2 * 4 + 2) * 4 + 2]  # block (2, 2, 2): clipped, padded
    assert size != reader.entry(reader.header.geometry.block_number(32, 32, 32))[2]


def test_format1_volumes(tmp_path, format1_copy):
    output = tmp_path / "fixture.ome.zarr"
    zarr_export.export_zarr(str(format1_copy / "fixture.blockfs"), str(output), 2,
                             n_workers=1, silent=True)
    check_readback(output, np.load(format1_copy / "fixture-voxels.npz")["voxels"])
    scale = validate_ome(output).attributes.ome.multiscales[0].datasets[0]
    assert scale.coordinateTransformations[0].scale == [2.0, 1.8, 1.8]  # recorded, in um
    volume = np.random.default_rng(1).integers(0, 4000, (37, 29, 45), dtype=np.uint16)
    geometry = write_format1(tmp_path / "f1.blockfs", volume, (16, 16, 16), 3,
                             Compression.lz4, 7)
    zarr_export.export_zarr(str(tmp_path / "f1.blockfs"), str(tmp_path / "f1.zarr"), 2,
                             n_workers=1, silent=True)
    check_readback(tmp_path / "f1.zarr", as_written(volume, geometry))


@pytest.fixture(scope="module")
def pyramid_folder(tmp_path_factory):
    """(folder, [voxels of each level]) of a 3-level pyramid with ragged extents."""
    folder = tmp_path_factory.mktemp("pyramid") / "brain"
    level1 = pyramid.level_path(str(folder), 1)
    os.makedirs(os.path.dirname(level1))
    make_volume(level1, microscopy_volume((45, 70, 61)), metadata={"VoxelSize": [1, 1, 2.5],
                                                                   "VoxelSizeUnit": "um"})
    pyramid.build(str(folder), 3, silent=True)
    return folder, [Directory.open(pyramid.level_path(str(folder), n))[:] for n in (1, 2, 3)]


def test_pyramid(tmp_path, pyramid_folder):
    folder, levels = pyramid_folder
    output = tmp_path / "brain.ome.zarr"
    program(folder, output, "--shard", 2, "--silent")
    for level, expected in enumerate(levels):
        check_readback(output, expected, level)
    datasets = validate_ome(output).attributes.ome.multiscales[0].datasets
    assert [d.path for d in datasets] == ["0", "1", "2"]
    assert [d.coordinateTransformations[0].scale for d in datasets] == [
        [2.5, 1, 1], [5, 2, 2], [10, 4, 4]]


def test_ome_zarr_py_opens_the_pyramid(tmp_path, pyramid_folder):
    reader = import_peer("ome_zarr.reader", python=(3, 11))
    io = import_peer("ome_zarr.io", python=(3, 11))
    folder, levels = pyramid_folder
    output = tmp_path / "brain.ome.zarr"
    zarr_export.export_zarr(str(folder), str(output), 2, n_workers=1, silent=True)
    node = next(iter(reader.Reader(io.parse_url(str(output)))()))
    assert [tuple(level.shape) for level in node.data] == [v.shape for v in levels]
    np.testing.assert_array_equal(np.asarray(node.data[1]), levels[1])


# ------------------------------------------------------- ranks, workers --

@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """(path, voxels, reference export) of a volume of 5 x 4 x 5 blocks: 27 shards of 2^3
    blocks, which divide among neither 2 nor 3 ranks."""
    folder = tmp_path_factory.mktemp("ranks")
    source, expected = make_volume(folder / "v.blockfs", microscopy_volume((70, 50, 75)),
                                   skip={7})
    reference = folder / "reference.ome.zarr"
    zarr_export.export_zarr(str(source), str(reference), 2, n_workers=1, silent=True)
    return source, expected, tree(reference)


@pytest.mark.mpi
@pytest.mark.parametrize("n", [1, 2, 3])
def test_ranks_write_the_same_bytes(tmp_path, volume, n):
    source, expected, reference = volume
    output = tmp_path / "out.ome.zarr"
    result = program(source, output, "--shard", 2, n=n)
    assert "blockfs2zarr: 100 blocks" in result.stderr
    assert tree(output) == reference
    check_readback(output, expected)


def test_local_workers_write_the_same_bytes(tmp_path, volume):
    source, _, reference = volume
    program(source, tmp_path / "out.ome.zarr", "--shard", 2, "--n-workers", 2, "--silent")
    assert tree(tmp_path / "out.ome.zarr") == reference


@pytest.mark.mpi
def test_killed_job_resumes_to_the_same_bytes(tmp_path):
    """SIGKILL to the whole job mid-export, then --resume: the complete shards are kept, the
    temporary files removed, and the output has the bytes of an uninterrupted export.

    Deterministic: the format 1 volume keeps block n in data file n % 2, and data file 1 is
    replaced by a named pipe for the killed run, so a rank that reaches a block of file 1
    waits in open() forever while the blocks of file 0 (one shard each) are written."""
    volume = microscopy_volume((24, 40, 40))
    source = tmp_path / "f1.blockfs"
    write_format1(source, volume, (8, 8, 8), 2, Compression.zstd, 3, stored="f1.blockfs")
    reference = tmp_path / "reference.ome.zarr"
    zarr_export.export_zarr(str(source), str(reference), 1, n_workers=1, silent=True)
    data = tmp_path / "f1.blockfs.1"
    data.rename(tmp_path / "aside")
    os.mkfifo(data)
    output = tmp_path / "out.ome.zarr"
    process = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, "-m",
                                "blockfs_mpi.blockfs2zarr", str(source), str(output), "--shard",
                                "1", "--silent"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    geometry = read_header(str(source)).geometry

    def stuck(name):
        """Whether name (c/z/y/x under the array) is the temporary file of a shard whose block
        is in data file 1: its rank waits on the pipe for good, so the file outlives the kill
        (a temporary file of file 0's blocks may be renamed in the meantime)."""
        final = export.partial_of(os.path.basename(name))
        if final is None:
            return False
        z, y = map(int, os.path.dirname(name).split(os.sep)[-2:])
        x = int(final)
        return geometry.block_number(8 * x, 8 * y, 8 * z) % 2 == 1

    try:
        deadline = time.monotonic() + 60
        while True:
            names = file_names(output / "0" / "c")  # names only: a temporary file of file
            # 0's blocks may be renamed between listing it and reading it
            if any(export.partial_of(os.path.basename(name)) is None for name in names) and \
                    any(stuck(name) for name in names):
                break  # a complete shard, and a temporary one that stays
            assert process.poll() is None and time.monotonic() < deadline, \
                f"no complete shard and stuck temporary one: {names}"
            time.sleep(0.01)
    finally:
        kill_group(process.pid)
        process.communicate()
    assert not (output / "zarr.json").exists()
    data.unlink()
    (tmp_path / "aside").rename(data)
    result = program(source, output, "--shard", 1, "--resume", "--silent", n=2)
    assert "removed 1 temporary file" in result.stderr or "removed 2 temporary file" in \
        result.stderr, result.stderr
    kept = int(result.stderr.split("--resume: ")[1].split()[0])
    assert kept >= 1, result.stderr
    assert tree(output) == tree(reference)


# --------------------------------------------------------- refusals ------

def run_main(argv, capsys):
    """blockfs2zarr's main in this process: (exit status, stderr)."""
    try:
        blockfs2zarr.main([str(a) for a in argv])
        status = 0
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


@pytest.fixture
def small(tmp_path):
    source, _ = make_volume(tmp_path / "small.blockfs", microscopy_volume((20, 20, 20)))
    return source


def test_bad_inputs(tmp_path, small, capsys):
    tiff = tmp_path / "plane.tif"
    tiff.write_bytes(b"II*\0" + bytes(100))
    for argv, message in [
        ([tiff, tmp_path / "o1"], "is a TIFF file, not a blockfs directory file"),
        ([tmp_path, tmp_path / "o2"], "not a blockfs volume or pyramid folder"),
        ([tmp_path / "nothing", tmp_path / "o3"], "no such blockfs volume or pyramid folder"),
        ([small, tmp_path / "o4", "--shard", "0"], "--shard"),
        ([small, tmp_path / "o5", "--shard", "two"], "--shard"),
        ([small, tmp_path / "o6", "--voxel-size", "1,2"], "expected three positive numbers"),
        ([small, tmp_path / "o7", "--unit", "um"], "pass both"),
    ]:
        status, err = run_main(argv, capsys)
        assert status != 0 and message in err, (argv, err)
        assert not os.path.exists(argv[1]), argv


def test_existing_outputs(tmp_path, small, capsys):
    output = tmp_path / "out.ome.zarr"
    zarr_export.export_zarr(str(small), str(output), 2, n_workers=1, silent=True)
    before = tree(output)
    _, err = run_main([small, output], capsys)
    assert "exists" in err and "--overwrite" in err and "--resume" in err
    _, err = run_main([small, output, "--resume", "--shard", "1"], capsys)
    assert "--resume" in err and "another --shard" in err
    other, _ = make_volume(tmp_path / "other.blockfs", microscopy_volume((20, 20, 20), seed=5))
    _, err = run_main([other, output, "--resume", "--shard", "2"], capsys)
    assert "another volume" in err
    assert tree(output) == before
    status, _ = run_main([small, output, "--resume", "--shard", "2"], capsys)
    assert status == 0 and tree(output) == before  # a finished export: nothing to do
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    _, err = run_main([small, folder, "--overwrite"], capsys)
    assert "not a zarr folder" in err and (folder / "notes.txt").exists()
    _, err = run_main([small, folder / "notes.txt", "--overwrite"], capsys)
    assert "not a zarr folder" in err
    status, _ = run_main([other, output, "--overwrite", "--shard", "2", "--silent"], capsys)
    assert status == 0
    check_readback(output, Directory.open(str(other))[:])


def test_damaged_block(tmp_path):
    voxels = microscopy_volume((32, 32, 48))
    source, _ = make_volume(tmp_path / "v.blockfs", voxels)
    reader = BlockReader(str(source))
    number = reader.header.geometry.block_number(16, 16, 16)
    file_number, offset, size = reader.entry(number)
    with open(reader.data_paths[file_number], "r+b") as f:
        f.seek(offset + size // 2)
        f.write(b"\xff\x00\xff")
    result = program(source, tmp_path / "a.zarr", expect_failure=True)
    assert f"block {number}" in result.stderr and "checksum" in result.stderr
    assert not (tmp_path / "a.zarr" / "zarr.json").exists()
    result = program(source, tmp_path / "b.zarr", "--skip-damaged", "--silent")
    assert f"block {number}" in result.stderr and "left absent" in result.stderr
    expected = voxels.copy()
    expected[16:32, 16:32, 16:32] = 0
    check_readback(tmp_path / "b.zarr", expected)


def test_disk_full(tmp_path):
    """A write that fails (here: the file size limit, as a full disk would) ends the export
    naming the shard, leaving no temporary file and no metadata."""
    noise = np.random.default_rng(2).integers(0, 65535, (64, 64, 64), dtype=np.uint16)
    source, _ = make_volume(tmp_path / "noise.blockfs", noise)
    output = tmp_path / "out.ome.zarr"
    command = [sys.executable, "-m", "blockfs_mpi.blockfs2zarr", str(source), str(output),
               "--shard", "4", "--n-workers", "1"]
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))  # noqa: E731
    process = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit,
                             timeout=120)
    assert process.returncode != 0
    assert "cannot write shard: File too large" in process.stderr, process.stderr
    assert not (output / "zarr.json").exists()
    assert not [name for name in tree(output) if ".partial-" in name]


# ------------------------------------------------- zarr sources of blockfs-write --

def write_program(*args, n=0):
    """blockfs-write on n ranks under mpiexec (n=0: plain python)."""
    command = [sys.executable, "-m", "blockfs_mpi.write", *map(str, args)]
    if n:
        command = [mpiexec(), "-n", str(n), *command]
    return run_checked(command)


@pytest.mark.mpi
def test_round_trip_through_ome_zarr(tmp_path, pyramid_folder):
    """blockfs -> blockfs2zarr -> blockfs-write gives the original voxels, from the image
    (its first level) on 2 ranks and from `image.ome.zarr/1` (another level)."""
    folder, levels = pyramid_folder
    image = tmp_path / "brain.ome.zarr"
    zarr_export.export_zarr(str(folder), str(image), 2, n_workers=1, silent=True)
    write_program(image, tmp_path / "l0.blockfs", "--block-size", 32, "--silent", n=2)
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "l0.blockfs"))[:], levels[0])
    write_program(image / "1", tmp_path / "l1.blockfs", "--block-size", 16, "--silent")
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "l1.blockfs"))[:], levels[1])


def zarr_python_array(path, voxels, **options):
    zarr = pytest.importorskip("zarr")
    array = zarr.create_array(str(path), shape=voxels.shape, dtype=voxels.dtype, **options)
    array[:] = voxels


def tensorstore_sharded(path, voxels):
    ts = pytest.importorskip("tensorstore")
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)},
                     "metadata": {"shape": list(voxels.shape), "data_type": voxels.dtype.name,
                                  "chunk_grid": {"name": "regular",
                                                 "configuration": {"chunk_shape": [32, 32, 32]}},
                                  "codecs": [{"name": "sharding_indexed", "configuration": {
                                      "chunk_shape": [16, 16, 16],
                                      "codecs": [{"name": "bytes"}, {"name": "zstd"}]}}]}},
                    create=True).result()
    store.write(voxels).result()


ZARR_SOURCES = {
    "v2": lambda path, v: zarr_python_array(path, v, chunks=(16, 16, 16), zarr_format=2),
    "v3": lambda path, v: zarr_python_array(path, v, chunks=(16, 32, 8)),
    "v3-sharded": lambda path, v: zarr_python_array(path, v, chunks=(8, 8, 8),
                                                    shards=(16, 16, 24)),
    "tensorstore-sharded": tensorstore_sharded,
}


@pytest.mark.parametrize("kind", ZARR_SOURCES)
def test_zarr_array_sources(tmp_path, kind):
    from blockfs_mpi.sources import ZarrArray, fingerprint, open_source
    voxels = microscopy_volume((37, 45, 50))
    path = tmp_path / "a.zarr"
    ZARR_SOURCES[kind](path, voxels)
    source = open_source(str(path))
    assert isinstance(source, ZarrArray)
    assert source.shape == voxels.shape and source.dtype == voxels.dtype
    np.testing.assert_array_equal(source.read(3, 30, 5, 41, 7, 50), voxels[3:30, 5:41, 7:50])
    assert fingerprint(source, str(path))["kind"] == "ZarrArray"
    write_program(path, tmp_path / "v.blockfs", "--block-size", 16, "--silent")
    np.testing.assert_array_equal(Directory.open(str(tmp_path / "v.blockfs"))[:], voxels)


def test_zarr_sources_that_are_not_volumes(tmp_path):
    zarr = pytest.importorskip("zarr")
    from blockfs_mpi.sources import SourceError, open_source
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("raw", shape=(4, 4, 4), dtype="uint8")
    with pytest.raises(SourceError, match="no OME-Zarr image; name one of its arrays: raw"):
        open_source(str(tmp_path / "g.zarr"))
    zarr.create_array(str(tmp_path / "flat.zarr"), shape=(4, 4), dtype="uint8")
    with pytest.raises(SourceError, match="is 2-D, not 3-D"):
        open_source(str(tmp_path / "flat.zarr"))
