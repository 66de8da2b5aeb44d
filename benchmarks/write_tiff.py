"""blockfs-write on a TIFF stack against reading the planes alone and the compression ceiling.

    python benchmarks/write_tiff.py [--size 512] [--level 5]

The benchmark volume is saved once as `size` uncompressed 2-D TIFF planes
(untimed). Then, in one run: MB/s of only reading every plane with tifffile
(1 and 2 processes), the compression ceiling of write_read.py (1 and 2
processes), and `blockfs-write 'planes/*.tif'` on 1 and 2 ranks, its MB/s
as the program itself reports them (from the start of the conversion to the
end of the commit, Python start-up excluded like the others).
"""
import glob
import os
import re
import subprocess
import sys
import time
from functools import partial

import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from volume import CACHE, benchmark_volume  # noqa: E402
from write_read import compression_ceiling, size_and_level, slowest  # noqa: E402


def tiff_planes(size):
    """The benchmark volume as uncompressed TIFF planes; their glob pattern."""
    folder = os.path.join(CACHE, f"planes-{size}")
    if not os.path.exists(os.path.join(folder, "done")):
        os.makedirs(folder, exist_ok=True)
        volume = benchmark_volume(size)
        for z in range(size):
            tifffile.imwrite(os.path.join(folder, f"plane_{z:05d}.tif"), volume[z])
        open(os.path.join(folder, "done"), "w").close()
    return os.path.join(folder, "plane_*.tif")


def read_share(files, rank, processes):
    """One process of the read-only figure: read every processes-th plane."""
    mine = files[rank::processes]
    return lambda: [tifffile.imread(path) for path in mine]


def read_only(pattern, processes):
    """MB/s of reading every plane, split over processes."""
    files = sorted(glob.glob(pattern))
    seconds = slowest(partial(read_share, files), processes)
    return sum(os.path.getsize(f) for f in files) / 1e6 / seconds


def blockfs_write(pattern, ranks, level, output):
    """MB/s that blockfs-write reports for converting the planes on `ranks` ranks."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    result = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "blockfs_mpi.write",
                             pattern, output, "--overwrite", "--silent", "--level", str(level)],
                            capture_output=True, text=True, check=True)
    return float(re.search(r"([\d.]+) MB/s in", result.stderr).group(1))


def heading(volume, level):
    """The first line a blockfs-write benchmark prints: date, cores, volume, codec, load."""
    return (f"# {time.strftime('%Y-%m-%d')} {os.cpu_count()} cores; {volume}; blockfs "
            f"zstd-{level}, 64^3 blocks; load {os.getloadavg()[0]:.2f}")


def main():
    args = size_and_level(__doc__)
    pattern = tiff_planes(args.size)
    output = os.path.join(CACHE, "tiff-bench.blockfs")
    print(heading(f"{args.size} TIFF planes of {args.size}^2 uint16", args.level))
    for n in (1, 2):
        reading = read_only(pattern, n)
        ceiling = compression_ceiling(args.size, args.level, n)
        writing = blockfs_write(pattern, n, args.level, output)
        print(f"{n} rank(s): read-only {reading:7.1f} MB/s, compression ceiling {ceiling:6.1f} "
              f"MB/s, blockfs-write {writing:6.1f} MB/s = "
              f"{writing / min(reading, ceiling):.2f} x min(read-only, ceiling)")


if __name__ == "__main__":
    main()
