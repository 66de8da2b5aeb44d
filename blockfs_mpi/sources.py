"""Volumes to convert, read region by region: TIFF planes and stacks, HDF5, .npy, zarr, synthetic.

Every source offers `shape` (z, y, x), `dtype` and `read(z0, z1, y0, y1, x0, x1)`,
and reads only what a region needs: memory-mapped where the file allows,
otherwise only the TIFF strips or tiles that overlap the region. A source whose
reads cost whole rows whatever columns are asked says so with `reads_whole_rows`
(convert.plan_units then makes its units wide).
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from . import parallel
from .errors import BlockfsError
from .identify import datasets_in, not_a_dataset
from .open_files import OpenFiles, descriptor_budget

if TYPE_CHECKING:  # imported where they are read (see TiffPlanes._open, ZarrArray._open)
    import tensorstore
    import zarr
    from tifffile import TiffFile, TiffPage

log = logging.getLogger("blockfs_mpi")


class SourceError(BlockfsError):
    """A source that cannot be read as asked: missing, unreadable or inconsistent."""


class Source(Protocol):
    """What blockfs-write converts: a 3-D volume read region by region (see the module's
    docstring; a source may also say reads_whole_rows)."""

    @property
    def shape(self) -> tuple[int, ...]: ...  # (z, y, x)

    @property
    def dtype(self) -> np.dtype[Any]: ...

    @property
    def description(self) -> str: ...  # what it is, for the log

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]: ...  # voxels [z0:z1, y0:y1, x0:x1]


def natural_key(path: str) -> list[int | str]:
    """Sort key that puts img_2.tif before img_10.tif."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _page_region(page: TiffPage, y0: int, y1: int, x0: int, x1: int,
                 where: str) -> npt.NDArray[Any]:
    """Rows y0:y1, columns x0:x1 of a 2-D TIFF page, decoding only the overlapping chunks."""
    if page.ndim != 2 and not (page.ndim == 3 and page.shape[-1] == 1):
        raise SourceError(f"{where}: page of shape {page.shape} is not a single-channel plane")
    out = np.empty((y1 - y0, x1 - x0), page.dtype)
    chunk_y, chunk_x = page.chunks[0], page.chunks[1]
    cols = page.chunked[1] if len(page.chunked) > 1 else 1
    handle = page.parent.filehandle
    for row in range(y0 // chunk_y, (y1 - 1) // chunk_y + 1):
        for col in range(x0 // chunk_x, (x1 - 1) // chunk_x + 1):
            index = row * cols + col
            handle.seek(page.dataoffsets[index])
            data = handle.read(page.databytecounts[index])
            segment, (_, _, sy, sx, _), _ = page.decode(data, index)
            assert segment is not None  # tifffile decodes to None only when given no data
            segment = segment.reshape(segment.shape[1], segment.shape[2])
            ly0, ly1 = max(y0, sy), min(y1, sy + segment.shape[0])
            lx0, lx1 = max(x0, sx), min(x1, sx + segment.shape[1])
            out[ly0 - y0:ly1 - y0, lx0 - x0:lx1 - x0] = \
                segment[ly0 - sy:ly1 - sy, lx0 - sx:lx1 - sx]
    return out


def numbering_gap(files: list[str]) -> tuple[int, int] | None:
    """The first gap in the plane numbers of files (the last number in each name) as (number
    before, number after), or None if they run without one (or are not all numbered)."""
    digits = [re.findall(r"\d+", os.path.basename(path)) for path in files]
    if not all(digits):
        return None
    numbers = [int(found[-1]) for found in digits]
    return next(((before, after) for before, after in zip(numbers, numbers[1:])
                 if after > before + 1), None)


OPEN_PLANES = 256  # planes a rank keeps open: a unit's depth (two block rows with --levels)
OPEN_PLANE_BYTES = 32 << 20  # what open compressed planes' strip tables may hold a rank
ROW_SEGMENT_BYTES = 16 << 10  # narrower columns are read with their whole rows, in one pread


def _close_plane(plane: int | TiffFile) -> None:
    if isinstance(plane, int):
        os.close(plane)
    else:
        plane.close()


class TiffPlanes:
    """A glob of 2-D TIFF files, one z plane each, in natural sort order.

    Each plane's TIFF structure is parsed once a rank, and up to OPEN_PLANES planes are kept
    open. Uncompressed planes are then read by pread, only the columns a region needs;
    compressed ones decode only the strips or tiles a region overlaps.
    """

    reads_whole_rows = True  # narrow columns cost whole rows (one pread, or whole strips)

    def __init__(self, pattern: str) -> None:
        self.files = sorted(glob.glob(pattern), key=natural_key)
        if not self.files:
            raise SourceError(f"no files match {pattern!r}")
        self.description = f"{len(self.files)} TIFF planes {pattern}"
        gap = numbering_gap(self.files)
        if gap and parallel.rank_of(parallel.world()) == 0:
            before, after = gap
            log.warning("%s: the plane numbers jump from %d to %d: %d missing, so z shifts: "
                        "plane %d and every one after it lands %d lower in z than its number",
                        pattern, before, after, after - before - 1, after, after - before - 1)
        with self._open(self.files[0]) as tif:
            page = tif.pages.first
            if page.dtype is None:  # a sample format with no NumPy dtype (tifffile says None)
                raise SourceError(f"{self.files[0]}: cannot read TIFF plane: its sample format "
                                  f"has no NumPy dtype")
            self.plane_shape, self.dtype = tuple(page.shape[:2]), page.dtype
            # An open compressed plane holds its strip or tile table (about 72 bytes an entry
            # as Python ints): fewer of them are kept where the table is long.
            held = 0 if page.is_contiguous else 16384 + 72 * len(page.dataoffsets)
        self.shape = (len(self.files),) + self.plane_shape
        # plane index -> (data offset, stored dtype) or None
        self._contiguous: dict[int, tuple[int, np.dtype[Any]] | None] = {}
        limit = min(OPEN_PLANES, descriptor_budget())
        if held:
            limit = min(limit, max(8, OPEN_PLANE_BYTES // held))
        self._planes: OpenFiles[int | TiffFile] = OpenFiles(limit, self._open_plane,
                                                            _close_plane)

    def _open(self, path: str) -> TiffFile:
        import tifffile  # here, not at the top: a zarr, HDF5 or NumPy source never loads it
        try:
            return tifffile.TiffFile(path)
        except FileNotFoundError:
            raise SourceError(f"{path}: plane is missing") from None
        except Exception as e:
            raise SourceError(f"{path}: cannot read TIFF plane: {e}") from None

    def _check(self, path: str, page: TiffPage) -> None:
        if tuple(page.shape[:2]) != self.plane_shape or page.dtype != self.dtype:
            raise SourceError(f"{path}: plane is {page.shape} {page.dtype}, the first plane "
                              f"({self.files[0]}) is {self.plane_shape} {self.dtype}")

    def _open_plane(self, z: Hashable) -> int | TiffFile:
        """Plane z opened for reading: a descriptor if it is uncompressed (its layout, parsed
        once, in _contiguous), else its TiffFile, whose structure is then parsed once a rank
        while the plane stays in the cache."""
        assert isinstance(z, int)  # the OpenFiles of planes is asked for plane numbers only
        path = self.files[z]
        if self._contiguous.get(z) is not None:
            try:
                return os.open(path, os.O_RDONLY)
            except OSError as e:
                raise SourceError(f"{path}: cannot read TIFF plane: {e}") from None
        tif = self._open(path)
        try:
            page = tif.pages.first
            self._check(path, page)
        except BaseException:
            tif.close()
            raise
        if not page.is_contiguous:
            self._contiguous[z] = None
            return tif
        # The page's dtype is self.dtype (_check), as stored: in the file's byte order.
        self._contiguous[z] = (page.dataoffsets[0], self.dtype.newbyteorder(tif.byteorder))
        fd = os.dup(tif.filehandle.fileno())
        tif.close()
        return fd

    def _pread(self, z: int, fd: int, size: int, offset: int) -> bytes:
        try:
            data = os.pread(fd, size, offset)
        except OSError as e:
            raise SourceError(f"{self.files[z]}: cannot read TIFF plane: {e}") from None
        if len(data) != size:
            raise SourceError(f"{self.files[z]}: plane is truncated")
        return data

    def _rows(self, z: int, fd: int, y0: int, y1: int, x0: int,
              x1: int) -> npt.NDArray[Any]:
        """Rows y0:y1, columns x0:x1 of uncompressed plane z: one pread from the first pixel
        to the last, or, where the columns are a narrow part of wide rows, one a row."""
        layout = self._contiguous[z]
        assert layout is not None  # z is open as a descriptor: _open_plane found it uncompressed
        offset, stored = layout
        width, item = self.plane_shape[1], stored.itemsize
        segment = (x1 - x0) * item
        if x1 - x0 == width or segment < ROW_SEGMENT_BYTES:
            size = (y1 - y0 - 1) * width * item + segment
            data = self._pread(z, fd, size, offset + (y0 * width + x0) * item)
            strided: npt.NDArray[Any] = np.ndarray((y1 - y0, x1 - x0), stored, data,
                                                   strides=(width * item, item))  # stubs: Any
            return strided
        rows = np.empty((y1 - y0, x1 - x0), stored)
        for y in range(y0, y1):
            rows[y - y0] = np.frombuffer(self._pread(z, fd, segment, offset + (y * width + x0)
                                                     * item), stored)
        return rows

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]:
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), self.dtype)
        for z in range(z0, z1):
            plane = self._planes.get(z)
            if isinstance(plane, int):
                out[z - z0] = self._rows(z, plane, y0, y1, x0, x1)
            else:
                out[z - z0] = _page_region(plane.pages.first, y0, y1, x0, x1, self.files[z])
        return out


class TiffStack:
    """One multi-page or 3-D TIFF file: pages are z planes."""

    def __init__(self, path: str) -> None:
        import tifffile
        self.path = path
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, self.dtype = series.shape, series.dtype
                self._memmappable = all(p.is_memmappable for p in tif.pages)
        except FileNotFoundError:
            raise SourceError(f"{path}: no such TIFF file") from None
        except Exception as e:
            raise SourceError(f"{path}: cannot read TIFF: {e}") from None
        if len(shape) != 3:
            raise SourceError(f"{path}: a {len(shape)}-D TIFF is not a 3-D stack")
        self.shape = tuple(shape)
        self.description = f"TIFF stack {path}"

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]:
        import tifffile
        if self._memmappable:
            volume: npt.NDArray[Any] = tifffile.memmap(self.path, mode="r")
            return np.array(volume[z0:z1, y0:y1, x0:x1])
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), self.dtype)
        with tifffile.TiffFile(self.path) as tif:
            for z in range(z0, z1):
                out[z - z0] = _page_region(tif.pages[z], y0, y1, x0, x1, f"{self.path} page {z}")
        return out


