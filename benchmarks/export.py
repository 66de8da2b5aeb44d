"""Output MB/s of blockfs2tif, blockfs2jp2k and blockfs2hdf on 1 and 2 ranks, next to the ceiling.

The ceiling is the same work done directly by tifffile / glymur / h5py from an
in-memory array of the same volume in one process. MB/s counts uncompressed
voxel bytes; program times are wall-clock of the whole mpiexec job (start-up
included). Target: >= 0.8 x the ceiling on 2 ranks.

    python benchmarks/export.py [--shape 256x640x640] [--folder /tmp]
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import glymur
import h5py
import numpy as np
import tifffile

from blockfs_mpi import Directory
from blockfs_mpi.synthetic import SyntheticVolume


def make_volume(folder, shape):
    """A synthetic 64^3-blocked volume on disk and its voxels in memory."""
    voxels = SyntheticVolume(shape)[:]
    z, y, x = shape
    directory = Directory(x, y, z, np.uint16, str(folder / "volume.blockfs"), n_filenames=2)
    directory.create()
    directory[:, :, :] = voxels
    directory.close()
    return folder / "volume.blockfs", voxels


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def ceilings(voxels, out):
    """Seconds for each exporter's work done directly from memory in one process."""
    def tif():
        for z, plane in enumerate(voxels):
            tifffile.imwrite(out / f"c_{z:04d}.tif", plane, compression="zlib",
                             compressionargs={"level": 3})

    def jp2k():
        for z, plane in enumerate(voxels):
            glymur.Jp2k(str(out / f"c_{z:04d}.jp2"), data=plane)

    def hdf():
        with h5py.File(out / "c.h5", "w") as f:
            f.create_dataset("v", data=voxels, chunks=(64, 64, 64), compression="gzip",
                             compression_opts=4)
    return {"blockfs2tif": timed(tif), "blockfs2jp2k": timed(jp2k), "blockfs2hdf": timed(hdf)}


def program_args(name, source, out):
    if name == "blockfs2hdf":
        return [str(source), str(out / "p.h5"), "v", "--silent"]
    suffix = "tif" if name == "blockfs2tif" else "jp2"
    return ["--input", str(source), "--output-pattern", str(out / f"p_%04d.{suffix}"), "--silent"]


def run_program(name, n, source, out):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec), "-n", str(n), sys.executable, "-m", f"blockfs_mpi.{name}",
               *program_args(name, source, out)]
    return timed(lambda: subprocess.run(command, check=True, capture_output=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="256x640x640", help="ZxYxX voxels (uint16)")
    parser.add_argument("--folder", default=tempfile.gettempdir())
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split("x"))
    work = Path(tempfile.mkdtemp(prefix="blockfs-export-bench-", dir=args.folder))
    try:
        source, voxels = make_volume(work, shape)
        megabytes = voxels.nbytes / 1e6
        ceiling = ceilings(voxels, work)
        print(f"volume {args.shape} uint16, {megabytes:.0f} MB, blocks 64^3")
        print("| program | ceiling MB/s | 1 rank MB/s | 2 ranks MB/s | 2 ranks / ceiling |")
        print("|---|---|---|---|---|")
        for name, seconds in ceiling.items():
            rates = []
            for n in (1, 2):
                out = work / f"{name}-{n}"
                out.mkdir()
                rates.append(megabytes / run_program(name, n, source, out))
                shutil.rmtree(out)
            top = megabytes / seconds
            print(f"| {name} | {top:.1f} | {rates[0]:.1f} | {rates[1]:.1f} | "
                  f"{rates[1] / top:.2f} |", flush=True)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
