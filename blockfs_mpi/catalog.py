"""What blockfs-serve may serve: volumes under one folder, found safely, opened once.

A volume is a pyramid folder with an `info` file and one
`<key>/precomputed.blockfs` per scale (precomputed-tif's layout, format 1 or
2), or a single blockfs directory file (served as one scale, key "1_1_1").
Each is served as precomputed chunks and, through its zarr view
(zarr_view.py), as zarr v3 / OME-Zarr 0.5.
Nothing outside the served folder is ever opened: names with '..', '.',
empty or absolute parts are malformed, paths are resolved through symlinks
and must stay inside, and so must every data file a directory file names.
"""
import collections
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import zarr_view
from .directory import Directory
from .open_files import descriptor_budget
from .pyramid import DIRECTORY_NAME, scale_key
from .voxel_size import VoxelSize, from_metadata
from .zarr_shards import Chunk

MAX_INFO_BYTES = 1 << 20
Stamp = tuple[int, int, int]  # (inode, mtime in ns, size) of a directory file when opened


class BadName(Exception):
    """A request name that cannot name anything (HTTP 400)."""


class NotFound(Exception):
    """Nothing servable by that name (HTTP 404)."""


@dataclass(eq=False)
class _Entry:
    """An open volume of the LRU: its Directory, the stamp of the file it opened (None once
    evicted), how many users hold it, and its zarr view once made."""

    directory: Directory
    stamp: Stamp | None
    users: int = 1
    view: zarr_view.VolumeView | None = None


