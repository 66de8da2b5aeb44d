"""blockfs2zarr against a copy of the data and against the tools a lab would use instead.

    python benchmarks/blockfs2zarr.py [--sizes 512,1024] [--levels 5,1] [--rounds 3]
                                      [--shard 4] [--max-load 1.5] [--out /tmp/blockfs-bench/zarr]

For each benchmark volume (benchmarks/volume.py, uint16, generated once, never
timed) and Blosc zstd level, the volume is written once with blockfs-write
(64^3 blocks, untimed). Then, round by round, with the order of the systems
reversed every other round so that a noisy machine's drift falls on all alike:

- `cp` + `sync` of the volume's data files: about the bytes blockfs2zarr
  writes, the disk's ceiling for a copy;
- blockfs2zarr on 2 ranks (mpiexec -n 2 ... --shard S): start to committed
  output, Python and MPI start-up included; and the time its own summary line
  gives, from its first shard to its last (start-up excluded, as in the copy and
  in TensorStore's timing: at a terabyte the start-up's ~0.7 s is nothing, here
  it is twice the copy of a 512^3 volume);
- TensorStore writing the same sharded zarr3 array (shards of S blocks per
  edge, inner chunks 64^3, Blosc zstd, byte shuffle) from the decoded volume in
  memory with its own thread pool (file_io_sync on: it fsyncs);
- zarr-python 3 doing the same with 2 processes on disjoint shards, files
  fsynced by the harness inside the timed region (zarr has no fsync);
- blockfs-write on 2 ranks from the blockfs2zarr export (an OME-Zarr source)
  and from the same volume as .npy, at the volume's zstd level (the export's
  inner chunks are then copied as stored) and at the level above it (every
  chunk decoded and compressed again, as from any other zarr).

Each cell is the median and range (min-max) over the rounds; MB/s is the
volume's uncompressed bytes over the seconds. Targets (issue 18): blockfs2zarr
<= 1.7 x the cp + sync time, >= 3 x TensorStore's MB/s at zstd-5; blockfs-write
from the OME-Zarr >= 0.8 x from the .npy (each at the same output level).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, versions, wait_for_quiet  # noqa: E402
from peers import fresh, fsync_tree, in_processes, zarr_blosc  # noqa: E402
from volume import CACHE, benchmark_volume  # noqa: E402

B = 64


def mpiexec():
    return os.path.join(os.path.dirname(sys.executable), "mpiexec")


def timed(command):
    """Seconds of a command run to its end (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def make_volume(size, level, folder):
    """The blockfs volume of the size^3 benchmark volume at zstd-level (written once)."""
    path = os.path.join(folder, f"v{size}-zstd{level}.blockfs")
    if not os.path.exists(path):
        npy = os.path.join(CACHE, f"synthetic-{size}.npy")
        subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "blockfs_mpi.write", npy,
                        path, "--level", str(level), "--silent"], check=True)
    return path


def cp_sync(volume, folder):
    """Seconds: cp of the volume's data files into an empty folder, then sync."""
    target = fresh(os.path.join(folder, "copy"))
    files = [os.path.join(os.path.dirname(volume), name)
             for name in os.listdir(os.path.dirname(volume))
             if name.startswith(os.path.basename(volume) + ".")]
    return timed(["sh", "-c", 'cp "$@" && sync', "cp", *files, target])


def blockfs2zarr(volume, folder, shard, inner):
    """Seconds of the whole job; appends to inner the seconds its summary line gives (from
    its first shard to its last, without Python and MPI start-up)."""
    output = os.path.join(fresh(folder), "out.ome.zarr")
    started = time.perf_counter()
    result = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m",
                             "blockfs_mpi.blockfs2zarr", volume, output, "--shard", str(shard),
                             "--silent"], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    found = float(re.search(r" in ([\d.]+) s \(", result.stderr).group(1))
    inner.append(max(found, 0.005))  # the line gives hundredths of a second
    return seconds


def tensorstore(size, level, folder, shard):
    """Seconds: TensorStore writing the sharded array from the volume in memory."""
    import tensorstore as ts
    path = os.path.join(fresh(folder), "0")
    volume = benchmark_volume(size)
    inner = [{"name": "bytes", "configuration": {"endian": "little"}},
             {"name": "blosc", "configuration": {"cname": "zstd", "clevel": level,
                                                 "shuffle": "shuffle", "typesize": 2,
                                                 "blocksize": 0}}]
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": path}, "create": True,
            "metadata": {"shape": [size] * 3, "data_type": "uint16",
                         "chunk_grid": {"name": "regular",
                                        "configuration": {"chunk_shape": [shard * B] * 3}},
                         "codecs": [{"name": "sharding_indexed", "configuration": {
                             "chunk_shape": [B] * 3, "codecs": inner,
                             "index_codecs": [{"name": "bytes",
                                               "configuration": {"endian": "little"}},
                                              {"name": "crc32c"}]}}],
                         "dimension_names": ["z", "y", "x"]}}
    started = time.perf_counter()
    store = ts.open(spec, context=ts.Context({"file_io_sync": True})).result()
    store.write(volume).result()
    return time.perf_counter() - started


def _zarr_share(rank, n, size, path, edge):
    import zarr

    from blockfs_mpi.compression import single_threaded
    single_threaded()
    array = zarr.open_array(path, mode="r+")
    volume = benchmark_volume(size)
    shards = [(z, y, x) for z in range(0, size, edge) for y in range(0, size, edge)
              for x in range(0, size, edge)]
    for z, y, x in shards[rank::n]:
        array[z:z + edge, y:y + edge, x:x + edge] = volume[z:z + edge, y:y + edge, x:x + edge]


