"""Per-rank resources of every program on a wide volume and on an oversubscribed job (issue 21).

    python benchmarks/scale_figures.py [--planes 128] [--side 4096] [--ranks 2]
                                       [--old /tmp/oldpkg] [--out /tmp/blockfs-bench/scale]

Writes the volume's source once (untimed): `--planes` TIFF planes of side x side
uint16 (128 x 4096 x 4096 = 4.3 GB by default). Then runs each program under
tests/mpi/measure.py on `--ranks` ranks (mpiexec), which prints every rank's peak
RSS (getrusage; mapped data files count: fsck maps them), its opens of files under --out
(the source planes and every volume and output; an audit hook) and its
data-file syncs; the table gives the largest of each over the ranks, and its sum
for opens and syncs. With --old, a copy of an older blockfs_mpi package (e.g.
`git archive <rev> blockfs_mpi | tar -x -C /tmp/oldpkg`) runs the same commands
first, put ahead on PYTHONPATH: the "before" column.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import tifffile

HERE = os.path.dirname(os.path.abspath(__file__))
MEASURE = os.path.join(HERE, "..", "tests", "mpi", "measure.py")


def make_planes(folder, planes, side):
    """The source: planes of a smooth ramp plus a little noise (compresses ~2:1)."""
    if os.path.exists(os.path.join(folder, "done")):
        return
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = (np.arange(side, dtype=np.uint16)[None, :] + np.arange(side, dtype=np.uint16)[:, None])
    for z in range(planes):
        noise = rng.integers(0, 64, (side, side), dtype=np.uint16)
        tifffile.imwrite(os.path.join(folder, f"plane_{z:05d}.tif"), ramp + noise + z)
    open(os.path.join(folder, "done"), "w").close()


def programs(work, planes_glob):
    """(name, blockfs_mpi module, arguments) in the order run: blockfs-write first, since
    every other program reads its volume; each writes an output of its own in work."""
    volume = os.path.join(work, "v.blockfs")
    os.makedirs(os.path.join(work, "tif"), exist_ok=True)
    os.makedirs(os.path.join(work, "copy"), exist_ok=True)
    return [
        ("blockfs-write", "write", [planes_glob, volume, "--silent"]),
        ("blockfs-fsck", "fsck", [volume]),
        ("blockfs2tif", "blockfs2tif", [volume, os.path.join(work, "tif", "p_%05d.tif"),
                                        "--silent"]),
        ("blockfs2hdf", "blockfs2hdf", [volume, os.path.join(work, "v.h5"), "/v",
                                        "--compression", "none", "--silent"]),
        ("blockfs2zarr", "blockfs2zarr", [volume, os.path.join(work, "v.ome.zarr"), "--silent"]),
        ("blockfs-cp", "relocate:cp_main", [volume, os.path.join(work, "copy", "v.blockfs")]),
        ("blockfs-downsample", "downsample", [volume, "--levels=4", "--output",
                                              os.path.join(work, "pyr"), "--silent"]),
    ]


def run(ranks, module, args, under, package=None):
    """(seconds, per-rank figures) of one measured job, counting opens of files under under."""
    env = dict(os.environ, MEASURE_UNDER=under)
    if package:
        env["PYTHONPATH"] = package
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    started = time.perf_counter()
    job = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, MEASURE, module, *args],
                         capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    figures = [json.loads(line) for line in job.stdout.splitlines() if line.startswith('{"rank"')]
    if job.returncode and module != "fsck":  # fsck's exit status is its verdict
        sys.exit(f"{module} {' '.join(args)} failed:\n{job.stderr[-3000:]}")
    return seconds, figures


def summary(seconds, figures):
    rss = max(f["peak_rss_kib"] for f in figures) / 1024
    opens = [f["opens"] for f in figures]
    syncs = [f["syncs"] for f in figures]
    return (f"{rss:.0f} MiB, opens {max(opens)} ({sum(opens)}), syncs {max(syncs)} "
            f"({sum(syncs)}), {seconds:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, default=128)
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--old", help="an older blockfs_mpi package's parent folder")
    parser.add_argument("--out", default="/tmp/blockfs-bench/scale")
    args = parser.parse_args()
    planes = os.path.join(args.out, f"planes-{args.planes}x{args.side}")
    make_planes(planes, args.planes, args.side)
    glob = os.path.join(planes, "plane_*.tif")
    gb = args.planes * args.side ** 2 * 2 / 1e9
    print(f"# {args.planes} planes of {args.side}^2 uint16 ({gb:.1f} GB), {args.ranks} ranks; "
          f"per cell: the largest peak RSS of a rank, opens and data-file syncs of the busiest "
          f"rank (all ranks), wall time")
    versions = [("before", args.old), ("after", None)] if args.old else [("after", None)]
    print("| program | " + " | ".join(name for name, _ in versions) + " |")
    print("|---" * (len(versions) + 1) + "|")
    results, names = {}, []
    for version, package in versions:
        work = os.path.join(args.out, f"work-{version}")
        os.makedirs(work, exist_ok=True)
        for name, module, program_args in programs(work, glob):
            if name not in names:
                names.append(name)
            results[name, version] = summary(*run(args.ranks, module, program_args, args.out,
                                                  package))
        shutil.rmtree(work)
    for name in names:
        print(f"| {name} | " + " | ".join(results[name, v] for v, _ in versions) + " |",
              flush=True)


if __name__ == "__main__":
    main()
