"""The zarr view against native zarr v3, blockfs-serve's zarr chunks against its precomputed ones,
np.asarray(volume) against volume[:, :, :].

    python benchmarks/zarr_view.py [--size 512] [--rounds 5] [--reads 200] [--requests 200]
                                   [--clients 8] [--max-load 1.5]

The benchmark volume (size^3 uint16, 64^3 blocks, zstd-1 with byte shuffle) is
written once (untimed) as a blockfs volume and, with the same Blosc codec, as
native zarr v3 arrays of 64^3 chunks, unsharded and sharded (256^3 shards).
Then, round by round, systems alternating within each round:

- zarr-python 3: --reads random 64^3 chunk-aligned reads (reads/s), and the
  whole volume (MB/s), on blockfs_mpi.open_zarr and on each native array;
- blockfs-serve (one process): --clients threads with a keep-alive connection
  each fetch --requests random chunks each, as zarr chunks
  (/<volume>.ome.zarr/c/z/y/x) or precomputed chunks (/<volume>/1_1_1/x0-x1_...),
  gzip accepted as a browser does (requests/s);
- np.asarray(volume) and volume[:, :, :] on one Directory (MB/s).

Prints medians with the range of the rounds. The page cache is warm: this
measures reading, decoding and serving, not the disk.
"""
import argparse
import http.client
import os
import signal
import statistics
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, versions, wait_for_quiet  # noqa: E402
from serve_load import serve  # noqa: E402
from volume import CACHE, benchmark_volume, block_origins  # noqa: E402

BLOCK = 64
SHARD = 256


def blockfs_volume(size):
    """The benchmark volume as a blockfs volume (zstd-1, byte shuffle), written once."""
    from blockfs_mpi import Directory
    path = os.path.join(CACHE, f"zarr-view-{size}.blockfs")
    if not os.path.exists(path):
        volume = benchmark_volume(size)
        with Directory(size, size, size, np.uint16, path, compression_level=1,
                       n_filenames=2) as directory:
            directory.create()
            for x, y, z in block_origins(size):
                directory.write_block(volume[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK], x, y, z)
    return path


def native_zarr(size, sharded):
    """The benchmark volume as a native zarr v3 array with the same Blosc codec, written once."""
    import zarr
    from zarr.codecs import BloscCodec
    path = os.path.join(CACHE, f"zarr-view-{size}-{'sharded' if sharded else 'chunks'}.zarr")
    if not os.path.exists(os.path.join(path, "zarr.json")):
        shards = (min(SHARD, size),) * 3 if sharded else None
        array = zarr.create_array(store=path + ".partial", shape=(size,) * 3, dtype="uint16",
                                  chunks=(BLOCK,) * 3, shards=shards, fill_value=0,
                                  compressors=[BloscCodec(cname="zstd", clevel=1,
                                                          shuffle="shuffle", typesize=2)],
                                  overwrite=True)
        array[...] = benchmark_volume(size)
        os.replace(path + ".partial", path)
    return zarr.open_array(path, mode="r")


