"""Voxel sizes with units: parsed from the command line, recorded in and read from a volume."""
import pytest

from blockfs_mpi.errors import OptionError
from blockfs_mpi.voxel_size import VoxelSize, from_metadata, parse


@pytest.mark.parametrize("text, unit, expected", [
    ("1.8,1.8,2.0um", None, VoxelSize(1.8, 1.8, 2, "micrometer")),
    ("1.8,1.8,2.0 µm", None, VoxelSize(1.8, 1.8, 2, "micrometer")),
    ("1.8,1.8,2", "micrometer", VoxelSize(1.8, 1.8, 2, "micrometer")),
    ("1800,1800,2000", None, VoxelSize(1800, 1800, 2000, "nanometer")),
    ("0.5,0.5,1mm", "mm", VoxelSize(0.5, 0.5, 1, "millimeter")),
])
def test_parse(text, unit, expected):
    assert parse(text, unit) == expected


def test_nanometers_and_metadata():
    size = parse("1.8,1.8,2.0um")
    assert size.in_nanometers() == [1800, 1800, 2000]
    assert size.zyx == [2, 1.8, 1.8]
    assert from_metadata(size.metadata()) == size
    assert from_metadata({"VoxelSize": [1.8, 1.8, 2.0]}) == size  # the original's users: µm
    assert from_metadata({}) is None and from_metadata({"VoxelSize": "big"}) is None


@pytest.mark.parametrize("text, unit, words", [
    ("1,2", None, "expected three positive numbers"),
    ("1,2,-3um", None, "expected three positive numbers"),
    ("1,2,3parsec", None, "unknown length unit 'parsec'"),
    ("1,2,3um", "nm", "says um, --unit says nm"),
])
def test_bad_voxel_sizes(text, unit, words):
    with pytest.raises(OptionError, match=words):
        parse(text, unit)
