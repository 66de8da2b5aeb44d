"""What a volume consists of: its data files, named or left unnamed beside it, and the
description blockfs-info gives of it (format, geometry, codec, files, blocks, ratio).

Reads only the directory file and the sizes of the data files.
"""
import os
from typing import Any

import numpy as np

from . import format as fmt
from . import generation
from .completion import incomplete_line, is_incomplete
from .index import entry_runs
from .reader import locate_data_files, read_header


def data_paths(path: str, header: fmt.Header) -> list[str]:
    """The data files of a volume, then any `<stem>.<n>` that follows them unnamed (stem:
    generation.stem, `<directory file>` for a volume that replaced none): the file of an
    extra rank of a resumed job that never committed (format 2 only). A
    data file found nowhere is given where it belongs: info reports it missing, and a
    check reports each of its blocks with the places it was looked for."""
    paths, _ = locate_data_files(path, header)
    if header.has_frames:
        base = generation.stem(path, header.data_files)
        while os.path.exists(f"{base}.{len(paths)}") and f"{base}.{len(paths)}" not in paths:
            paths.append(f"{base}.{len(paths)}")
    return paths


def volume_info(path: str) -> dict[str, Any]:
    """A JSON-ready description of a volume: format, geometry, codec, data files, blocks, ratio."""
    header = read_header(path)
    g = header.geometry
    n_present = voxels = compressed = 0
    for first, entries in entry_runs(path, header):  # a huge index never held whole
        present = np.flatnonzero(~fmt.is_missing(entries))
        if len(present):
            n_present += len(present)
            voxels += int(g.block_shapes(first + present).prod(axis=-1).sum())
            compressed += int(entries["size"][present].sum())
    files = []
    for name, file_path in zip(header.data_files, data_paths(path, header)):
        size = os.path.getsize(file_path) if os.path.exists(file_path) else None
        files.append({"name": name, "path": file_path, "bytes": size})
    return {
        "path": os.path.abspath(path), "format": header.version,
        "extent": {"x": g.x_extent, "y": g.y_extent, "z": g.z_extent},
        "block_size": {"x": g.x_block_size, "y": g.y_block_size, "z": g.z_block_size},
        "dtype": header.dtype.name, "compression": header.compression.name,
        "compression_level": header.compression_level,
        "shuffle": header.shuffle,
        "data_files": files, "blocks": g.n_blocks, "blocks_present": n_present,
        "blocks_missing": g.n_blocks - n_present, "compressed_bytes": compressed,
        "uncompressed_bytes": voxels * header.dtype.itemsize,
        "compression_ratio": round(voxels * header.dtype.itemsize / compressed, 3)
        if compressed else None,
        "metadata": header.metadata,
        "writer": header.writer,
        "incomplete": incomplete_line(path, header, n_present) if is_incomplete(header) else None,
    }


def format_info(info: dict[str, Any]) -> list[str]:
    """The lines blockfs-info prints for a volume_info() dict."""
    e, b = info["extent"], info["block_size"]
    lines = [f"{info['path']}: blockfs format {info['format']}",
             f"extent (x, y, z): {e['x']} x {e['y']} x {e['z']} voxels, {info['dtype']}",
             f"block size (x, y, z): {b['x']} x {b['y']} x {b['z']}",
             f"compression: blosc {info['compression']} level {info['compression_level']}, "
             f"{info['shuffle']} shuffle",
             f"blocks: {info['blocks_present']} present, {info['blocks_missing']} missing "
             f"of {info['blocks']}",
             f"bytes: {info['compressed_bytes']} compressed, {info['uncompressed_bytes']} "
             f"uncompressed" + (f", ratio {info['compression_ratio']}"
                                if info['compression_ratio'] is not None else ""),
             f"data files: {len(info['data_files'])}"]
    for f in info["data_files"]:
        size = "missing" if f["bytes"] is None else f"{f['bytes']} bytes"
        lines.append(f"  {f['name']}: {size}")
    for key, value in info["metadata"].items():
        lines.append(f"metadata {key}: {value}")
    if info["incomplete"]:
        lines.append(info["incomplete"])
    return lines