class HDF5Dataset:
    """`file.h5:/path/to/dataset`: a 3-D HDF5 dataset, read by hyperslab."""

    def __init__(self, spec: str) -> None:
        import h5py
        path, _, name = spec.rpartition(":")
        try:
            self._file = h5py.File(path, "r")
        except (FileNotFoundError, OSError) as e:
            raise SourceError(f"{path}: cannot open HDF5 file: {e}") from None
        if name not in self._file:
            names = datasets_in(self._file)
            raise SourceError(f"{path}: no dataset {name!r}; its datasets: "
                              f"{', '.join(names) or 'none'}")
        self._dataset = self._file[name]
        if not isinstance(self._dataset, h5py.Dataset):
            raise SourceError(not_a_dataset(spec, self._dataset))
        if self._dataset.ndim != 3:
            raise SourceError(f"{spec}: dataset is {self._dataset.ndim}-D, not 3-D")
        self.shape, self.dtype = self._dataset.shape, self._dataset.dtype
        self.description = f"HDF5 dataset {spec}"

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]:
        region: npt.NDArray[Any] = self._dataset[z0:z1, y0:y1, x0:x1]  # h5py: untyped
        return region


class NumpyFile:
    """A .npy file, memory-mapped."""

    def __init__(self, path: str) -> None:
        try:
            self._array: npt.NDArray[Any] = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise SourceError(f"{path}: no such .npy file") from None
        except ValueError as e:
            raise SourceError(f"{path}: cannot read .npy: {e}") from None
        if self._array.ndim != 3:
            raise SourceError(f"{path}: array is {self._array.ndim}-D, not 3-D")
        self.shape, self.dtype = self._array.shape, self._array.dtype
        self.description = f"NumPy file {path}"

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]:
        return np.array(self._array[z0:z1, y0:y1, x0:x1])


ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")  # a zarr v3 node, a v2 array or group


