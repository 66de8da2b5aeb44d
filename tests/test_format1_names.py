"""Format 1 volumes named as the original blockfs names them (issue 15): each data file's name
is stored as the writer built it from the path its user typed, relative to the writer's
working directory or absolute. Every such volume reads from the folder it was written in,
from another folder, after a move of the whole tree by hand, and through the programs; a
data file found nowhere is an error naming the volume, the stored name and every place
tried. After blockfs-cp/mv, an original-style reader still finds the data files."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import BlockfsError, Compression, Directory, pyramid
from blockfs_mpi.compression import numcodecs_blosc
from blockfs_mpi.describe import volume_info
from blockfs_mpi.errors import DataFileNotFoundError
from blockfs_mpi.fsck import fsck
from blockfs_mpi.index import read_index
from blockfs_mpi.reader import data_file_places, read_header, resolve_data_file
from blockfs_mpi.relocate import relocate
from conftest import microscopy_volume
from test_format import as_written, write_format1
from test_serve import Served
from volumes import program

SHAPE = (40, 45, 50)  # (z, y, x): ragged edge blocks of 16
BLOCK = (16, 16, 16)
N_FILES = 3
ABSOLUTE = "<absolute>"  # stands for an absolute path in the tree
PYRAMID = "out/1_1_1/precomputed.blockfs"  # precomputed-tif with a relative <dest> "out"
STORED = ["v.blockfs", "./v.blockfs", "a/b/v.blockfs", "../x/v.blockfs", ABSOLUTE, PYRAMID]


class Written:
    """A format 1 volume written the original's way in tree/w: `Directory(..., stored)` run
    in tree/w (stored = ABSOLUTE: an absolute path of tree/abs), and for the pyramid its
    level 2 and precomputed info too."""

    def __init__(self, tree, stored, seed=0):
        self.tree = tree
        self.written_in = tree / "w"
        self.written_in.mkdir(parents=True, exist_ok=True)
        if stored == ABSOLUTE:
            stored = str(tree / "abs" / "v.blockfs")
        self.stored = stored
        self.levels = []  # (directory file, voxels it reads back) of each level
        self.path = self.write(stored, microscopy_volume(SHAPE, seed))
        self.expected = self.levels[0][1]
        if stored == PYRAMID:
            self.write("out/2_2_2/precomputed.blockfs", pyramid.downsample(self.expected))
            scales = [{"chunk_sizes": [list(BLOCK)], "encoding": "raw", "key": key,
                       "resolution": [r, r, r], "size": list(voxels.shape),  # z, y, x as
                       "voxel_offset": [0, 0, 0]}                            # precomputed-tif
                      for (key, voxels), r in zip(self.level_keys(), (1, 2))]
            info = {"data_type": "uint16", "num_channels": 1, "type": "image", "scales": scales}
            (self.written_in / "out" / "info").write_text(json.dumps(info))

    def write(self, stored, voxels):
        path = Path(os.path.normpath(self.written_in / stored))
        path.parent.mkdir(parents=True, exist_ok=True)
        geometry = write_format1(path, voxels, BLOCK, N_FILES, Compression.zstd, 3, stored)
        self.levels.append((path, as_written(voxels, geometry)))
        return path

    def level_keys(self):
        return [(os.path.basename(os.path.dirname(path)), voxels) for path, voxels in self.levels]

    def moved(self, new_tree):
        """Move the whole tree by hand (shutil.move, as `mv` does); self now describes it."""
        shutil.move(self.tree, new_tree)
        self.levels = [(new_tree / path.relative_to(self.tree), voxels)
                       for path, voxels in self.levels]
        self.tree, self.written_in, self.path = new_tree, new_tree / "w", self.levels[0][0]
        return self


def opened_from(tmp_path, volume, where):
    """(working directory, directory file path to open) for a place to open the volume from:
    the folder it was written in (by the name its writer typed), another folder, or the
    folder it was written in after the whole tree was moved by hand."""
    if where == "written":
        return volume.written_in, volume.stored
    if where == "moved":
        volume.moved(tmp_path / "moved")
        return volume.written_in, str(volume.path)
    other = tmp_path / "other"
    other.mkdir()
    return other, str(volume.path)


def stored_names(path):
    return read_header(path).data_files


def read_like_the_original(path):
    """Every voxel of a format 1 volume, each data file opened by its stored name as the
    original blockfs opens it: absolute, or relative to the working directory."""
    header = read_header(path)
    geometry, blosc = header.geometry, numcodecs_blosc().Blosc()
    out = np.zeros(geometry.shape, header.dtype)
    for block, (offset, size, number) in enumerate(read_index(path, header).tolist()):
        if size == 0:
            continue
        with open(header.data_files[number], "rb") as f:
            f.seek(offset)
            raw = f.read(size)
        x, y, z = geometry.block_origin(block)
        zs, ys, xs = geometry.block_shape(x, y, z)
        out[z:z + zs, y:y + ys, x:x + xs] = np.frombuffer(blosc.decode(raw), header.dtype
                                                          ).reshape(zs, ys, xs)
    return out


# ------------------------------------------------------- in this process --

@pytest.mark.parametrize("where", ["written", "other", "moved"])
@pytest.mark.parametrize("stored", STORED)
def test_open_info_and_check(tmp_path, monkeypatch, stored, where):
    volume = Written(tmp_path / "tree", stored)
    assert stored_names(volume.path)[0] == f"{volume.stored}.0"  # as the original stores it
    cwd, path = opened_from(tmp_path, volume, where)
    monkeypatch.chdir(cwd)
    for level_path, expected in volume.levels:
        with Directory.open(path if level_path == volume.path else level_path) as directory:
            np.testing.assert_array_equal(directory[:], expected)
            beside = [f"{level_path}.{i}" for i in range(N_FILES)]
            assert all(map(os.path.samefile, directory.block_filenames, beside))
    found = volume_info(path)
    assert [f["bytes"] for f in found["data_files"]] == [
        os.path.getsize(f"{volume.path}.{i}") for i in range(N_FILES)]
    lines = []
    assert fsck(path, silent=True, out=lines.append) == 0, lines


def test_the_directory_files_folder_wins_over_the_working_directory(tmp_path, monkeypatch):
    """`v.blockfs.0` of p/v.blockfs opened from q, where another volume's v.blockfs.0 is."""
    p = Written(tmp_path / "p", "v.blockfs", seed=1)
    q = Written(tmp_path / "q", "v.blockfs", seed=2)
    monkeypatch.chdir(q.written_in)
    np.testing.assert_array_equal(Directory.open(p.path)[:], p.expected)


