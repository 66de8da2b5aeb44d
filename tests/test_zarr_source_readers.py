"""blockfs-write's zarr sources read their voxels with TensorStore where it is installed,
else with zarr-python; BLOCKFS_ZARR_READER picks one. Both give the same voxels."""
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