def zarr_python(size, level, folder, shard):
    """Seconds: zarr-python 3, 2 processes on disjoint shards, then every file fsynced."""
    import zarr
    path = os.path.join(fresh(folder), "0")
    started = time.perf_counter()
    zarr.create_array(store=path, shape=(size,) * 3, dtype="uint16", chunks=(B,) * 3,
                      shards=(shard * B,) * 3, compressors=zarr_blosc(level),
                      dimension_names=("z", "y", "x"))
    seconds = time.perf_counter() - started + in_processes(_zarr_share, 2, size, path, shard * B)
    started = time.perf_counter()
    fsync_tree(folder)
    return seconds + time.perf_counter() - started


def write_from(source, folder, level):
    output = os.path.join(fresh(folder), "v.blockfs")
    return timed([mpiexec(), "-n", "2", sys.executable, "-m", "blockfs_mpi.write", source,
                  output, "--level", str(level), "--silent"])


def spread(values, digits=1):
    """'median (min-max)' of values."""
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def measure(size, level, rounds, shard, out, max_load):
    folder = os.path.join(out, f"{size}-zstd{level}")
    os.makedirs(folder, exist_ok=True)
    benchmark_volume(size)
    volume = make_volume(size, level, folder)
    export = os.path.join(folder, "blockfs2zarr", "out.ome.zarr")
    npy = os.path.join(CACHE, f"synthetic-{size}.npy")
    systems = {
        "cp + sync of the data files": lambda: cp_sync(volume, folder),
        "blockfs2zarr, mpiexec -n 2": lambda: blockfs2zarr(volume, os.path.dirname(export),
                                                           shard, inner),
        "TensorStore zarr3 sharded": lambda: tensorstore(size, level,
                                                         os.path.join(folder, "ts"), shard),
        "zarr-python 3 sharded, 2 processes": lambda: zarr_python(
            size, level, os.path.join(folder, "zarr"), shard),
        "blockfs-write from the OME-Zarr, -n 2": lambda: write_from(
            export, os.path.join(folder, "from-zarr"), level),
        "blockfs-write from the .npy, -n 2": lambda: write_from(
            npy, os.path.join(folder, "from-npy"), level),
        f"blockfs-write from the OME-Zarr at zstd-{level + 1}, -n 2": lambda: write_from(
            export, os.path.join(folder, "from-zarr"), level + 1),
        f"blockfs-write from the .npy at zstd-{level + 1}, -n 2": lambda: write_from(
            npy, os.path.join(folder, "from-npy"), level + 1),
    }
    inner = []  # blockfs2zarr's own seconds, start-up excluded
    names = list(systems)
    times = {name: [] for name in names}
    loads = []
    for round_number in range(rounds):
        loads.append(wait_for_quiet(max_load))
        order = names if round_number % 2 == 0 else names[::-1]  # the export of the
        # round before serves blockfs-write from the OME-Zarr when it comes first
        for name in order:
            times[name].append(systems[name]())
    megabytes = size ** 3 * 2 / 1e6
    print(f"\n### {size}^3 uint16 ({megabytes:.0f} MB), Blosc zstd-{level}, 64^3 blocks, "
          f"shards of {shard}^3 blocks; {rounds} rounds, load "
          f"{min(loads):.2f}-{max(loads):.2f}\n")
    print("| system | seconds | MB/s |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {spread(times[name], 2)} | "
              f"{spread([megabytes / t for t in times[name]])} |")
    ratios = (("blockfs2zarr / (cp + sync), time", "blockfs2zarr, mpiexec -n 2",
               "cp + sync of the data files"),
              ("blockfs2zarr / TensorStore, MB/s", "TensorStore zarr3 sharded",
               "blockfs2zarr, mpiexec -n 2"),
              ("blockfs2zarr / zarr-python, MB/s", "zarr-python 3 sharded, 2 processes",
               "blockfs2zarr, mpiexec -n 2"),
              ("blockfs-write from OME-Zarr / from .npy, MB/s (chunks copied)",
               "blockfs-write from the .npy, -n 2", "blockfs-write from the OME-Zarr, -n 2"),
              (f"blockfs-write from OME-Zarr / from .npy at zstd-{level + 1}, MB/s (decoded)",
               f"blockfs-write from the .npy at zstd-{level + 1}, -n 2",
               f"blockfs-write from the OME-Zarr at zstd-{level + 1}, -n 2"))
    print(f"| blockfs2zarr without start-up (its summary line) | {spread(inner, 2)} | "
          f"{spread([megabytes / t for t in inner])} |")
    # Start-up excluded on both sides, as cp's is next to nothing and TensorStore is timed
    # in its process from an open volume: the ratios a terabyte export converges to.
    ratios += (("blockfs2zarr without start-up / (cp + sync), time", inner,
                "cp + sync of the data files"),
               ("blockfs2zarr without start-up / TensorStore, MB/s",
                "TensorStore zarr3 sharded", inner))
    print("\n| per-round ratio | median (range) |\n|---|---|")
    for what, a, b in ratios:
        over, under = (x if isinstance(x, list) else times[x] for x in (a, b))
        print(f"| {what} | {spread([x / y for x, y in zip(over, under)], 2)} |")
    shutil.rmtree(os.path.join(folder, "copy"), ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--levels", default="5,1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard", type=int, default=4)
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--out", default=os.path.join(CACHE, "zarr"))
    args = parser.parse_args()
    print(machine_line())
    print(versions())
    for size in map(int, args.sizes.split(",")):
        for level in map(int, args.levels.split(",")):
            measure(size, level, args.rounds, args.shard, args.out, args.max_load)


if __name__ == "__main__":
    main()
