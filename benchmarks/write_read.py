"""Core write/read benchmark: blockfs_mpi against the compression and decompression ceilings.

    python benchmarks/write_read.py [--size 512] [--level 5] [--repeats 3]

Prints, in one run on the same volume and codec (Blosc zstd, byte shuffle,
one Blosc thread per process):
  - the compression ceiling: 64^3 blocks sliced from the memory-mapped volume
    and encoded, in 1 and 2 processes (one per core);
  - blockfs_mpi write MB/s with 1 and 2 MPI ranks (create, write every block,
    collective commit with fsync), timed inside the job after a barrier;
  - random 64^3 block reads per second through Directory.read_block against
    decoding the same blocks' payloads already in memory, timed block by block
    in turn.
This VM's speed drifts by tens of percent within a minute, so every figure is
measured in --repeats rounds, each running every measurement once, and each
ratio is the median of its rounds' ratios (rates: medians too).
"""
import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from functools import partial

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from volume import CACHE, benchmark_volume, block_origins  # noqa: E402


def _timed(prepare, rank, processes, barrier, results):
    """One forked worker: prepare untimed, then time the work it returned after the barrier."""
    work = prepare(rank, processes)
    barrier.wait()
    started = time.perf_counter()
    work()
    results.put(time.perf_counter() - started)


def slowest(prepare, processes):
    """Seconds of the slowest of `processes` workers that start together.

    prepare(rank, processes) runs untimed in each worker and returns the work to time.
    """
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_timed, args=(prepare, r, processes, barrier, results))
               for r in range(processes)]
    for w in workers:
        w.start()
    seconds = max(results.get() for _ in workers)
    for w in workers:
        w.join()
    return seconds


def encode_share(size, level, load, rank, ranks):
    """One process of the compression ceiling: encode every ranks-th block of load(size)."""
    from blockfs_mpi.compression import make_codec, single_threaded
    single_threaded()
    volume = load(size)
    codec = make_codec("zstd", level)
    mine = block_origins(size)[rank::ranks]

    def work():
        for x, y, z in mine:
            codec.encode(np.ascontiguousarray(volume[z:z + 64, y:y + 64, x:x + 64]))
    return work


def compression_ceiling(size, level, ranks, load=benchmark_volume):
    """MB/s of encoding every block of load(size) (default: the benchmark volume) with
    `ranks` processes."""
    return size ** 3 * 2 / 1e6 / slowest(partial(encode_share, size, level, load), ranks)


def blockfs_write(size, level, ranks, output, codec=()):
    """MB/s of blockfs_mpi writing every block under mpiexec -n ranks.

    codec: optional (compression, shuffle) names; level may be "default".
    """
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    result = subprocess.run([mpiexec, "-n", str(ranks), sys.executable,
                             os.path.join(HERE, "mpi_write.py"), str(size), str(level), output,
                             *codec],
                            capture_output=True, text=True, check=True)
    seconds = float(result.stdout.split()[-1])
    return size ** 3 * 2 / 1e6 / seconds


def random_reads(size, path, count=2000, seed=42):
    """(blocks/s through Directory.read_block, blocks/s decoding the same payloads in memory).

    Each block is read, then its payload decoded, one after the other, so that both
    figures are taken over the same moments of a machine whose speed drifts."""
    from blockfs_mpi import Directory
    directory = Directory.open(path)
    origins = block_origins(size)
    picks = [origins[i] for i in np.random.default_rng(seed).integers(0, len(origins), count)]
    for x, y, z in set(picks):  # warm the page cache: this machine's reclaimer evicts eagerly
        directory.read_block(x, y, z)
    reader = directory.reader
    payloads = [reader.payload(directory.geometry.block_number(x, y, z)) for x, y, z in picks]
    clock = time.perf_counter
    reading = decoding = 0.0
    for (x, y, z), payload in zip(picks, payloads):
        started = clock()
        directory.read_block(x, y, z)
        read = clock()
        reader.codec.decode(payload, out=np.empty((64, 64, 64), np.uint16))
        reading += read - started
        decoding += clock() - read
    return count / reading, count / decoding


def size_and_level(doc, repeats=None):
    """The --size (volume edge) and --level (zstd) arguments every write benchmark takes;
    --repeats too when given a default."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--level", type=int, default=5)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats)
    return parser.parse_args()


WRITE, CEILING = "blockfs_mpi write, {} rank (MB/s)", "ceiling: compress, {} proc (MB/s)"
READS, DECODE = "random 64^3 reads (blocks/s)", "decode only, same payloads (blocks/s)"


def one_round(size, level, output):
    """Every figure once: {name with its unit: rate}."""
    rates = {}
    for ranks in (1, 2):
        rates[CEILING.format(ranks)] = compression_ceiling(size, level, ranks)
        rates[WRITE.format(ranks)] = blockfs_write(size, level, ranks, output)
    rates[READS], rates[DECODE] = random_reads(size, output)
    return rates


def main():
    args = size_and_level(__doc__, repeats=3)
    benchmark_volume(args.size).max()  # generate outside any timing, and page it in
    output = os.path.join(CACHE, "bench.blockfs")
    print(f"# {time.strftime('%Y-%m-%d')} {platform.node()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; volume {args.size}^3 uint16, 64^3 blocks, "
          f"Blosc zstd-{args.level} byte shuffle, 1 Blosc thread per process; "
          f"medians of {args.repeats} rounds")
    rounds = [one_round(args.size, args.level, output) for _ in range(args.repeats)]
    for name in rounds[0]:
        print(f"{name:40s} {np.median([r[name] for r in rounds]):8.1f}")
    ratios = {f"write / ceiling, {n} rank(s)": (WRITE.format(n), CEILING.format(n)) for n in (1, 2)}
    ratios["reads / decode"] = (READS, DECODE)
    for name, (over, under) in ratios.items():
        each = [r[over] / r[under] for r in rounds]
        print(f"{name:40s} {np.median(each):8.2f}   (rounds: {' '.join(f'{x:.2f}' for x in each)})")


if __name__ == "__main__":
    main()
