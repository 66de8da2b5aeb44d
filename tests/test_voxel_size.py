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


# ------------------------------------------------ carried by every program --

import json  # noqa: E402
import sys  # noqa: E402

import h5py  # noqa: E402
import tifffile  # noqa: E402

from blockfs_mpi import Directory  # noqa: E402
from conftest import run_checked  # noqa: E402


def program(name, *args, expect_failure=False):
    return run_checked([sys.executable, "-m", f"blockfs_mpi.{name}", *map(str, args)],
                       timeout=120, expect_failure=expect_failure)


def resolutions(pyramid_folder):
    with open(pyramid_folder / "info") as f:
        return [scale["resolution"] for scale in json.load(f)["scales"]]


@pytest.mark.parametrize("given", [["--voxel-size", "1.8,1.8,2.0um"],
                                   ["--voxel-size", "1.8,1.8,2", "--unit", "micrometer"],
                                   ["--metadata", "VoxelSize=[1.8,1.8,2.0]"]])  # the README's
def test_write_stores_the_voxel_size_and_the_pyramid_agrees(tmp_path, given):
    program("write", "synthetic:12x20x24", tmp_path / "pyr", "--levels", "3", "--silent", *given)
    level1 = Directory.open(str(tmp_path / "pyr" / "1_1_1" / "precomputed.blockfs"))
    assert from_metadata(level1.metadata) == VoxelSize(1.8, 1.8, 2, "micrometer")
    assert resolutions(tmp_path / "pyr") == [[1800, 1800, 2000], [3600, 3600, 4000],
                                             [7200, 7200, 8000]]


def test_the_voxel_size_given_twice_or_a_unit_alone_is_refused(tmp_path):
    result = program("write", "synthetic:8x8x8", tmp_path / "v.blockfs", "--voxel-size", "1,1,1",
                     "--metadata", "VoxelSize=[2,2,2]", expect_failure=True)
    assert "the voxel size is given twice" in result.stderr
    result = program("write", "synthetic:8x8x8", tmp_path / "v.blockfs", "--unit", "um",
                     expect_failure=True)
    assert result.stderr == "error: --unit gives the unit of the --voxel-size numbers: pass both\n"
    assert not list(tmp_path.iterdir())


def test_downsample_takes_level1s_voxel_size_and_caps_levels(tmp_path):
    """Without --voxel-size the info has level 1's recorded size in nm; --levels beyond one
    voxel is capped with a warning; --voxel-size (with a unit) overrides."""
    level1 = tmp_path / "pyr" / "1_1_1" / "precomputed.blockfs"
    level1.parent.mkdir(parents=True)
    program("write", "synthetic:5x6x7", level1, "--voxel-size", "0.5,0.5,1um", "--silent")
    result = program("downsample", level1, "--levels", "9", "--silent")
    assert "--levels 9: a volume of 7x6x5 voxels (x, y, z) halves down to one voxel in 4 " \
           "levels; making 4" in result.stderr
    assert resolutions(tmp_path / "pyr") == [[500, 500, 1000], [1000, 1000, 2000],
                                             [2000, 2000, 4000], [4000, 4000, 8000]]
    program("downsample", level1, "--levels", "2", "--voxel-size", "4,4,40", "--overwrite",
            "--silent")
    assert resolutions(tmp_path / "pyr") == [[4, 4, 40], [8, 8, 80]]


def test_write_caps_levels_beyond_one_voxel(tmp_path):
    result = program("write", "synthetic:3x4x2", tmp_path / "pyr", "--levels", "6", "--silent")
    assert "making 3" in result.stderr
    assert len(resolutions(tmp_path / "pyr")) == 3 and resolutions(tmp_path / "pyr")[0] == \
        [1, 1, 1]


def test_exports_carry_the_voxel_size(tmp_path):
    """blockfs2hdf: element_size_um (z, y, x) on the dataset; blockfs2tif: TIFF resolution
    tags (pixels per centimetre), whole slabs and y-stripes alike."""
    volume = tmp_path / "v.blockfs"
    program("write", "synthetic:4x8x8", volume, "--voxel-size", "1.8,1.6,2um", "--silent")
    program("blockfs2hdf", volume, tmp_path / "v.h5", "/v", "--silent")
    with h5py.File(tmp_path / "v.h5", "r") as f:
        assert list(f["v"].attrs["element_size_um"]) == pytest.approx([2, 1.6, 1.8])
    for options in ([], ["--y-stripe", "4"]):
        folder = tmp_path / f"tif{len(options)}"
        program("blockfs2tif", volume, folder / "z%02d.tif", "--silent", *options)
        page = tifffile.TiffFile(folder / "z03.tif").pages.first
        assert page.tags["ResolutionUnit"].value == 3  # centimetre
        assert page.get_resolution("MICROMETER") == pytest.approx((1 / 1.8, 1 / 1.6))
