"""blockfs-rebase: folders moved by hand, format 1 kept, index streamed, nothing changed on bad input."""
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import format as fmt
from blockfs_mpi.data_files import rebase, write_directory
from blockfs_mpi.geometry import Geometry
from blockfs_mpi.reader import read_header
from conftest import FORMAT1_FIXTURE
from volumes import format1_volume, format2_volume, program, voxels


def test_real_format1_fixture_in_small_pieces(format1_copy):
    path = format1_copy / "fixture.blockfs"
    old_header, old_bytes = read_header(path), path.read_bytes()
    assert old_header.data_files[0].startswith("/scratch/")
    result = program(0, "rebase", path, "--index-chunk", "7")  # entries straddle the pieces
    assert "now names the data files" in result.stderr
    header = read_header(path)
    assert header.version == 1 and path.read_bytes()[:8] == fmt.FORMAT1_MAGIC
    assert header.data_files == [str(format1_copy / f"fixture.blockfs.{i}") for i in range(3)]
    assert header.metadata == old_header.metadata
    assert path.read_bytes()[header.index_offset:] == old_bytes[old_header.index_offset:]
    expected = np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"]
    np.testing.assert_array_equal(voxels(path), expected)
    again = program(0, "rebase", path)
    assert "nothing changed" in again.stderr


def test_folder_renamed_by_hand(tmp_path):
    path = tmp_path / "old" / "v.blockfs"
    path.parent.mkdir()
    data = format1_volume(path)
    os.rename(tmp_path / "old", tmp_path / "new")
    moved = tmp_path / "new" / "v.blockfs"
    assert read_header(moved).data_files[0] == str(path) + ".0"
    program(1, "rebase", moved)  # under mpiexec too: it is a one-process tool either way
    assert read_header(moved).data_files == [f"{moved}.{i}" for i in range(3)]
    np.testing.assert_array_equal(voxels(moved), data)


def test_format2_relative_names_need_nothing(tmp_path):
    path = tmp_path / "v.blockfs"
    format2_volume(path)
    before = path.read_bytes()
    result = program(0, "rebase", path)
    assert "nothing changed" in result.stderr
    assert path.read_bytes() == before


def test_format2_absolute_names_become_relative(tmp_path):
    path = tmp_path / "v.blockfs"
    data = format2_volume(path)
    header = read_header(path)
    write_directory(str(path), str(path), header,
                    [f"/gone/machine/{name}" for name in header.data_files])
    assert read_header(path).data_files[0].startswith("/gone/")
    assert rebase(path, 64) is True
    assert read_header(path).data_files == header.data_files
    assert read_header(path).index_crc32c == header.index_crc32c
    np.testing.assert_array_equal(voxels(path), data)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_bad_data_files_change_nothing(tmp_path, damage, kind):
    path = tmp_path / "v.blockfs"
    format1_volume(path, data_files=[f"/elsewhere/v.blockfs.{i}" for i in range(3)]) \
        if kind == "format1" else format2_volume(path)
    if damage == "missing":
        os.unlink(f"{path}.1")
    else:
        os.truncate(f"{path}.1", os.path.getsize(f"{path}.1") // 2)
    before = path.read_bytes()
    result = program(0, "rebase", path, expect_failure=True)
    assert ("is missing" if damage == "missing" else "truncated or wrong file") in result.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


@pytest.mark.parametrize("option", ["--index-chunk", "--block-size"])
@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_bad_index_chunk(tmp_path, option, value):
    path = tmp_path / "v.blockfs"
    format2_volume(path)
    before = path.read_bytes()
    result = program(0, "rebase", path, option, value, expect_failure=True)
    assert f"error: {option} must be a number from 1 to 1073741824, not {value!r}" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before


def test_block_size_is_the_old_name_of_index_chunk(format1_copy):
    """--block-size (bytes of index per I/O, not voxels) still works, in 7-byte pieces too."""
    path = format1_copy / "fixture.blockfs"
    result = program(0, "rebase", path, "--block-size", "7")
    assert "now names the data files" in result.stderr
    assert read_header(path).data_files == [str(format1_copy / f"fixture.blockfs.{i}")
                                            for i in range(3)]
    expected = np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"]
    np.testing.assert_array_equal(voxels(path), expected)


def test_index_chunk_and_block_size_together_are_refused(tmp_path):
    path = tmp_path / "v.blockfs"
    format2_volume(path)
    before = path.read_bytes()
    result = program(0, "rebase", path, "--index-chunk", "64", "--block-size", "64",
                     expect_failure=True)
    assert "Traceback" not in result.stderr and "usage" in (result.stderr + result.stdout).lower()
    assert path.read_bytes() == before


def test_not_a_directory_file(tmp_path):
    (tmp_path / "v.blockfs").write_bytes(b"hello world, not a volume")
    result = program(0, "rebase", tmp_path / "v.blockfs", expect_failure=True)
    assert "not a blockfs directory file" in result.stderr
    assert "no such" in program(0, "rebase", tmp_path / "x.blockfs", expect_failure=True).stderr


def test_memory_does_not_grow_with_the_index(tmp_path):
    """A 64 MB format 1 index is rebased in 1 MB pieces with a few MB of memory."""
    geometry = Geometry(1024 * 64, 1024 * 64, 64)  # 1M blocks of 64^3
    header = fmt.Header(geometry=geometry, dtype=np.dtype(np.uint16),
                        data_files=["/scratch/v.blockfs.0"], version=1,
                        n_offset_bits=40, n_size_bits=24)
    path = tmp_path / "v.blockfs"
    entries = fmt.encode_entries1(header, np.zeros(geometry.n_blocks), np.zeros(geometry.n_blocks))
    path.write_bytes(fmt.encode_header1(header) + entries * 8)  # 8M entries of 8 bytes
    Path(f"{path}.0").touch()
    tracemalloc.start()
    try:
        assert rebase(path, 1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes"
    new = read_header(path)
    assert new.data_files == [f"{path}.0"] and new.n_entries == 8 * geometry.n_blocks
