"""napari's reader of blockfs volumes and pyramids (npe2 manifest: napari.yaml, `napari` extra).

`napari volume.blockfs` opens a volume as an image of one dask array, `napari pyramid/` a
pyramid folder as a multiscale image (a labels layer for a `mode` pyramid) of one dask
array per level, each read lazily in multiples of its blocks, scaled by the voxel size
(its unit in the layer's metadata).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import pyramid
from .directory import Directory
from .identify import is_volume
from .zarr_export import level_paths
from .zarr_view import downsampling_method, pyramid_voxel_size, read_info

if TYPE_CHECKING:  # imported where a volume is read: napari asks get_reader about many paths
    import dask.array

OnePath = str | os.PathLike[str]
# What napari hands a reader: one path, or a list of them.
PathOrPaths = OnePath | list[OnePath] | tuple[OnePath, ...]
# A napari layer: (data, attributes, layer type).
LayerData = tuple["dask.array.Array | list[dask.array.Array]", dict[str, Any], str]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """read, if path (or a list of one path) is a blockfs volume or pyramid folder; else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = os.fspath(path)
    if os.path.isdir(path):
        return read if is_volume(pyramid.level_path(path, 1)) else None
    return read if os.path.isfile(path) and is_volume(path) else None


def read(path: PathOrPaths) -> list[LayerData]:
    """napari layer data [(data, attributes, layer type)] of a volume or pyramid folder."""
    import dask.array

    path = os.fspath(path[0] if isinstance(path, (list, tuple)) else path)
    folder = path if os.path.isdir(path) else None
    volumes = [Directory.open(p) for p in level_paths(path)]
    size = pyramid_voxel_size(folder, volumes[0].metadata)
    # dask.array.from_array is unannotated
    arrays = [dask.array.from_array(  # type: ignore[no-untyped-call]
                  volume, name=f"blockfs-{id(volume)}")
              for volume in volumes]  # named: dask need not hash the volume
    attributes: dict[str, Any] = {"name": os.path.basename(os.path.normpath(path)),
                                  "scale": size.zyx,
                                  "metadata": {**volumes[0].metadata, "unit": size.unit}}
    kind = "image"
    if folder is not None:
        attributes["multiscale"] = True
        kind = "labels" if downsampling_method(read_info(folder)) == "mode" else "image"
    return [(arrays if folder is not None else arrays[0], attributes, kind)]
