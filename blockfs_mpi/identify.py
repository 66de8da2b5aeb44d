"""What a path on disk is, said in a user's words, and which paths a writer may replace.

A writer told to overwrite may replace a blockfs volume and its own data
files, nothing else: a user's source TIFF, an HDF5 file or a folder given as
the output by mistake is refused before anything is created or truncated.
A reader given a folder, a pyramid, a data file or an HDF5 group where a
volume or dataset is expected is told what it got and what to pass instead.
"""
import glob
import os
import re
from typing import TYPE_CHECKING

from . import format as fmt
from .errors import BlockfsError, FormatError

if TYPE_CHECKING:
    import h5py

PYRAMID_LEVEL1 = os.path.join("1_1_1", "precomputed.blockfs")

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# Leading bytes of the files a microscopy lab keeps beside its volumes.
SIGNATURES = (
    (fmt.FORMAT1_MAGIC, "a blockfs volume (format 1)"),
    (fmt.FORMAT2_MAGIC, "a blockfs volume (format 2)"),
    (fmt.FRAME_MAGIC, "a blockfs data file"),
    (b"II*\0", "a TIFF file"),
    (b"MM\0*", "a TIFF file"),
    (b"II+\0", "a BigTIFF file"),
    (b"MM\0+", "a BigTIFF file"),
    (HDF5_MAGIC, "an HDF5 file"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\0\0\0\x0cjP  \r\n\x87\n", "a JPEG 2000 file"),
    (b"\xffO\xffQ", "a JPEG 2000 codestream"),
    (b"PK\x03\x04", "a zip file"),
)
VOLUME_MAGICS = (fmt.FORMAT1_MAGIC, fmt.FORMAT2_MAGIC)


class ReplaceRefusedError(BlockfsError):
    """An output path holds something other than a blockfs volume, so it is not replaced."""


def leading_bytes(path: str, count: int = 16) -> bytes:
    """The first count bytes of the file at path (fewer if it is shorter)."""
    with open(path, "rb") as f:
        return f.read(count)


def describe(path: str) -> str:
    """What path is, e.g. 'a TIFF file', 'a pyramid folder (its level 1 is …)', 'a folder',
    'data file 0 of the volume x.blockfs'."""
    if os.path.isdir(path):
        level1 = os.path.join(path, PYRAMID_LEVEL1)
        if os.path.exists(level1):
            return f"a pyramid folder (its level 1 is {level1})"
        if os.path.exists(os.path.join(path, "zarr.json")):
            return "a zarr folder"
        volumes = volumes_in(path)
        if volumes:
            return f"a folder (of the volume{'s' if len(volumes) > 1 else ''} " \
                   f"{', '.join(volumes)})"
        return "a folder"
    if not os.path.exists(path):
        return "nothing (no such file)"
    owner = volume_of_data_file(path)
    if owner:
        return f"data file {path.rsplit('.', 1)[1]} of the volume {owner}"
    head = leading_bytes(path)
    if not head:
        return "an empty file"
    for magic, what in SIGNATURES:
        if head.startswith(magic):
            return what
    return "a file that is not a blockfs volume"


def volumes_in(folder: str, most: int = 5) -> list[str]:
    """The blockfs directory files directly in folder (their paths, at most `most`)."""
    found = sorted(p for p in glob.glob(os.path.join(glob.escape(folder), "*")) if is_volume(p))
    return found[:most]


def volume_of_data_file(path: str) -> str | None:
    """The directory file of the volume path is a data file of (`x.blockfs.3` -> `x.blockfs`,
    when that is a volume), else None."""
    match = re.fullmatch(r"(.+)\.\d+", path)
    return match.group(1) if match and is_volume(match.group(1)) else None


def meant_volume(path: str) -> str | None:
    """The directory file a user most likely meant by path, which is not one: a pyramid's
    level 1, the volume of a data file, the one volume in a folder (None if no such guess)."""
    if os.path.isdir(path):
        level1 = os.path.join(path, PYRAMID_LEVEL1)
        if is_volume(level1):
            return level1
        volumes = volumes_in(path, 2)
        return volumes[0] if len(volumes) == 1 else None
    return volume_of_data_file(path) if os.path.isfile(path) else None


def not_a_volume(path: str) -> str:
    """One line saying that path is not a blockfs directory file, what it is, and what to
    pass instead."""
    meant = meant_volume(path)
    if meant:
        advice = f"pass {meant}"
    elif os.path.isfile(path) and leading_bytes(path).startswith(HDF5_MAGIC):
        advice = f"blockfs-write '{path}:/<dataset>' <output> converts one of its datasets"
    else:
        advice = "pass a volume's directory file (e.g. x.blockfs)"
    return f"{path} is {describe(path)}, not a blockfs directory file: {advice}"


def datasets_in(group: "h5py.Group", most: int = 10) -> list[str]:
    """The full names of the datasets in an h5py group and its subgroups (at most `most`)."""
    found: list[str] = []

    def visit(_: str, item: "h5py.Group | h5py.Dataset") -> bool | None:
        if hasattr(item, "shape"):  # an h5py Dataset; groups have none
            found.append(item.name)
        return True if len(found) >= most else None  # anything but None stops the visit

    group.visititems(visit)
    return found


def not_a_dataset(where: str, group: "h5py.Group") -> str:
    """One line saying that an HDF5 group was given where a dataset is expected (where: the
    file and name as the user wrote them), with the datasets it holds."""
    names = datasets_in(group)
    held = f"its datasets: {', '.join(names)}" if names else "it holds no dataset"
    return f"{where}: {group.name} is an HDF5 group, not a dataset; {held}"


def is_volume(path: str) -> bool:
    """True if path is a blockfs directory file (format 1 or 2), judged by its magic."""
    return os.path.isfile(path) and leading_bytes(path, 8) in VOLUME_MAGICS


def may_hold_data_file(path: str, own: set[str]) -> bool:
    """True if path can become a data file of a new volume without destroying anything:
    it does not exist, is empty, is one of the old volume's own data files, or holds frames."""
    if not os.path.lexists(path) or path in own:
        return True
    return os.path.isfile(path) and leading_bytes(path, 4) in (b"", fmt.FRAME_MAGIC)


def own_data_files(directory_file: str) -> set[str]:
    """The data files of the volume at directory_file, where they are (none if its header
    cannot be read: then only empty files and files of frames may be replaced)."""
    from .reader import locate_data_files, read_header  # reader reports with describe()
    try:
        return set(locate_data_files(directory_file, read_header(directory_file))[0])
    except (FormatError, OSError):
        return set()


def check_replaceable(directory_file: str, data_files: list[str]) -> bool:
    """Refuse to write a volume at directory_file and data_files (absolute paths) if that
    would replace anything but a blockfs volume and its own data files. True if a volume is
    there and will be replaced."""
    own = set()
    if os.path.lexists(directory_file):
        if not is_volume(directory_file):
            raise ReplaceRefusedError(
                f"{directory_file} is {describe(directory_file)}, not a blockfs volume: "
                f"refusing to replace it (only a blockfs volume is overwritten); choose "
                f"another output name")
        own = own_data_files(directory_file)
    for number, path in enumerate(data_files):
        if not may_hold_data_file(path, own):
            raise ReplaceRefusedError(
                f"{path} is {describe(path)}: it would become data file {number} of "
                f"{directory_file}, so nothing was written; move it away or choose another "
                f"output name")
    return os.path.exists(directory_file)
