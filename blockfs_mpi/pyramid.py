"""Multiscale pyramids: mip levels as blockfs volumes and Neuroglancer's precomputed `info`.

The layout is precomputed-tif's: `<dest>/info` and one volume per level,
`<dest>/<r>_<r>_<r>/precomputed.blockfs` for r = 1, 2, 4 ... Level r+1 is
made from level r by a 2x2x2 mean (images) or mode (labels); each of its
extents is (n + 1) // 2 of the one below, and an edge voxel summarises only
the voxels that exist below it.
"""
import json
import os

import numpy as np

from . import parallel, relocate
from .commit import write_atomically
from .convert import my_share
from .directory import Directory
from .errors import BlockfsError
from .progress import Progress

DIRECTORY_NAME = "precomputed.blockfs"
METHODS = ("mean", "mode")


def scale_key(level):
    """The scale key of mip level 1, 2, 3 ...: '1_1_1', '2_2_2', '4_4_4' ..."""
    r = 2 ** (level - 1)
    return f"{r}_{r}_{r}"


def level_path(dest, level):
    """The directory file of a mip level of the pyramid in dest."""
    return os.path.join(dest, scale_key(level), DIRECTORY_NAME)


def pyramid_folder(path):
    """The pyramid folder of a level 1 directory file `<dest>/1_1_1/precomputed.blockfs`."""
    path = os.path.abspath(path)
    if os.path.abspath(level_path(os.path.dirname(os.path.dirname(path)), 1)) != path:
        raise BlockfsError(f"{path} is not a pyramid's level 1: it must be "
                           f"<dest>/1_1_1/{DIRECTORY_NAME}, or name the pyramid folder with "
                           f"--output to copy (or --move) the volume there")
    return os.path.dirname(os.path.dirname(path))


def groups(shape):
    """The 2x2x2 groups of a (z, y, x) array as (candidates, valid).

    candidates has shape (8, (z+1)//2, (y+1)//2, (x+1)//2): the voxel at
    offset (dz, dy, dx) of each group; where a group sticks out of an odd
    extent, valid is False and the candidate is a copy of offset (0, 0, 0).
    """
    out = tuple((n + 1) // 2 for n in shape)
    index, valid = [], []
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                axes = [np.minimum(2 * np.arange(m) + d, n - 1)
                        for m, d, n in zip(out, (dz, dy, dx), shape)]
                ok = [2 * np.arange(m) + d < n for m, d, n in zip(out, (dz, dy, dx), shape)]
                index.append(np.ix_(*axes))
                valid.append(ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :])
    return index, np.stack(valid)


def downsample(block, method="mean"):
    """A (z, y, x) array reduced 2x2x2: the mean (floored for integers, as precomputed-tif
    does) or, for integer labels, the mode (the most frequent value, the smallest on ties)
    of each group of voxels present."""
    block = np.asarray(block)
    index, valid = groups(block.shape)
    candidates = np.stack([block[i] for i in index])
    if method == "mean":
        accumulate = np.float64 if block.dtype.kind in "fc" else (
            np.int64 if block.dtype.kind == "i" else np.uint64)
        total = np.where(valid, candidates, 0).sum(axis=0, dtype=accumulate)
        count = valid.sum(axis=0)
        mean = total / count if block.dtype.kind in "fc" else total // count.astype(accumulate)
        return mean.astype(block.dtype)
    if method != "mode":
        raise BlockfsError(f"unknown downsampling method {method!r}: use mean or mode")
    counts = np.stack([((candidates == c) & valid).sum(axis=0) for c in candidates])
    counts[~valid] = -1
    best = counts.max(axis=0)
    return np.where(counts == best, candidates, np.iinfo(block.dtype).max).min(axis=0)


