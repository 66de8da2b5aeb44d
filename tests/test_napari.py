"""napari's reader contribution, without napari or a display: the npe2 manifest is valid and
found through the package's entry point, and its reader gives the layers napari would show."""
import json
import os
from importlib import resources

import numpy as np
import pytest

from blockfs_mpi import Directory, pyramid
from blockfs_mpi.napari_reader import get_reader
from conftest import microscopy_volume, write_array

npe2 = pytest.importorskip("npe2")


def test_manifest_is_valid_and_installed():
    manifest = npe2.PluginManifest.from_file(resources.files("blockfs_mpi") / "napari.yaml")
    manifest.validate_imports()  # every python_name imports
    installed = npe2.PluginManifest.from_distribution("blockfs_mpi")
    assert installed.name == manifest.name == "blockfs_mpi"
    (reader,) = installed.contributions.readers
    assert reader.accepts_directories and reader.command == "blockfs_mpi.get_reader"
    (command,) = installed.contributions.commands
    assert command.python_name == "blockfs_mpi.napari_reader:get_reader"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """A volume recording its voxel size, and a pyramid of it with a precomputed info."""
    root = tmp_path_factory.mktemp("napari")
    voxels = microscopy_volume((20, 30, 40))
    folder = root / "brain"
    level1 = pyramid.level_path(str(folder), 1)
    os.makedirs(os.path.dirname(level1))
    write_array(level1, voxels, block=16, metadata={"VoxelSize": [0.5, 0.5, 2.0],
                                                    "VoxelSizeUnit": "micrometer"})
    pyramid.build(str(folder), 2, (500, 500, 2000), silent=True)
    return root, voxels


def test_a_volume_is_one_lazy_image(volumes):
    root, voxels = volumes
    path = pyramid.level_path(str(root / "brain"), 1)
    read = get_reader(path)
    assert read is not None and get_reader([path]) is read
    [(data, attributes, kind)] = read(path)
    assert kind == "image" and attributes["scale"] == [2.0, 0.5, 0.5]
    assert attributes["metadata"]["unit"] == "micrometer"
    assert data.shape == voxels.shape and all(c % 16 == 0 for c in data.chunks[0][:-1])
    np.testing.assert_array_equal(data[5].compute(), voxels[5])


def test_a_pyramid_is_a_multiscale_image(volumes):
    root, voxels = volumes
    [(levels, attributes, kind)] = get_reader(str(root / "brain"))(str(root / "brain"))
    assert kind == "image" and attributes["multiscale"] and attributes["name"] == "brain"
    assert [level.shape for level in levels] == [(20, 30, 40), (10, 15, 20)]
    np.testing.assert_array_equal(levels[1].compute(),
                                  Directory.open(pyramid.level_path(str(root / "brain"), 2))[...])
    info = json.loads((root / "brain" / "info").read_text())
    info["type"] = "segmentation"  # a mode pyramid: labels
    (root / "brain" / "info").write_text(json.dumps(info))
    assert get_reader(str(root / "brain"))(str(root / "brain"))[0][2] == "labels"
    info["type"] = "image"
    (root / "brain" / "info").write_text(json.dumps(info))


def test_other_paths_are_left_to_other_readers(volumes, tmp_path):
    root, _ = volumes
    (tmp_path / "a.tif").write_bytes(b"II*\0" + bytes(100))
    for path in (tmp_path / "a.tif", tmp_path, tmp_path / "missing", root):
        assert get_reader(str(path)) is None
    level1 = pyramid.level_path(str(root / "brain"), 1)
    assert get_reader([level1, level1]) is None
