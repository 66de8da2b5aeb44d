"""Volumes for the relocation tests: format 2 by Directory, format 1 and big ones by the format codecs."""
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from blockfs_mpi import Directory
from blockfs_mpi import format as fmt
from blockfs_mpi.compression import Compression, make_codec
from blockfs_mpi.geometry import Geometry
from conftest import microscopy_volume, mpiexec, run_checked, write_array

SHAPE = (70, 80, 90)  # (z, y, x): edge blocks on every axis with 32^3 blocks


def format2_volume(path, shape=SHAPE, n_files=2, seed=0):
    """A format 2 volume written by Directory; returns its voxels."""
    data = microscopy_volume(shape, seed)
    write_array(path, data, n_filenames=n_files)
    return data


def format1_volume(path, shape=SHAPE, n_files=3, data_files=None, unwritten=2, block=32):
    """A format 1 volume as the original blockfs writes it; returns its voxels.

    data_files are the BlockFilenames to record (default: absolute paths
    beside path); the files themselves are always written beside path. The
    last `unwritten` blocks are left out, so the index ends early, as the
    original's does.
    """
    path = os.path.abspath(path)
    data = microscopy_volume(shape, 1)
    z, y, x = shape
    geometry = Geometry(x, y, z, block, block, block)
    names = data_files or [f"{path}.{i}" for i in range(n_files)]
    header = fmt.Header(geometry=geometry, dtype=data.dtype, data_files=names, version=1,
                        n_offset_bits=40, n_size_bits=24)
    codec = make_codec(Compression.zstd, 5)
    folder = os.path.dirname(path)
    files = [open(os.path.join(folder, os.path.basename(name)), "wb") for name in names]
    written = geometry.n_blocks - unwritten
    offsets, sizes = np.zeros(written, np.uint64), np.zeros(written, np.uint64)
    for k in range(geometry.n_blocks):
        x0, y0, z0 = geometry.block_origin(k)
        zs, ys, xs = geometry.block_shape(x0, y0, z0)
        if k >= written:
            data[z0:z0 + zs, y0:y0 + ys, x0:x0 + xs] = 0
            continue
        payload = codec.encode(np.ascontiguousarray(data[z0:z0 + zs, y0:y0 + ys, x0:x0 + xs]))
        out = files[k % len(files)]
        offsets[k], sizes[k] = out.tell(), len(payload)
        out.write(payload)
    for out in files:
        out.close()
    with open(path, "wb") as out:
        out.write(fmt.encode_header1(header) + fmt.encode_entries1(header, offsets, sizes))
    return data


def big_volume(path, n_blocks, n_files=2, block=(64, 512, 512)):
    """A format 2 volume of incompressible 32 MB blocks, written straight with the codecs (fast)."""
    zb, yb, xb = block
    geometry = Geometry(xb, yb, zb * n_blocks, xb, yb, zb)
    header = fmt.Header(geometry=geometry, dtype=np.dtype(np.uint16),
                        data_files=[f"{os.path.basename(path)}.{i}" for i in range(n_files)],
                        compression=Compression.lz4, compression_level=0, shuffle="none")
    codec = make_codec(header.compression, 0, "none")
    noise = np.random.default_rng(0).integers(0, 65536, block, np.uint16)
    index = fmt.empty_index(n_blocks)
    files = [open(f"{path}.{i}", "wb") for i in range(n_files)]
    for k in range(n_blocks):
        payload = codec.encode(noise + np.uint16(k))
        out = files[k % n_files]
        out.write(fmt.encode_frame_header(k, payload, k))
        index[k] = (out.tell(), len(payload), k % n_files)
        out.write(payload)
    for out in files:
        out.close()
    with open(path, "wb") as out:
        out.write(b"".join(fmt.directory2_parts(header, index)))


def voxels(path):
    """Every voxel of the volume at path."""
    with Directory.open(path) as directory:
        return directory[:, :, :]


def digest(paths):
    """sha256 of the files' bytes, to show that a source was left untouched."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def volume_files(path):
    """The directory file at path and the data files it names, as found on this machine."""
    with Directory.open(path) as directory:
        return [str(path), *directory.block_filenames]


def program(n, name, *args, expect_failure=False, timeout=120, cwd=None):
    """Run `python -m blockfs_mpi.<name>` on n ranks under mpiexec (n=0: no mpiexec at all),
    in the working directory cwd (None: this process's)."""
    command = [sys.executable, "-m", f"blockfs_mpi.{name}", *map(str, args)]
    if n:
        command = [mpiexec(), "-n", str(n), *command]
    return run_checked(command, timeout=timeout, expect_failure=expect_failure, cwd=cwd)
