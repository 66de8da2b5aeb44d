"""blockfs-info on the real format-1 volume and on format-2 volumes, as text and as JSON;
every figure it prints is checked against the files themselves."""
import json
import os
import sys

import numpy as np
import pytest

from blockfs_mpi import Directory, index
from blockfs_mpi import format as fmt
from blockfs_mpi.describe import volume_info
from blockfs_mpi.index import entry_runs, read_index
from blockfs_mpi.reader import read_header
from conftest import microscopy_volume, run_checked, write_array


def info(path, *options, expect_failure=False):
    result = run_checked([sys.executable, "-m", "blockfs_mpi.info", str(path), *options],
                         timeout=60, expect_failure=expect_failure)
    return json.loads(result.stdout) if "--json" in options else result


def test_format1_figures(format1_copy):
    path = format1_copy / "fixture.blockfs"
    found = info(path, "--json")
    assert (found["format"], found["dtype"], found["compression"],
            found["compression_level"]) == (1, "uint16", "zstd", 5)
    assert found["extent"] == {"x": 80, "y": 90, "z": 100}
    assert found["block_size"] == {"x": 32, "y": 32, "z": 32}
    # blocks (32, 32, 32) (whole) and (64, 64, 96) (16 x 26 x 4 voxels) were never written
    assert (found["blocks"], found["blocks_present"], found["blocks_missing"]) == (36, 34, 2)
    assert found["uncompressed_bytes"] == 2 * (80 * 90 * 100 - 32 ** 3 - 16 * 26 * 4)
    sizes = [os.path.getsize(format1_copy / f"fixture.blockfs.{i}") for i in range(3)]
    assert [f["bytes"] for f in found["data_files"]] == sizes
    assert found["compressed_bytes"] == sum(sizes)  # format 1 stores bare payloads
    assert found["metadata"]["VoxelSize"] == [1.8, 1.8, 2.0]


def test_format2_text_and_a_missing_data_file(tmp_path):
    path = tmp_path / "v.blockfs"
    voxels = microscopy_volume((40, 50, 60))
    write_array(path, voxels, block=32, metadata={"VoxelSize": [1, 1, 2]})
    found = info(path, "--json")
    n_blocks = 2 * 2 * 2
    assert (found["format"], found["blocks_present"], found["blocks_missing"]) == (2, n_blocks, 0)
    assert found["uncompressed_bytes"] == voxels.nbytes
    on_disk = sum(f["bytes"] for f in found["data_files"])
    assert on_disk == found["compressed_bytes"] + n_blocks * fmt.FRAME_SIZE  # one frame each
    assert found["compression_ratio"] == round(voxels.nbytes / found["compressed_bytes"], 3)
    os.remove(f"{path}.1")
    text = info(path).stdout.splitlines()
    assert f"{path}: blockfs format 2" in text
    assert "extent (x, y, z): 60 x 50 x 40 voxels, uint16" in text
    assert f"blocks: {n_blocks} present, 0 missing of {n_blocks}" in text
    assert any(line.strip().endswith(": missing") for line in text), text
    assert "metadata VoxelSize: [1, 1, 2]" in text


def test_blocks_never_written_count_as_missing(tmp_path):
    path = tmp_path / "sparse.blockfs"
    with Directory(64, 64, 64, np.uint8, str(path), n_filenames=1, x_block_size=32,
                   y_block_size=32, z_block_size=32) as directory:
        directory.create()
        directory.write_block(np.ones((32, 32, 32), np.uint8), 32, 0, 0)
    found = info(path, "--json")
    assert (found["blocks_present"], found["blocks_missing"]) == (1, 7)
    assert found["uncompressed_bytes"] == 32 ** 3


def test_not_a_volume_is_one_line(tmp_path):
    result = info(tmp_path / "nothing.blockfs", expect_failure=True)
    assert "nothing.blockfs" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("entries", [1, 5, 7, 36])
def test_index_read_in_chunks(format1_copy, tmp_path, monkeypatch, entries):
    """info and fsck read a huge index a run of entries at a time: the runs, joined, are the
    whole index, for format 1 (entries past the end of its short directory file included)
    and format 2; and info's figures do not depend on the run length."""
    second = write_array(tmp_path / "v.blockfs", microscopy_volume((40, 50, 70)), block=16)
    for path in (format1_copy / "fixture.blockfs", second):
        header = read_header(path)
        runs = list(entry_runs(path, header, entries))
        assert [first for first, _ in runs] == list(range(0, header.geometry.n_blocks, entries))
        joined = np.concatenate([chunk for _, chunk in runs])
        assert (joined == read_index(path, header)).all()
        whole = volume_info(path)
        with monkeypatch.context() as patch:
            patch.setattr(index, "RUN", entries)
            assert volume_info(path) == whole
