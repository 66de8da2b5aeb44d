"""blockfs-write's zarr sources read their voxels with TensorStore where it is installed,
else with zarr-python; BLOCKFS_ZARR_READER picks one. Both give the same voxels."""
import os
import subprocess
import sys

import numpy as np
import pytest

from blockfs_mpi.sources import SourceError, ZarrArray
from conftest import microscopy_volume

zarr = pytest.importorskip("zarr")
pytest.importorskip("tensorstore")


@pytest.mark.parametrize("zarr_format, dtype", [(3, "<u2"), (2, ">u2"), (2, "<i4")])
@pytest.mark.parametrize("reader, named", [("", "TensorStore"), ("tensorstore", "TensorStore"),
                                           ("zarr", "zarr-python")])
def test_each_reader_reads_the_same_voxels(tmp_path, monkeypatch, zarr_format, dtype, reader,
                                           named):
    monkeypatch.setenv("BLOCKFS_ZARR_READER", reader)
    voxels = microscopy_volume((19, 33, 40)).astype(dtype)
    array = zarr.create_array(str(tmp_path / "a.zarr"), shape=voxels.shape, dtype=voxels.dtype,
                              chunks=(8, 16, 16), zarr_format=zarr_format)
    array[:] = voxels
    source = ZarrArray(str(tmp_path / "a.zarr"))
    assert source.description.endswith(f"(read with {named})")
    region = source.read(2, 17, 5, 33, 3, 39)
    np.testing.assert_array_equal(region, voxels[2:17, 5:33, 3:39])
    assert region.dtype.newbyteorder("=") == np.dtype(dtype).newbyteorder("=")


def test_an_unknown_reader_is_refused(tmp_path, monkeypatch):
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(4, 4, 4), dtype="uint8")
    monkeypatch.setenv("BLOCKFS_ZARR_READER", "h5py")
    with pytest.raises(SourceError, match="BLOCKFS_ZARR_READER='h5py': use zarr or tensorstore"):
        ZarrArray(str(tmp_path / "a.zarr"))


def test_a_local_array_read_with_tensorstore_never_imports_zarr_python(tmp_path):
    """The metadata of a local array comes from its JSON: a rank that reads with TensorStore
    does not spend half a second importing zarr-python."""
    voxels = microscopy_volume((9, 20, 24))
    zarr.create_array(str(tmp_path / "a.zarr"), shape=voxels.shape, dtype=voxels.dtype,
                      chunks=(4, 8, 8))[:] = voxels
    np.save(tmp_path / "expected.npy", voxels[1:8, 2:19, 3:24])
    script = ("import sys, numpy as np\n"
              "from blockfs_mpi.sources import open_source\n"
              f"source = open_source({str(tmp_path / 'a.zarr')!r})\n"
              "region = source.read(1, 8, 2, 19, 3, 24)\n"
              f"assert np.array_equal(region, np.load({str(tmp_path / 'expected.npy')!r}))\n"
              "print(source.reader, 'zarr' in sys.modules)\n")
    env = {key: value for key, value in os.environ.items() if key != "BLOCKFS_ZARR_READER"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TensorStore", "False"]


@pytest.mark.parametrize("reader", ["tensorstore", "zarr"])
def test_an_ome_zarr_04_image_stands_for_its_first_level(tmp_path, monkeypatch, reader):
    """A zarr v2 group with 0.4's multiscales in .zattrs: its first dataset is the source."""
    monkeypatch.setenv("BLOCKFS_ZARR_READER", reader)
    voxels = microscopy_volume((10, 12, 14))
    group = zarr.open_group(str(tmp_path / "image.zarr"), mode="w", zarr_format=2)
    group.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "s0"}, {"path": "s1"}],
                                   "axes": [{"name": axis, "type": "space"} for axis in "zyx"]}]
    group.create_array("s0", shape=voxels.shape, dtype=voxels.dtype, chunks=(5, 6, 7))[:] = voxels
    group.create_array("s1", shape=(5, 6, 7), dtype=voxels.dtype, chunks=(5, 6, 7))
    source = ZarrArray(str(tmp_path / "image.zarr"))
    assert (source.shape, source.dtype, source.zarr_format) == (voxels.shape, voxels.dtype, 2)
    assert source.array_path == str(tmp_path / "image.zarr" / "s0")
    np.testing.assert_array_equal(source.read(0, 10, 0, 12, 0, 14), voxels)


def test_unreadable_zarr_metadata_is_named(tmp_path):
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(SourceError, match=r"bad.zarr: cannot open zarr: "):
        ZarrArray(str(tmp_path / "bad.zarr"))
    (tmp_path / "odd.zarr").mkdir()
    (tmp_path / "odd.zarr" / "zarr.json").write_text(
        '{"zarr_format": 3, "node_type": "array", "shape": [2, 2, 2], "data_type": "no-type"}')
    with pytest.raises(SourceError, match=r"odd.zarr: cannot open zarr: .*no-type"):
        ZarrArray(str(tmp_path / "odd.zarr"))