def random_chunks(size, count, seed):
    """count random 64^3-aligned chunk origins (z, y, x)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, size // BLOCK, (count, 3)) * BLOCK


def chunk_reads_per_second(array, origins):
    started = time.perf_counter()
    for z, y, x in origins:
        array[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK]
    return len(origins) / (time.perf_counter() - started)


def megabytes_per_second(read, nbytes):
    started = time.perf_counter()
    read()
    return nbytes / 1e6 / (time.perf_counter() - started)


def requests_per_second(address, names, clients, requests, seed):
    """clients threads, one keep-alive connection each, fetch `requests` random names each."""
    host, port = address.split(":")
    failures = []

    def client(number):
        rng = np.random.default_rng(seed * 1000 + number)
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        for _ in range(requests):
            connection.request("GET", names[rng.integers(len(names))],
                               headers={"Accept-Encoding": "gzip"})
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
        connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        sys.exit(f"blockfs-serve answered {len(failures)} requests with {set(failures)}")
    return clients * requests / elapsed


def report(name, figures, unit):
    median = statistics.median(figures)
    print(f"| {name} | {median:.0f} {unit} | {min(figures):.0f}-{max(figures):.0f} |")
    return median


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=200, help="random chunk reads per round")
    parser.add_argument("--requests", type=int, default=200, help="per client per round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args()
    import blockfs_mpi
    from blockfs_mpi import Directory
    path = blockfs_volume(args.size)
    arrays = {"blockfs view (open_zarr)": blockfs_mpi.open_zarr(path),
              "native zarr, 64^3 chunks": native_zarr(args.size, False),
              "native zarr, 256^3 shards": native_zarr(args.size, True)}
    directory = Directory.open(path)
    nbytes = args.size ** 3 * 2
    name = os.path.basename(path)
    grid = range(args.size // BLOCK)
    zarr_names = [f"/{name}.ome.zarr/c/{z}/{y}/{x}" for z in grid for y in grid for x in grid]
    precomputed_names = [f"/{name}/1_1_1/{x}-{x + BLOCK}_{y}-{y + BLOCK}_{z}-{z + BLOCK}"
                         for x, y, z in block_origins(args.size)]
    print(f"# {machine_line()}")
    print(f"# {versions(('numpy', 'numcodecs', 'zarr'))}")
    print(f"# load {wait_for_quiet(args.max_load):.2f}; {args.size}^3 uint16, 64^3 blocks, "
          f"zstd-1 byte shuffle; {args.rounds} rounds, systems alternating")
    chunk_reads = {system: [] for system in arrays}
    full_reads = {system: [] for system in arrays}
    served = {"zarr chunks": [], "precomputed chunks": []}
    asarray = {"np.asarray(volume)": [], "volume[:, :, :]": []}
    process, address = serve(CACHE)
    try:
        for round_number in range(args.rounds):
            origins = random_chunks(args.size, args.reads, round_number)
            order = list(arrays) if round_number % 2 == 0 else list(arrays)[::-1]
            for system in order:
                chunk_reads[system].append(chunk_reads_per_second(arrays[system], origins))
                full_reads[system].append(megabytes_per_second(
                    lambda array=arrays[system]: array[...], nbytes))
            for kind in (served if round_number % 2 == 0 else list(served)[::-1]):
                names = zarr_names if kind == "zarr chunks" else precomputed_names
                served[kind].append(requests_per_second(address, names, args.clients,
                                                        args.requests, round_number))
            for kind in (asarray if round_number % 2 == 0 else list(asarray)[::-1]):
                read = (lambda: np.asarray(directory)) if kind.startswith("np") else \
                    (lambda: directory[:, :, :])
                asarray[kind].append(megabytes_per_second(read, nbytes))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    print("\n| zarr-python 3, random 64^3 chunk reads | median | range |\n|---|---|---|")
    medians = {system: report(system, figures, "reads/s")
               for system, figures in chunk_reads.items()}
    view = medians.pop("blockfs view (open_zarr)")
    print(f"\nview / faster native: {view / max(medians.values()):.2f}")
    print("\n| zarr-python 3, whole volume | median | range |\n|---|---|---|")
    medians = {system: report(system, figures, "MB/s") for system, figures in full_reads.items()}
    view = medians.pop("blockfs view (open_zarr)")
    print(f"\nview / faster native: {view / max(medians.values()):.2f}")
    print(f"\n| blockfs-serve, {args.clients} clients | median | range |\n|---|---|---|")
    medians = {kind: report(kind, figures, "requests/s") for kind, figures in served.items()}
    print(f"\nzarr / precomputed: {medians['zarr chunks'] / medians['precomputed chunks']:.2f}")
    print("\n| whole volume into numpy | median | range |\n|---|---|---|")
    medians = {kind: report(kind, figures, "MB/s") for kind, figures in asarray.items()}
    print(f"\nnp.asarray / volume[:, :, :]: "
          f"{medians['np.asarray(volume)'] / medians['volume[:, :, :]']:.2f}")


if __name__ == "__main__":
    main()