class _ZarrNodeKind(TypedDict):
    zarr_format: Literal[2, 3]
    node_type: str  # "array" or "group"
    attributes: dict[str, Any]  # JSON


class ZarrNode(_ZarrNodeKind, total=False):
    """A zarr node as zarr_node reads it; shape and dtype an array's only."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]


def zarr_node(path: str) -> ZarrNode:
    """The zarr node at a local path, from its JSON alone (importing zarr-python takes half
    a second a rank, more than a small conversion's reading): a dict of zarr_format,
    node_type ("array" or "group") and attributes, and an array's shape and dtype."""
    def load(name: str) -> dict[str, Any]:
        with open(os.path.join(path, name)) as f:
            meta: dict[str, Any] = json.load(f)
            return meta

    try:
        if os.path.exists(os.path.join(path, "zarr.json")):
            meta = load("zarr.json")
            node: ZarrNode = {"zarr_format": 3, "node_type": meta["node_type"],
                              "attributes": meta.get("attributes", {})}
            if meta["node_type"] == "array":
                node["shape"], node["dtype"] = tuple(meta["shape"]), np.dtype(meta["data_type"])
            return node
        attributes = load(".zattrs") if os.path.exists(os.path.join(path, ".zattrs")) else {}
        if os.path.exists(os.path.join(path, ".zarray")):
            meta = load(".zarray")
            return {"zarr_format": 2, "node_type": "array", "attributes": attributes,
                    "shape": tuple(meta["shape"]), "dtype": np.dtype(meta["dtype"])}
        if os.path.exists(os.path.join(path, ".zgroup")):
            return {"zarr_format": 2, "node_type": "group", "attributes": attributes}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SourceError(f"{path}: cannot open zarr: {e}") from None
    raise SourceError(f"{path}: cannot open zarr: no zarr.json, .zarray or .zgroup there")


def first_level(path: str, attributes: Mapping[str, Any],
                arrays: Callable[[], list[str]]) -> str:
    """Where the first multiscale level of the OME-Zarr image at path is, from its group's
    attributes (0.5's under "ome", 0.4's at the top); a group that is no image is refused,
    naming its arrays (the callable arrays lists them)."""
    multiscales = attributes.get("ome", attributes).get("multiscales")
    if not multiscales:
        raise SourceError(f"{path}: a zarr group that is no OME-Zarr image; name one of its "
                          f"arrays: {', '.join(sorted(arrays())) or 'it has none'}")
    level: str = multiscales[0]["datasets"][0]["path"]  # JSON
    return level


class ZarrArray:
    """A 3-D zarr v2 or v3 array (sharded or not); an OME-Zarr image (0.4 or 0.5) stands for
    its first multiscale level (`image.ome.zarr/2` names another). Each read() fetches only
    the chunks (or inner chunks of shards) the region overlaps.

    A local array's metadata is read from its JSON (zarr_node), a URL's by zarr-python. The
    voxels are read with TensorStore where it is installed (it fetches and decodes a
    region's chunks on threads of its own: about twice zarr-python's speed at zstd-1), else
    with zarr-python. BLOCKFS_ZARR_READER=zarr or =tensorstore picks one."""

    # Opened on first use and never pickled (__getstate__): present only once set.
    _array: zarr.Array[Any]
    _store: tensorstore.TensorStore | None

    def __init__(self, path: str) -> None:
        self.path = path
        if "://" in path:
            array = self._open()
            shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)
            self.zarr_format = array.metadata.zarr_format
        else:
            node = self._locate()
            shape, self.dtype, self.zarr_format = node["shape"], node["dtype"], node["zarr_format"]
        if len(shape) != 3:
            raise SourceError(f"{path}: zarr array is {len(shape)}-D, not 3-D (z, y, x)")
        self.shape = shape
        self.reader = "TensorStore" if self._tensorstore() is not None else "zarr-python"
        self.description = (f"zarr v{self.zarr_format} array {self.array_path} (read with "
                            f"{self.reader})")

    def _locate(self) -> ZarrNode:
        """The local array's node (zarr_node), the first multiscale level's for an image;
        sets array_path to where it is."""
        node, self.array_path = zarr_node(self.path), self.path
        if node["node_type"] == "array":
            return node

        def arrays() -> list[str]:
            return [name for name in os.listdir(self.path)
                    if any(os.path.exists(os.path.join(self.path, name, marker))
                           for marker in ("zarr.json", ".zarray"))
                    and zarr_node(os.path.join(self.path, name))["node_type"] == "array"]

        level = first_level(self.path, node["attributes"], arrays)
        self.array_path = os.path.join(self.path, level)
        return zarr_node(self.array_path)

    def _open(self) -> zarr.Array[Any]:
        """The zarr array at path, or the first multiscale level of the image there, opened
        with zarr-python."""
        try:
            import zarr
        except ImportError:
            raise SourceError(f"{self.path}: reading zarr needs zarr-python 3 "
                              f"(pip install 'blockfs_mpi[zarr]')") from None
        try:
            node = zarr.open(self.path, mode="r")
        except Exception as e:
            raise SourceError(f"{self.path}: cannot open zarr: {e}") from None
        self.array_path = self.path
        if isinstance(node, zarr.Group):
            group = node
            level = first_level(self.path, dict(group.attrs),
                                lambda: [name for name, _ in group.arrays()])
            self.array_path = os.path.join(self.path, level)
            node = group[level]
        if not isinstance(node, zarr.Array):  # an image whose first level is a group
            raise SourceError(f"{self.array_path}: a zarr group, not an array")
        self._array = node
        return node

    def _tensorstore(self) -> tensorstore.TensorStore | None:
        """The array opened with TensorStore (kept), or None where zarr-python reads it."""
        if "_store" in self.__dict__:
            return self._store
        self._store = None
        choice = os.environ.get("BLOCKFS_ZARR_READER", "")
        if choice not in ("", "zarr", "tensorstore"):
            raise SourceError(f"BLOCKFS_ZARR_READER={choice!r}: use zarr or tensorstore")
        if choice == "zarr" or (not choice and "://" in self.array_path):
            return None
        try:
            import tensorstore
            spec = {"driver": "zarr3" if self.zarr_format == 3 else "zarr",
                    "kvstore": {"driver": "file", "path": os.path.abspath(self.array_path)}}
            self._store = tensorstore.open(spec, read=True).result()
        except Exception as e:  # not installed, or an array TensorStore cannot read
            if choice == "tensorstore":
                raise SourceError(f"{self.array_path}: TensorStore cannot read it: {e}") from None
        return self._store

    def __getstate__(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items()
                if key not in ("_array", "_store")}

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]:
        store = self._tensorstore()
        try:
            if store is not None:
                return store[z0:z1, y0:y1, x0:x1].read().result()
            if "_array" not in self.__dict__:
                self._open()
            return np.asarray(self._array[z0:z1, y0:y1, x0:x1])
        except SourceError:
            raise
        except Exception as e:  # the reader's own error for a damaged or missing chunk
            raise SourceError(f"{self.array_path}: cannot read z {z0}:{z1}, y {y0}:{y1}, "
                              f"x {x0}:{x1} with {self.reader}: {e}") from e