class Catalog:
    """Volumes under root, with an LRU of open Directory objects shared by threads."""

    def __init__(self, root: str, capacity: int = 64) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"{root} is not a folder")
        self.capacity = capacity
        # Half the descriptors the process may open, shared by the volumes kept open: each
        # reader keeps at most its part of its data files open (reader.BlockReader).
        self.files_per_volume = max(1, descriptor_budget(0.5) // max(1, capacity))
        self._lock = threading.Lock()
        self._open: collections.OrderedDict[str, _Entry] = collections.OrderedDict()  # realpath

    def inside(self, parts: list[str]) -> str:
        """The real path of root/parts, or NotFound if it leaves root (or does not exist)."""
        for part in parts:
            if part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part:
                raise BadName(f"malformed path component {part!r}")
        path = os.path.realpath(os.path.join(self.root, *parts))
        if path != self.root and not path.startswith(self.root + os.sep):
            raise NotFound("outside the served folder")
        if not os.path.exists(path):
            raise NotFound("no such volume")
        return path

    def scales(self, parts: list[str]) -> tuple[dict[str, str], dict[str, Any] | None]:
        """{key: directory file path} of the volume at root/parts, and its info (or None)."""
        path = self.inside(parts)
        if os.path.isfile(path):
            return {scale_key(1): path}, None
        try:
            with open(os.path.join(path, "info"), "rb") as f:
                info = json.loads(f.read(MAX_INFO_BYTES))
            keys = [scale["key"] for scale in info["scales"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise NotFound("no volume (no readable precomputed info)") from None
        found: dict[str, str] = {}
        for key in keys:
            if isinstance(key, str):
                try:
                    found[key] = self.inside(parts + key.split("/") + [DIRECTORY_NAME])
                except (BadName, NotFound):
                    pass
        return found, info

    def info(self, parts: list[str]) -> dict[str, Any]:
        """The precomputed info of a volume; size, chunk sizes and data type come from the
        blockfs files themselves (precomputed-tif wrote size in z, y, x order)."""
        scales, info = self.scales(parts)
        info = info or {"@type": "neuroglancer_multiscale_volume", "type": "image",
                        "scales": [{"key": scale_key(1)}]}  # a single volume: resolution below
        served = []
        for scale in info["scales"]:
            path = scales.get(scale.get("key"))
            if path is None:
                continue
            with self.volume(path) as d:
                scale.update(size=[d.x_extent, d.y_extent, d.z_extent], voxel_offset=[0, 0, 0],
                             chunk_sizes=[[d.x_block_size, d.y_block_size, d.z_block_size]],
                             encoding="raw")
                info.update(data_type=d.dtype.name, num_channels=1)
                if "resolution" not in scale:  # the voxel size it records (nm), else 1 nm
                    size = from_metadata(d.metadata) or VoxelSize(1, 1, 1)
                    scale["resolution"] = size.in_nanometers()
            served.append(scale)
        if not served:
            raise NotFound("no scale of this volume has a blockfs file")
        info["scales"] = served
        return info

    def scale(self, parts: list[str],
              key: str) -> contextlib.AbstractContextManager[Directory]:
        """A context manager giving the open Directory of one scale of a volume."""
        path = self.scales(parts)[0].get(key)
        if path is None:
            raise NotFound(f"no scale {key!r}")
        return self.volume(path)

    @contextlib.contextmanager
    def volume(self, path: str) -> Iterator[Directory]:
        """A context manager giving the open Directory at path (checked, cached)."""
        with self._using(path) as entry:
            yield entry.directory

    def zarr(self, parts: list[str], key: str) -> Chunk:
        """The bytes under key of the zarr v3 view of the volume at root/parts (see
        zarr_view.py): an array for a single volume, an OME-Zarr 0.5 image for a pyramid,
        whose levels are its scales 1_1_1, 2_2_2, ... as they follow each other."""
        scales, info = self.scales(parts)
        if info is None:
            with self.zarr_volume(scales[scale_key(1)]) as view:
                data = view.get(key)
        else:
            levels: list[str] = []
            while scale_key(len(levels) + 1) in scales:
                levels.append(scales[scale_key(len(levels) + 1)])
            if not levels:
                raise NotFound(f"no scale {scale_key(1)} to make the image's level 0 of")
            level, inside = zarr_view.level_key(key)
            if key == zarr_view.METADATA_KEY:
                with self.volume(levels[0]) as d:
                    size = zarr_view.pyramid_voxel_size(self.inside(parts), d.metadata)
                data = zarr_view.image_metadata(len(levels), size,
                                                zarr_view.downsampling_method(info), parts[-1])
            elif level is not None and level < len(levels):
                assert inside is not None  # level_key gives a level with the key inside it
                with self.zarr_volume(levels[level]) as view:
                    data = view.get(inside)
            else:
                data = None
        if data is None:
            raise NotFound(f"no zarr key {key!r} (a block never written is absent: zeros)")
        return data

    @contextlib.contextmanager
    def zarr_volume(self, path: str) -> Iterator[zarr_view.VolumeView]:
        """A context manager giving the zarr_view.VolumeView of the volume at path, made
        once per open Directory so that its re-encoded edge chunks stay cached."""
        with self._using(path) as entry:
            if entry.view is None:  # two threads may both make one: either is right
                entry.view = zarr_view.VolumeView(entry.directory)
            yield entry.view

    @contextlib.contextmanager
    def _using(self, path: str) -> Iterator[_Entry]:
        """The entry of the volume at path, held (kept open) meanwhile."""
        entry = self._acquire(path)
        try:
            yield entry
        finally:
            self._release(entry)

    def _acquire(self, path: str) -> _Entry:
        stat = os.stat(path)
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            found = self._open.get(path)
            if found is not None and found.stamp == stamp:
                self._open.move_to_end(path)
                found.users += 1
                return found
        directory = Directory.open(path, open_files=self.files_per_volume)
        for data_path in directory.reader.data_paths:
            real = os.path.realpath(data_path)
            if not real.startswith(self.root + os.sep):
                raise NotFound("a data file of this volume is outside the served folder")
        entry = _Entry(directory, stamp)
        with self._lock:
            old = self._open.pop(path, None)
            self._open[path] = entry
            if old is not None:
                self._retire(old)
            while len(self._open) > self.capacity:
                self._retire(self._open.popitem(last=False)[1])
        return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            if entry.users == 0 and entry.stamp is None:
                entry.directory.close()

    @staticmethod
    def _retire(entry: _Entry) -> None:
        """Mark an entry evicted; its files close when its last user is done (lock held)."""
        entry.stamp = None
        if entry.users == 0:
            entry.directory.close()

    def close(self) -> None:
        with self._lock:
            while self._open:
                self._retire(self._open.popitem()[1])

