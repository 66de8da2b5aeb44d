"""blockfs_mpi against the stores a lab would use instead, on the same volume, cores and disk.

    python benchmarks/peers.py [--size 512] [--level 5] [--reads 2000] [--rounds 1] [--max-load 1.5]

One run prints two tables (markdown) for the synthetic uint16 volume
(benchmarks/volume.py, generated once and memory-mapped, never timed), 64^3
blocks or chunks everywhere:

1. Same codec for all: Blosc zstd (--level, default 5) with byte shuffle, one
   Blosc thread per process. Rows: the machine's ceilings (sequential write
   of the raw bytes + fsync; Blosc encode of every block in memory; one
   typical block, of median encoding time, encoded in a tight loop; decode of
   the payloads in memory), blockfs_mpi on 1 and 2 MPI ranks, an
   original-blockfs-style writer (written here from the description in
   the project's design notes, not the original code), zarr 3 sharded (2
   processes on disjoint shards), TensorStore zarr3 sharded, h5py chunked
   (Blosc filter from hdf5plugin through normal writes; chunks
   compressed by 2 processes and stored with write_direct_chunk; gzip).
2. Each system at its own defaults, as a user meets it.

With --rounds N the same-codec table is measured N times, the order of its
systems reversed every other round so that a noisy machine's drift falls on
all of them alike; each cell is then the median and range over the rounds, and
a second table gives blockfs_mpi (2 ranks) / each peer as the median and range
of the per-round ratios: claim only what every round supports.

Columns: write MB/s (uncompressed bytes / seconds from creating the volume to
its data being fsynced), write / compression ceiling (2 processes), bytes on
disk (sum of file sizes), files created, random 64^3 block reads/s (the same
--reads block origins for every system, one process, warm page cache), and
full sequential read MB/s (one process, the library's own whole-volume read;
h5py's chunk cache is off, as no other system here caches decoded blocks).
Every system's full read is compared with the source volume, untimed.

Durability: blockfs_mpi fsyncs its files and the folder at close();
TensorStore fsyncs with file_io_sync (its default); zarr and h5py have no
fsync, so the harness fsyncs their files inside the timed region; the
original-style writer fsyncs its data files (the original blockfs does not).
"""
import argparse
import multiprocessing
import os
import shutil
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from machine import machine_line, versions, wait_for_quiet  # noqa: E402
from volume import CACHE, benchmark_volume, block_origins  # noqa: E402
from write_read import blockfs_write, compression_ceiling, random_reads  # noqa: E402

B = 64
CONTEXT = multiprocessing.get_context("fork")  # children inherit the memory-mapped volume


def megabytes(size):
    return size ** 3 * 2 / 1e6


def zstd(level, single=True):
    """The Blosc zstd byte-shuffle codec of every same-codec row (one Blosc thread if single)."""
    from blockfs_mpi.compression import make_codec, single_threaded
    if single:
        single_threaded()
    return make_codec("zstd", level)


# ------------------------------------------------------------- harness --

def _timed_child(target, rank, n, args, barrier, results):
    try:
        barrier.wait()
        started = time.perf_counter()
        target(rank, n, *args)
        results.put(time.perf_counter() - started)
    except BaseException as e:  # the parent must never wait forever for a failed child
        results.put(f"process {rank}: {e!r}")
        raise


def in_processes(target, n, *args):
    """Seconds from a common barrier until the last of n forked processes running
    target(rank, n, *args) is done."""
    barrier, results = CONTEXT.Barrier(n), CONTEXT.Queue()
    children = [CONTEXT.Process(target=_timed_child, args=(target, r, n, args, barrier, results))
                for r in range(n)]
    for child in children:
        child.start()
    outcomes = [results.get() for _ in children]
    for child in children:
        child.join()
    failed = [o for o in outcomes if isinstance(o, str)]
    if failed:
        raise RuntimeError("; ".join(failed))
    return max(outcomes)