class Synthetic:
    """`synthetic:ZxYxX`: the deterministic microscopy-like volume of blockfs_mpi.synthetic."""

    def __init__(self, spec: str) -> None:
        from .synthetic import SyntheticVolume
        try:
            shape = tuple(int(n) for n in spec.split(":", 1)[1].lower().split("x"))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) <= 0:
            raise SourceError(f"{spec!r}: expected synthetic:ZxYxX, e.g. synthetic:512x512x512")
        self._volume = SyntheticVolume(shape)
        self.shape, self.dtype = shape, self._volume.dtype
        self.description = f"synthetic volume {'x'.join(map(str, shape))}"

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int,
             x1: int) -> npt.NDArray[Any]:
        return self._volume.region(z0, z1, y0, y1, x0, x1)


def open_source(spec: str) -> Source:
    """The source named by a command-line argument."""
    if spec.startswith("synthetic:"):
        return Synthetic(spec)
    if any(ch in spec for ch in "*?["):
        return TiffPlanes(spec)
    lower = spec.lower()
    if lower.endswith(".npy"):
        return NumpyFile(spec)
    if re.search(r"\.(h5|hdf5|hdf):", lower):
        return HDF5Dataset(spec)
    if lower.endswith((".tif", ".tiff")):
        return TiffStack(spec)
    if os.path.isdir(spec) and any(os.path.exists(os.path.join(spec, marker))
                                   for marker in ZARR_MARKERS):
        return ZarrArray(spec)
    if os.path.isdir(spec):
        return TiffPlanes(os.path.join(spec, "*.tif*"))
    raise SourceError(f"{spec!r}: not a source (a glob of TIFF planes, a .tif stack, "
                      f"file.h5:/dataset, a .npy file, a zarr array or OME-Zarr image, or "
                      f"synthetic:ZxYxX)")