def test_the_working_directory_finds_what_is_not_beside(tmp_path, monkeypatch):
    """A directory file copied elsewhere alone reads from its writer's working directory."""
    volume = Written(tmp_path / "tree", "a/b/v.blockfs")
    alone = tmp_path / "alone" / "v.blockfs"
    alone.parent.mkdir()
    shutil.copy(volume.path, alone)
    monkeypatch.chdir(volume.written_in)
    np.testing.assert_array_equal(Directory.open(alone)[:], volume.expected)


def test_places_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    directory = "/data/vol/v.blockfs"
    assert [p for p, _ in data_file_places(directory, "a/b/v.blockfs.0", 1)] == [
        "/data/vol/a/b/v.blockfs.0", f"{tmp_path}/a/b/v.blockfs.0", "/data/vol/v.blockfs.0"]
    assert [p for p, _ in data_file_places(directory, "/scratch/v.blockfs.0", 1)] == [
        "/scratch/v.blockfs.0", "/data/vol/v.blockfs.0"]
    assert [p for p, _ in data_file_places(directory, "v.blockfs.0", 2)] == [
        "/data/vol/v.blockfs.0"]  # format 2: relative to the directory file, as before


def test_a_data_file_found_nowhere(tmp_path, monkeypatch):
    volume = Written(tmp_path / "tree", "a/b/v.blockfs")
    os.remove(f"{volume.path}.1")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    places = [str(volume.path.parent / "a/b/v.blockfs.1"), str(other / "a/b/v.blockfs.1"),
              f"{volume.path}.1"]
    with pytest.raises(DataFileNotFoundError) as error:
        resolve_data_file(str(volume.path), "a/b/v.blockfs.1", 1)
    message = str(error.value)
    assert str(volume.path) in message and "'a/b/v.blockfs.1'" in message
    assert all(place in message for place in places), message
    assert isinstance(error.value, FileNotFoundError)
    # The volume still opens; reading a block of that file raises the same error.
    directory = Directory.open(volume.path)
    with pytest.raises(DataFileNotFoundError, match="not found in any of 3 places"):
        directory[:]
    # blockfs-info reports the file missing; blockfs-fsck each of its blocks, with the places.
    found = volume_info(volume.path)
    assert [f["bytes"] is None for f in found["data_files"]] == [False, True, False]
    lines = []
    assert fsck(str(volume.path), silent=True, out=lines.append) == 1
    assert any(places[1] in line for line in lines if line.startswith("damaged:")), lines
    # blockfs-cp refuses before creating anything.
    with pytest.raises(BlockfsError, match="'a/b/v.blockfs.1' of volume .* not found in any"):
        relocate(volume.path, tmp_path / "copy", move=False)
    assert not (tmp_path / "copy").exists()