def fsync_tree(folder):
    """fsync every file and folder under folder (for libraries that have no fsync)."""
    for root, folders, files in os.walk(folder):
        for name in files + folders + ["."]:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def footprint(folder):
    """(bytes, files) of everything under folder."""
    sizes = [os.path.getsize(os.path.join(root, name))
             for root, _, files in os.walk(folder) for name in files]
    return sum(sizes), len(sizes)


def fresh(folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def picks(size, count, seed=42):
    """The random block origins every system reads (same rule as write_read.random_reads)."""
    origins = block_origins(size)
    return [origins[i] for i in np.random.default_rng(seed).integers(0, len(origins), count)]


def measure_reads(size, count, read_block, read_all):
    """(random 64^3 reads/s, full read MB/s); checks the data against the source, untimed."""
    volume = benchmark_volume(size)
    chosen = picks(size, count)
    for x, y, z in chosen[:20]:  # opens files, warms caches; checks a few blocks
        if not np.array_equal(read_block(x, y, z), volume[z:z + B, y:y + B, x:x + B]):
            raise AssertionError(f"block ({x}, {y}, {z}) reads back wrong")
    started = time.perf_counter()
    for x, y, z in chosen:
        read_block(x, y, z)
    rate = count / (time.perf_counter() - started)
    started = time.perf_counter()
    everything = read_all()
    seconds = time.perf_counter() - started
    if not np.array_equal(everything, volume):
        raise AssertionError("the full read differs from the source volume")
    return rate, megabytes(size) / seconds


# ------------------------------------------------------------ ceilings --

def _raw_share(rank, n, size, folder):
    volume = benchmark_volume(size).reshape(-1)
    share = -(-volume.size // n)
    mine = volume[rank * share:(rank + 1) * share]
    fd = os.open(os.path.join(folder, f"raw.{rank}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    step = 4 << 20  # voxels: 8 MiB writes
    for start in range(0, mine.size, step):
        view = memoryview(np.ascontiguousarray(mine[start:start + step])).cast("B")
        while view:
            view = view[os.write(fd, view):]
    os.fsync(fd)
    os.close(fd)


def io_ceiling(size, n, folder):
    """MB/s of writing the raw volume bytes sequentially + fsync, n processes, a file each."""
    fresh(folder)
    return megabytes(size) / in_processes(_raw_share, n, size, folder)


def typical_block(size, level):
    """Origin (x, y, z) of the block whose encoding takes the median time of all the volume's
    blocks (encoded once each, untimed): single blocks of this volume encode at anything
    from 0.6 to 3 times the average speed, so an arbitrary one says little. Runs in this
    process, so it leaves Blosc's thread settings alone."""
    codec = zstd(level, single=False)
    volume = benchmark_volume(size)
    origins = block_origins(size)
    seconds = []
    for x, y, z in origins:
        block = np.ascontiguousarray(volume[z:z + B, y:y + B, x:x + B])
        started = time.perf_counter()
        codec.encode(block)
        seconds.append(time.perf_counter() - started)
    return origins[np.argsort(seconds)[len(seconds) // 2]]


def _tight_loop(rank, n, size, level, origin):
    codec = zstd(level)
    x, y, z = origin
    block = np.ascontiguousarray(benchmark_volume(size)[z:z + B, y:y + B, x:x + B])
    for _ in range(len(block_origins(size)) // n):
        codec.encode(block)


def tight_loop_ceiling(size, level, n, origin):
    """MB/s of n processes each encoding the block at origin over and over (the issue's
    tight-loop limit)."""
    return megabytes(size) / in_processes(_tight_loop, n, size, level, origin)


# --------------------------------------------------------- blockfs_mpi --

def blockfs_reads(path):
    from blockfs_mpi import Directory
    directory = Directory.open(path)
    return directory.read_block, lambda: directory[:, :, :]


# ------------------------------------------------- original-style writer --

def _original_writer(path, jobs, done, level, single):
    """One writer process of the original design: encode what arrives, append, report up."""
    codec = zstd(level, single)
    offset = 0
    with open(path, "wb") as f:
        while True:
            job = jobs.get()
            if job is None:
                break
            array, block_number = job
            payload = codec.encode(array)
            f.write(payload)
            done.put((block_number, offset, len(payload)))
            offset += len(payload)
        f.flush()
        os.fsync(f.fileno())
    done.put(None)


def _directory_thread(path, header, done, writers):
    """The parent's thread: seek and write each packed format 1 entry as it arrives."""
    from blockfs_mpi import format as fmt
    with open(path, "r+b") as f:
        finished = 0
        while finished < writers:
            message = done.get()
            if message is None:
                finished += 1
                continue
            block_number, offset, size = message
            f.seek(len(fmt.encode_header1(header)) + block_number * header.entry_size)
            f.write(fmt.encode_entries1(header, [offset], [size]))
        f.flush()
        os.fsync(f.fileno())


def original_style_write(size, level, folder, n_files=2, single=True):
    """Seconds to write the volume the original blockfs way, as format 1 (readable by blockfs_mpi).

    Design (DESIGN.md): one bounded multiprocessing queue (depth 10) per data
    file; write_block puts (array, block number) on the queue of file k % n;
    each writer process Blosc-encodes and appends, then sends (block, offset,
    size) up one shared queue; a thread in the parent writes the packed entry
    into the directory file. Arrays are pickled through the queues.
    """
    from blockfs_mpi import format as fmt
    from blockfs_mpi.compression import Compression
    from blockfs_mpi.geometry import Geometry
    volume = benchmark_volume(size)
    path = os.path.join(fresh(folder), "volume.blockfs")
    started = time.perf_counter()
    geometry = Geometry(size, size, size, B, B, B)
    largest = B ** 3 * 2 + 16
    header = fmt.Header(geometry, np.dtype(np.uint16), [f"volume.blockfs.{i}" for i in range(n_files)],
                        Compression.zstd, level, version=1,
                        n_offset_bits=int(np.log2(geometry.n_blocks * largest // n_files) + 1),
                        n_size_bits=int(np.log2(largest) + 1))
    with open(path, "wb") as f:
        f.write(fmt.encode_header1(header))
    jobs = [CONTEXT.Queue(10) for _ in range(n_files)]
    done = CONTEXT.Queue()
    writers = [CONTEXT.Process(target=_original_writer, args=(f"{path}.{i}", jobs[i], done, level,
                                                             single)) for i in range(n_files)]
    for writer in writers:
        writer.start()
    thread = threading.Thread(target=_directory_thread, args=(path, header, done, n_files))
    thread.start()
    for x, y, z in block_origins(size):
        k = geometry.block_number(x, y, z)
        jobs[k % n_files].put((np.array(volume[z:z + B, y:y + B, x:x + B]), k))
    for queue in jobs:
        queue.put(None)
    for writer in writers:
        writer.join()
    thread.join()
    return time.perf_counter() - started, path


# --------------------------------------------------------------- zarr 3 --

def zarr_blosc(level):
    from zarr.codecs import BloscCodec
    return BloscCodec(cname="zstd", clevel=level, shuffle="shuffle", typesize=2)


def _zarr_share(rank, n, size, path):
    import zarr

    from blockfs_mpi.compression import single_threaded
    single_threaded()
    array = zarr.open_array(path, mode="r+")
    volume = benchmark_volume(size)
    for z in range(rank * B, size, n * B):  # shard z-slab by shard z-slab
        array[z:z + B] = volume[z:z + B]


def zarr_sharded_write(size, level, folder, n=2):
    """Seconds: zarr 3 array, shards of (64, size, size), inner chunks 64^3, n processes."""
    import zarr
    path = os.path.join(fresh(folder), "volume.zarr")
    started = time.perf_counter()
    zarr.create_array(store=path, shape=(size,) * 3, dtype="uint16", chunks=(B, B, B),
                      shards=(B, size, size), compressors=zarr_blosc(level), overwrite=True)
    seconds = time.perf_counter() - started + in_processes(_zarr_share, n, size, path)
    started = time.perf_counter()
    fsync_tree(folder)
    return seconds + time.perf_counter() - started, path


def zarr_default_write(size, folder):
    """Seconds: zarr 3 defaults (no shards, its default compressor), one process, arr[:] = volume."""
    import zarr
    path = os.path.join(fresh(folder), "volume.zarr")
    volume = benchmark_volume(size)
    started = time.perf_counter()
    array = zarr.create_array(store=path, shape=(size,) * 3, dtype="uint16", chunks=(B, B, B))
    array[:] = volume
    fsync_tree(folder)
    return time.perf_counter() - started, path


def zarr_reads(path):
    import zarr
    array = zarr.open_array(path, mode="r")
    return (lambda x, y, z: array[z:z + B, y:y + B, x:x + B]), (lambda: array[:])


def zarr_codecs(path):
    import zarr
    array = zarr.open_array(path, mode="r")
    return ("shards " + "x".join(map(str, array.shards)) + " " if array.shards else "") + \
        "+".join(type(c).__name__ for c in array.compressors)


# ---------------------------------------------------------- TensorStore --

def tensorstore_spec(path, size, level=None):
    """zarr3 spec: sharded (64, size, size) with Blosc zstd-level inside, or defaults if no level."""
    metadata = {"shape": [size] * 3, "data_type": "uint16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [B] * 3}}}
    if level is not None:
        inner = [{"name": "bytes", "configuration": {"endian": "little"}},
                 {"name": "blosc", "configuration": {"cname": "zstd", "clevel": level,
                                                     "shuffle": "shuffle", "typesize": 2,
                                                     "blocksize": 0}}]
        metadata["chunk_grid"]["configuration"]["chunk_shape"] = [B, size, size]
        metadata["codecs"] = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [B] * 3, "codecs": inner,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}]}}]
    return {"driver": "zarr3", "kvstore": {"driver": "file", "path": path},
            "metadata": metadata, "create": True, "delete_existing": True}


def tensorstore_write(size, folder, level=None):
    """Seconds: one TensorStore write of the whole volume with its own thread pool (fsyncs)."""
    import tensorstore as ts
    path = os.path.join(fresh(folder), "volume.zarr")
    volume = benchmark_volume(size)
    started = time.perf_counter()
    store = ts.open(tensorstore_spec(path, size, level),
                    context=ts.Context({"file_io_sync": True})).result()
    store.write(volume).result()
    return time.perf_counter() - started, path


def tensorstore_reads(path):
    import tensorstore as ts
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}).result()
    return ((lambda x, y, z: store[z:z + B, y:y + B, x:x + B].read().result()),
            (lambda: store.read().result()))


def tensorstore_codecs(path):
    import tensorstore as ts
    store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}).result()
    codecs = store.spec().to_json()["metadata"].get("codecs", [])
    names = [c["name"] for c in codecs]
    if names == ["sharding_indexed"]:
        names = ["sharded"] + [c["name"] for c in codecs[0]["configuration"]["codecs"]]
    return "+".join(names)


# ----------------------------------------------------------------- h5py --

def h5py_write(size, folder, level=None, gzip=None, shuffle=False):
    """Seconds: h5py chunked 64^3, normal writes slab by slab (Blosc via hdf5plugin, or gzip)."""
    import h5py
    path = os.path.join(fresh(folder), "volume.h5")
    volume = benchmark_volume(size)
    if level is not None:
        import hdf5plugin
        filters = dict(hdf5plugin.Blosc(cname="zstd", clevel=level,
                                        shuffle=hdf5plugin.Blosc.SHUFFLE))
    else:
        filters = dict(compression="gzip", compression_opts=gzip, shuffle=shuffle)
    started = time.perf_counter()
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("data", (size,) * 3, np.uint16, chunks=(B, B, B), **filters)
        for z in range(0, size, B):
            dataset[z:z + B] = volume[z:z + B]
    fsync_tree(folder)
    return time.perf_counter() - started, path


_ENCODER = {}


def _encode_chunk(origin):
    x, y, z = origin
    if "codec" not in _ENCODER:
        _ENCODER["codec"] = zstd(_ENCODER["level"])
    volume = benchmark_volume(_ENCODER["size"])
    return origin, _ENCODER["codec"].encode(np.ascontiguousarray(volume[z:z + B, y:y + B,
                                                                        x:x + B]))


def h5py_direct_write(size, level, folder, n=2):
    """Seconds: n processes Blosc-encode chunks; the parent stores them with write_direct_chunk."""
    import h5py
    import hdf5plugin
    path = os.path.join(fresh(folder), "volume.h5")
    _ENCODER.update(size=size, level=level)
    started = time.perf_counter()
    with CONTEXT.Pool(n) as pool, h5py.File(path, "w") as f:
        dataset = f.create_dataset("data", (size,) * 3, np.uint16, chunks=(B, B, B),
                                   **hdf5plugin.Blosc(cname="zstd", clevel=level,
                                                      shuffle=hdf5plugin.Blosc.SHUFFLE))
        for (x, y, z), payload in pool.imap_unordered(_encode_chunk, block_origins(size), 8):
            dataset.id.write_direct_chunk((z, y, x), payload)
    fsync_tree(folder)
    return time.perf_counter() - started, path


def h5py_reads(path):
    import h5py
    import hdf5plugin  # noqa: F401  (registers the Blosc filter)
    dataset = h5py.File(path, "r", rdcc_nbytes=0)["data"]  # no chunk cache: nobody else has one
    return (lambda x, y, z: dataset[z:z + B, y:y + B, x:x + B]), (lambda: dataset[:])


# ----------------------------------------------------------------- main --

def same_codec_systems(args, out):
    """The same-codec table's rows as (name, measure) pairs; measure() writes the volume once
    and returns (write MB/s, folder or None, readers factory or None)."""
    size, level = args.size, args.level
    typical = typical_block(size, level)  # chosen once, untimed

    def timed(writer, reads):
        """A measure() for a writer returning (seconds, path), read back with reads(path)."""
        def measure():
            seconds, path = writer()
            return megabytes(size) / seconds, os.path.dirname(path), lambda: reads(path)
        return measure

    def blockfs(n):
        def measure():
            folder = fresh(os.path.join(out, f"blockfs_mpi{n}"))
            path = os.path.join(folder, "volume.blockfs")
            return blockfs_write(size, level, n, path), folder, lambda: blockfs_reads(path)
        return measure

    systems = []
    for n in (1, 2):
        raw = os.path.join(out, f"raw{n}")
        systems.append((f"ceiling: io, {n} proc (raw bytes + fsync)",
                        lambda n=n, raw=raw: (io_ceiling(size, n, raw), raw, None)))
    for n in (1, 2):
        systems.append((f"ceiling: compress, {n} proc (every block)",
                        lambda n=n: (compression_ceiling(size, level, n), None, None)))
    for n in (1, 2):
        systems.append((f"ceiling: tight loop, {n} proc (one typical block)",
                        lambda n=n: (tight_loop_ceiling(size, level, n, typical), None, None)))
    for n in (1, 2):
        systems.append((f"blockfs_mpi, mpiexec -n {n}", blockfs(n)))
    systems += [
        ("original-style writer, 2 writer procs",
         timed(lambda: original_style_write(size, level, os.path.join(out, "original")),
               blockfs_reads)),
        ("zarr 3 sharded, 2 procs",
         timed(lambda: zarr_sharded_write(size, level, os.path.join(out, "zarr")), zarr_reads)),
        ("TensorStore zarr3 sharded",
         timed(lambda: tensorstore_write(size, os.path.join(out, "tensorstore"), level),
               tensorstore_reads)),
        ("h5py Blosc filter, normal writes",
         timed(lambda: h5py_write(size, os.path.join(out, "h5py_blosc"), level=level),
               h5py_reads)),
        ("h5py write_direct_chunk, 2 encoders",
         timed(lambda: h5py_direct_write(size, level, os.path.join(out, "h5py_direct")),
               h5py_reads)),
        ("h5py gzip-4 + shuffle (other codec)",
         timed(lambda: h5py_write(size, os.path.join(out, "h5py_gzip"), gzip=4, shuffle=True),
               h5py_reads)),
    ]
    return systems


def in_rounds(systems, rounds, measure):
    """{name: [measure(name, fn) of each round]}, the systems' order reversed every other
    round, so that a noisy machine's drift falls on every system alike."""
    results = {name: [] for name, _ in systems}
    for number in range(rounds):
        print(f"# round {number + 1} of {rounds}", file=sys.stderr, flush=True)
        for name, fn in (systems if number % 2 == 0 else systems[::-1]):
            results[name].append(measure(name, fn))
    return results


def spread(values, digits=0):
    """A median with its range over the rounds: '612 (580-640)', or the value for one round."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    median = f"{np.median(values):.{digits}f}"
    if len(values) == 1:
        return median
    return f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f})"


REFERENCE = "blockfs_mpi, mpiexec -n 2"
COMPRESSION_CEILING = "ceiling: compress, 2 proc (every block)"


def same_codec_table(args, out):
    """Every same-codec system measured in args.rounds alternating rounds: write and read rates
    as medians with ranges, and blockfs_mpi's per-round ratio to each peer."""
    size = args.size

    def measure(name, fn):
        rate, folder, readers = fn()
        on_disk, files = footprint(folder) if folder else (None, None)
        reads = measure_reads(size, args.reads, *readers()) if readers else (None, None)
        if name == REFERENCE:
            reads += (random_reads(size, os.path.join(folder, "volume.blockfs"), args.reads)[1],)
        return rate, on_disk, files, *reads

    results = in_rounds(same_codec_systems(args, out), args.rounds, measure)
    ceilings = [row[0] for row in results[COMPRESSION_CEILING]]
    print(f"\n## Same codec: Blosc zstd-{args.level} byte shuffle, {size}^3 uint16 "
          f"({megabytes(size):.0f} MB), 64^3 blocks; {args.rounds} round(s), median (range); "
          f"load {os.getloadavg()[0]:.2f}\n")
    print("| system | write MB/s | x compress ceiling (2 proc) | bytes on disk | files | "
          "random 64^3 reads/s | full read MB/s |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        rates, on_disk, files, reads, full = ([row[i] for row in rows] for i in range(5))
        print(f"| {name} | {spread(rates)} | "
              f"{spread([r / c for r, c in zip(rates, ceilings)], 2)} | "
              f"{on_disk[-1] if on_disk[-1] is not None else '-'} | "
              f"{files[-1] if files[-1] is not None else '-'} | {spread(reads)} | "
              f"{spread(full)} |", flush=True)
    decode = [row[5] for row in results[REFERENCE]]
    blocks = len(block_origins(size))
    print(f"| ceiling: decode only (payloads in memory) | - | - | - | - | {spread(decode)} | "
          f"{spread([megabytes(size) * rate / blocks for rate in decode])} |")

    print(f"\n### {REFERENCE} / each peer, per round: median (range)\n")
    print("| peer | write | random 64^3 reads | full read |")
    print("|---|---|---|---|")
    ours = results[REFERENCE]
    for name, rows in results.items():
        if name == REFERENCE or name.startswith("ceiling"):
            continue
        ratios = [spread([a[i] / b[i] for a, b in zip(ours, rows)], 2) for i in (0, 3, 4)]
        print(f"| {name} | {' | '.join(ratios)} |", flush=True)


def defaults_table(args, out):
    from blockfs_mpi import Directory
    size = args.size
    rows = []
    folder = fresh(os.path.join(out, "d_blockfs_mpi"))
    path = os.path.join(folder, "volume.blockfs")
    rows.append(("blockfs_mpi, mpiexec -n 2", blockfs_write(size, "default", 2, path), folder,
                 lambda path=path: blockfs_reads(path), lambda path=path: blockfs_codec(path)))

    folder = fresh(os.path.join(out, "d_blockfs_local"))
    path = os.path.join(folder, "volume.blockfs")
    volume = benchmark_volume(size)
    started = time.perf_counter()
    directory = Directory(size, size, size, np.uint16, path)
    directory.create()
    for x, y, z in block_origins(size):
        directory.write_block(volume[z:z + B, y:y + B, x:x + B], x, y, z)
    directory.close()
    rows.append(("blockfs_mpi, no mpiexec (local writer procs)",
                 megabytes(size) / (time.perf_counter() - started), folder,
                 lambda path=path: blockfs_reads(path), lambda path=path: blockfs_codec(path)))

    seconds, path = original_style_write(size, 5, os.path.join(out, "d_original"),
                                         n_files=os.cpu_count(), single=False)
    rows.append(("original-style writer (n_filenames=cores, zstd-5, Blosc threads)",
                 megabytes(size) / seconds, os.path.dirname(path),
                 lambda path=path: blockfs_reads(path), lambda: "blosc zstd-5 shuffle"))

    seconds, path = zarr_default_write(size, os.path.join(out, "d_zarr"))
    rows.append(("zarr 3 create_array(chunks=64^3), arr[:] = volume", megabytes(size) / seconds,
                 os.path.dirname(path), lambda path=path: zarr_reads(path),
                 lambda path=path: zarr_codecs(path)))

    seconds, path = tensorstore_write(size, os.path.join(out, "d_tensorstore"))
    rows.append(("TensorStore zarr3, chunk 64^3, default codecs", megabytes(size) / seconds,
                 os.path.dirname(path), lambda path=path: tensorstore_reads(path),
                 lambda path=path: tensorstore_codecs(path)))

    seconds, path = h5py_write(size, os.path.join(out, "d_h5py"), gzip=None)
    rows.append(('h5py chunks=64^3, compression="gzip"', megabytes(size) / seconds,
                 os.path.dirname(path), lambda path=path: h5py_reads(path),
                 lambda: "gzip-4 (h5py's default level), no shuffle"))

    print(f"\n## Each at its own defaults, {size}^3 uint16; load {os.getloadavg()[0]:.2f}\n")
    print("| system | codec | write MB/s | bytes on disk | files | random 64^3 reads/s | "
          "full read MB/s |")
    print("|---|---|---|---|---|---|---|")
    for name, rate, folder, readers, codec in rows:
        on_disk, files = footprint(folder)
        reads = measure_reads(size, args.reads, *readers())
        print(f"| {name} | {codec()} | {rate:.0f} | {on_disk} | {files} | {reads[0]:.0f} | "
              f"{reads[1]:.0f} |", flush=True)


def blockfs_codec(path):
    from blockfs_mpi import Directory
    d = Directory.open(path)
    return f"blosc {d.compression.name}-{d.compression_level} {d.header.shuffle} shuffle"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="volume edge in voxels (64 x k)")
    parser.add_argument("--level", type=int, default=5, help="zstd level of the same-codec table")
    parser.add_argument("--reads", type=int, default=2000, help="random block reads")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait (up to 10 min) for the 1-minute load average to drop below")
    parser.add_argument("--out", default=os.path.join(CACHE, "peers"), help="output folder")
    parser.add_argument("--no-defaults", action="store_true", help="skip the defaults table")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the same-codec table this many times, alternating the "
                             "order of the systems round by round; report medians and ranges")
    args = parser.parse_args()
    benchmark_volume(args.size)  # generated outside any timing
    wait_for_quiet(args.max_load)
    print(f"# {machine_line()}")
    print(f"# {versions()}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    same_codec_table(args, args.out)
    if not args.no_defaults:
        wait_for_quiet(args.max_load)
        defaults_table(args, args.out)
    print(f"\n# done, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