# ------------------------------------------------------------- fingerprint --

SAMPLE_SHAPE = (4, 64, 64)  # (z, y, x) of each region whose voxels the fingerprint digests
SAMPLED = ("kind", "shape", "dtype", "plane_count", "plane_files", "sample")  # compared


def absolute_spec(spec: str) -> str:
    """spec with its file or pattern made absolute, so that a record names it anywhere."""
    if spec.startswith("synthetic:"):
        return spec
    if re.search(r"\.(h5|hdf5|hdf):", spec.lower()):
        path, _, name = spec.rpartition(":")
        return f"{os.path.abspath(path)}:{name}"
    return os.path.abspath(spec)


def fingerprint(source: Source, spec: str) -> dict[str, object]:
    """What identifies a source cheaply, recorded in a new volume so that --resume can tell
    a different source of the same shape: kind, spec, shape, dtype, for TIFF planes their
    count and a digest of their names and sizes, and a digest of the voxels of three small
    regions (first corner, centre, last corner; left out if they cannot be read, for the
    rank that reads them to report). Modification times are left out: copying the planes to
    scratch changes them and nothing else."""
    shape = tuple(int(n) for n in source.shape)
    record: dict[str, object] = {"kind": type(source).__name__, "spec": absolute_spec(spec),
                                 "shape": list(shape), "dtype": np.dtype(source.dtype).str}
    digest = hashlib.sha1()
    try:
        for fraction in (0.0, 0.5, 1.0):
            corner = [int((n - min(n, edge)) * fraction) for n, edge in zip(shape, SAMPLE_SHAPE)]
            ends = [c + min(n, edge) for c, n, edge in zip(corner, shape, SAMPLE_SHAPE)]
            region = source.read(corner[0], ends[0], corner[1], ends[1], corner[2], ends[2])
            digest.update(np.ascontiguousarray(region).tobytes())
        record["sample"] = digest.hexdigest()
    except SourceError:  # left to the rank that reads that part, which names itself
        pass
    if isinstance(source, TiffPlanes):
        names = hashlib.sha1()
        for path in source.files:
            names.update(f"{os.path.basename(path)}\0{os.path.getsize(path)}\0".encode())
        record.update(plane_count=len(source.files), plane_files=names.hexdigest())
    return record


def differences(recorded: Mapping[str, object],
                current: Mapping[str, object]) -> list[str]:
    """How the source a volume was started from and this one differ, one phrase per field
    that both record (empty if they are the same source; a moved source of the same content
    is the same)."""
    words = {"plane_files": "the planes' names or sizes differ",
             "sample": "the voxels of the sampled regions differ"}
    return [words.get(key, f"{key} {recorded.get(key)} -> {current.get(key)}")
            for key in SAMPLED
            if key in recorded and key in current and recorded[key] != current[key]]