# -------------------------------------------------------------- programs --

@pytest.mark.mpi
@pytest.mark.parametrize("stored, where", [("a/b/v.blockfs", "written"), (PYRAMID, "moved")])
def test_info_and_fsck_programs(tmp_path, stored, where):
    volume = Written(tmp_path / "tree", stored)
    cwd, path = opened_from(tmp_path, volume, where)
    found = json.loads(program(0, "info", path, "--json", cwd=cwd).stdout)
    assert [f["bytes"] for f in found["data_files"]] == [
        os.path.getsize(f"{volume.path}.{i}") for i in range(N_FILES)]
    checked = program(2, "fsck", path, cwd=cwd)
    assert ": 0 problem(s)" in checked.stdout, checked.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("name, stored, dest", [
    ("cp", "a/b/v.blockfs", "copy"),
    ("mv", "../x/v.blockfs", "../moved"),
    ("mv", PYRAMID, "/"),
])
def test_cp_and_mv_store_absolute_names(tmp_path, monkeypatch, name, stored, dest):
    """Run from the folder the volume was written in, with the paths its user would type."""
    volume = Written(tmp_path / "tree", stored)
    dest = str(tmp_path / "elsewhere") if dest == "/" else dest
    program(2, name, volume.stored, dest, cwd=volume.written_in)
    moved = volume.written_in / dest / volume.path.name
    names = stored_names(moved)
    assert all(os.path.isabs(n) and os.path.dirname(n) == os.path.abspath(moved.parent)
               for n in names), names
    assert os.path.exists(volume.path) == (name == "cp")
    np.testing.assert_array_equal(Directory.open(moved)[:], volume.expected)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(read_like_the_original(moved), volume.expected)


@pytest.mark.mpi
def test_serve(tmp_path, monkeypatch):
    """A relative-name pyramid and a single relative-name volume, served after a move of
    their tree by hand, from another working directory."""
    levels = Written(tmp_path / "tree", PYRAMID)
    single = Written(tmp_path / "tree", "a/b/v.blockfs", seed=3)
    levels.moved(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    served = Served(tmp_path / "moved", tmp_path / "serve.log")
    try:
        for url, expected in [(f"/w/out/{key}", voxels) for key, voxels in levels.level_keys()] \
                + [("/w/a/b/v.blockfs/1_1_1", single.expected)]:
            z, y, x = expected.shape
            status, _, body = served.get(f"{url}/0-{x}_0-{y}_0-{z}")
            assert status == 200, (url, body)
            np.testing.assert_array_equal(np.frombuffer(body, "<u2").reshape(z, y, x), expected)
        status, _, body = served.get("/w/out/info")
        assert status == 200 and [s["size"] for s in json.loads(body)["scales"]] == [
            [50, 45, 40], [25, 23, 20]]
    finally:
        served.stop()


@pytest.mark.mpi
def test_blockfs2tif(tmp_path):
    import tifffile
    volume = Written(tmp_path / "tree", PYRAMID)
    program(0, "blockfs2tif", "--input", volume.stored, "--output-pattern", "tif/z_%02d.tif",
            "--n-workers", "2", "--silent", cwd=volume.written_in)
    planes = [tifffile.imread(volume.written_in / "tif" / f"z_{z:02d}.tif")
              for z in range(SHAPE[0])]
    np.testing.assert_array_equal(np.stack(planes), volume.expected)
