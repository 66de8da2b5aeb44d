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
import json
import os
import threading

from . import zarr_view
from .directory import Directory
from .open_files import descriptor_budget
from .pyramid import DIRECTORY_NAME, scale_key
from .voxel_size import VoxelSize, from_metadata

MAX_INFO_BYTES = 1 << 20


class BadName(Exception):
    """A request name that cannot name anything (HTTP 400)."""


class NotFound(Exception):
    """Nothing servable by that name (HTTP 404)."""


class Catalog:
    """Volumes under root, with an LRU of open Directory objects shared by threads."""

    def __init__(self, root, capacity=64):
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"{root} is not a folder")
        self.capacity = capacity
        # Half the descriptors the process may open, shared by the volumes kept open: each
        # reader keeps at most its part of its data files open (reader.BlockReader).
        self.files_per_volume = max(1, descriptor_budget(0.5) // max(1, capacity))
        self._lock = threading.Lock()
        self._open = collections.OrderedDict()  # realpath -> [Directory, stamp, users]

    def inside(self, parts):
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

    def scales(self, parts):
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
        found = {}
        for key in keys:
            if isinstance(key, str):
                try:
                    found[key] = self.inside(parts + key.split("/") + [DIRECTORY_NAME])
                except (BadName, NotFound):
                    pass
        return found, info

    def info(self, parts):
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

    def scale(self, parts, key):
        """A context manager giving the open Directory of one scale of a volume."""
        path = self.scales(parts)[0].get(key)
        if path is None:
            raise NotFound(f"no scale {key!r}")
        return self.volume(path)

    def volume(self, path):
        """A context manager giving the open Directory at path (checked, cached)."""
        return _Use(self, path)

    def zarr(self, parts, key):
        """The bytes under key of the zarr v3 view of the volume at root/parts (see
        zarr_view.py): an array for a single volume, an OME-Zarr 0.5 image for a pyramid,
        whose levels are its scales 1_1_1, 2_2_2, ... as they follow each other."""
        scales, info = self.scales(parts)
        if info is None:
            with self.zarr_volume(scales[scale_key(1)]) as view:
                data = view.get(key)
        else:
            levels = []
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
                with self.zarr_volume(levels[level]) as view:
                    data = view.get(inside)
            else:
                data = None
        if data is None:
            raise NotFound(f"no zarr key {key!r} (a block never written is absent: zeros)")
        return data

    def zarr_volume(self, path):
        """A context manager giving the zarr_view.VolumeView of the volume at path, made
        once per open Directory so that its re-encoded edge chunks stay cached."""
        return _UseView(self, path)

    def _acquire(self, path):
        stat = os.stat(path)
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._open.get(path)
            if entry is not None and entry[1] == stamp:
                self._open.move_to_end(path)
                entry[2] += 1
                return entry
        directory = Directory.open(path, open_files=self.files_per_volume)
        for data_path in directory.reader.data_paths:
            real = os.path.realpath(data_path)
            if not real.startswith(self.root + os.sep):
                raise NotFound("a data file of this volume is outside the served folder")
        entry = [directory, stamp, 1, None]  # Directory, stamp, users, its zarr view
        with self._lock:
            old = self._open.pop(path, None)
            self._open[path] = entry
            if old is not None:
                self._retire(old)
            while len(self._open) > self.capacity:
                self._retire(self._open.popitem(last=False)[1])
        return entry

    def _release(self, entry):
        with self._lock:
            entry[2] -= 1
            if entry[2] == 0 and entry[1] is None:
                entry[0].close()

    @staticmethod
    def _retire(entry):
        """Mark an entry evicted; its files close when its last user is done (lock held)."""
        entry[1] = None
        if entry[2] == 0:
            entry[0].close()

    def close(self):
        with self._lock:
            while self._open:
                self._retire(self._open.popitem()[1])


class _Use:
    """`with catalog.volume(path) as directory:` keeps the Directory open meanwhile."""

    def __init__(self, catalog, path):
        self.catalog, self.path = catalog, path

    def __enter__(self):
        self.entry = self.catalog._acquire(self.path)
        return self.entry[0]

    def __exit__(self, *exc):
        self.catalog._release(self.entry)


class _UseView(_Use):
    """`with catalog.zarr_volume(path) as view:` likewise, for the zarr view of the volume."""

    def __enter__(self):
        directory = super().__enter__()
        if self.entry[3] is None:  # two threads may both make one: either is right
            self.entry[3] = zarr_view.VolumeView(directory)
        return self.entry[3]