def make_level(source_path, dest_path, method, comm, silent=False, **volume_options):
    """Write the volume at dest_path, source reduced 2x2x2 (collective).

    The new level's blocks are dealt out in runs, round-robin (convert.my_share); a
    rank reads, for each, only the (at most) 2x2x2 blocks of the level below that cover it.
    """
    source = Directory.open(source_path)
    z, y, x = ((n + 1) // 2 for n in source.shape)
    zb, yb, xb = source.block_size
    os.makedirs(os.path.dirname(dest_path), exist_ok=True)
    target = Directory(x, y, z, source.dtype, dest_path, comm=comm, x_block_size=xb,
                       y_block_size=yb, z_block_size=zb, **volume_options)
    target.create()
    mine = my_share(range(target.geometry.n_blocks), comm)  # block numbers: no list of all
    progress = Progress(comm, target.geometry.block_count,
                        f"mip {os.path.basename(os.path.dirname(dest_path))}", disable=silent)
    with target:
        for number in mine:
            bx, by, bz = target.geometry.block_origin(number)
            zs, ys, xs = target.get_block_size(bx, by, bz)
            below = source[2 * bz:2 * (bz + zs), 2 * by:2 * (by + ys), 2 * bx:2 * (bx + xs)]
            block = downsample(below, method)
            target.write_block(block, bx, by, bz)
            progress.update(1, below.nbytes)
        progress.close()
    source.close()


def info(dest, levels, voxel_size, method="mean"):
    """The precomputed `info` of a pyramid whose levels 1..levels exist in dest."""
    scales = []
    for level in range(1, levels + 1):
        volume = Directory.open(level_path(dest, level))
        r = 2 ** (level - 1)
        scales.append(dict(key=scale_key(level), size=[volume.x_extent, volume.y_extent,
                                                       volume.z_extent],
                           resolution=[v * r for v in voxel_size], voxel_offset=[0, 0, 0],
                           chunk_sizes=[[volume.x_block_size, volume.y_block_size,
                                         volume.z_block_size]], encoding="raw"))
        dtype = volume.dtype
        volume.close()
    return {"@type": "neuroglancer_multiscale_volume",
            "type": "segmentation" if method == "mode" else "image",
            "data_type": dtype.name, "num_channels": 1, "scales": scales}


def build(dest, levels, voxel_size=(1, 1, 1), method="mean", comm=None, overwrite=False,
          silent=False):
    """Make levels 2..levels of the pyramid in dest from its level 1 and write its info.

    Collective: each level is committed by every rank before the next starts.
    Existing levels are replaced only with overwrite.
    """
    if method not in METHODS:
        raise BlockfsError(f"unknown downsampling method {method!r}: use mean or mode")
    if levels < 1:
        raise BlockfsError(f"--levels must be at least 1, not {levels}")
    base = Directory.open(level_path(dest, 1))
    if method == "mode" and base.dtype.kind not in "iu":
        raise BlockfsError(f"mode is for integer label volumes, not {base.dtype}")
    options = dict(compression=base.compression, compression_level=base.compression_level,
                   shuffle=base.header.shuffle)
    base.close()
    refuse_existing(dest, levels, overwrite)
    for level in range(2, levels + 1):
        make_level(level_path(dest, level - 1), level_path(dest, level), method, comm, silent,
                   **options)
    parallel.on_rank0(comm, lambda: write_info(dest, levels, voxel_size, method), BlockfsError)


def refuse_existing(dest: str, levels: int, overwrite: bool, first: int = 2) -> None:
    """Refuse to replace levels first..levels that exist in dest, unless overwrite."""
    for level in range(first, levels + 1):
        if os.path.exists(level_path(dest, level)) and not overwrite:
            raise BlockfsError(f"{level_path(dest, level)} exists; pass --overwrite to replace it")


def place_level1(source: str, dest: str, levels: int, move: bool = False, comm=None,
                 overwrite: bool = False, silent: bool = False) -> str:
    """Copy (or move) the volume whose directory file is source into the pyramid folder dest
    as its level 1, <dest>/1_1_1/precomputed.blockfs, with blockfs-cp's (blockfs-mv's) code;
    returns that path. Collective.

    dest is created if missing. Nothing is moved when source is that level 1 already, or
    when one of levels 1..levels exists there without overwrite (refused first, so that a
    refused run leaves the source where it was).
    """
    target = level_path(dest, 1)

    def check():
        if os.path.exists(target) and os.path.exists(source) and os.path.samefile(source, target):
            return True
        refuse_existing(dest, levels, overwrite, first=1)
        os.makedirs(dest, exist_ok=True)
        return False

    if relocate.on_rank0(comm, check):  # refusals are RelocateErrors, raised on every rank
        return target
    return relocate.relocate(source, target, move, force=overwrite, comm=comm, silent=silent)


def write_info(dest, levels, voxel_size, method):
    """Replace dest/info by the precomputed info of levels 1..levels."""
    text = json.dumps(info(dest, levels, voxel_size, method), indent=2)
    write_atomically(os.path.join(dest, "info"), text.encode())


def parse_voxel_size(text):
    """'1800,1800,2000' (x,y,z in nm) -> [1800.0, 1800.0, 2000.0]; whole numbers stay ints."""
    try:
        sizes = [float(v) for v in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) != 3 or min(sizes) <= 0:
        raise BlockfsError(f"--voxel-size {text!r}: expected three positive numbers x,y,z in nm")
    return [int(v) if v.is_integer() else v for v in sizes]
