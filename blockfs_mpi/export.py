"""What the export programs (blockfs2tif, blockfs2jp2k, blockfs2hdf) share.

The unit of work is a z-slab one block deep: reading it decodes each block
once, and every plane or chunk it holds can be written by one rank alone.
Plane exporters deal slabs out on demand (a rank that finishes one takes the
next); blockfs2hdf's collective writes need every rank in each call, so
there slabs go round-robin and `rounds` pads the shares to the same length.
"""
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

from . import parallel
from .dealer import Dealer
from .options import check_level
from .progress import Progress

log = logging.getLogger("blockfs_mpi")


def check_pattern(pattern):
    """Return pattern if it formats a z index into a file name (`out/img_%04d.tif`), else raise."""
    try:
        names = {pattern % 0, pattern % 1}
    except (TypeError, ValueError) as e:
        raise ValueError(f"output pattern {pattern!r} needs exactly one %d-style field for the "
                         f"z index, e.g. out/img_%04d.tiff ({e})") from None
    if len(names) != 2:
        raise ValueError(f"output pattern {pattern!r} has no %d-style field for the z index, "
                         f"e.g. out/img_%04d.tiff")
    return pattern


def plane_path(pattern, z):
    """The file name of plane z, its folder created if missing."""
    path = pattern % z
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create output folder {folder}: {e.strerror or e}") from None
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"output folder {folder} is not writable")
    return path


def check_workers(value):
    """--n-workers as a number, or None when not given (one per core)."""
    return value and check_level("--n-workers", value, 1, 4096)


def slabs(geometry):
    """(z0, z1) of every z-slab one block deep."""
    zb, nz = geometry.z_block_size, geometry.z_extent
    return [(z, min(z + zb, nz)) for z in range(0, nz, zb)]


def rounds(n_items, comm):
    """This rank's item per round (None when it has none); the same length on every rank."""
    rank, size = parallel.rank_of(comm), parallel.size_of(comm)
    count = -(-n_items // size)
    return [i if i < n_items else None for i in range(rank, count * size, size)]


def run(work, n_items, total, comm=None, n_workers=None, desc="export", unit="plane",
        silent=False):
    """Do work(i) for every i in range(n_items), with one progress bar for the job.

    work(i) is a generator yielding (items, bytes) as it goes, counted towards
    `total`. Without MPI, n_workers > 1 spreads the items over local worker
    processes (work must then be picklable; default: one per core); under MPI the
    ranks are the workers, each taking the next item as it finishes one (Dealer).
    Returns (items, bytes, seconds) of the whole job (collective).
    """
    if comm is None:
        n_workers = min(n_workers or parallel.usable_cores(), n_items)
        if n_workers > 1:
            return _run_in_processes(work, range(n_items), n_workers, total, desc, unit, silent)
    elif n_workers:
        log.info("under mpiexec every rank is one worker; --n-workers is not used")
    progress = Progress(comm, total, desc, unit=unit, disable=silent)
    with Dealer(n_items, comm) as dealt:
        for i in dealt:
            for items, nbytes in work(i):
                progress.update(items, nbytes)
    return progress.close()


def _run_in_processes(work, items, n_workers, total, desc, unit, silent):
    """run() over local worker processes. The workers are forked before the progress bar
    starts its monitor thread, a worker's error cancels the work not yet started, and a
    worker that dies (the OOM killer) ends the job with BrokenProcessPool instead of a hang."""
    with ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_drain, work, i) for i in items]
        progress = Progress(None, total, desc, unit=unit, disable=silent)
        try:
            for future in as_completed(futures):
                progress.update(*future.result())
        finally:  # after an error, the work not yet started is dropped
            pool.shutdown(cancel_futures=True)
            totals = progress.close()
    return totals


def _drain(work, item):
    """work(item) run to the end in a worker process; its total (items, bytes)."""
    items = nbytes = 0
    for done, size in work(item):
        items += done
        nbytes += size
    return items, nbytes


def report(comm, what, unit, items, nbytes, seconds):
    """Log the job's totals on rank 0."""
    if parallel.rank_of(comm) == 0:
        log.info("%s: %d %ss, %.1f MB in %.1f s (%.1f MB/s) on %d rank(s)", what, items,
                 unit, nbytes / 1e6, seconds, nbytes / 1e6 / max(seconds, 1e-9),
                 parallel.size_of(comm))


class PlaneSlabs:
    """work(i) of the plane exporters: read z-slab i, write each of its planes to its own file."""

    def __init__(self, directory, pattern, write_plane):
        self.directory = directory
        self.pattern = pattern
        self.write_plane = write_plane  # write_plane(path, 2-D array); picklable
        self.slabs = slabs(directory.geometry)

    def __call__(self, i):
        z0, z1 = self.slabs[i]
        for z, plane in enumerate(self.directory[z0:z1], z0):
            self.write_plane(plane_path(self.pattern, z), plane)
            yield 1, plane.nbytes


def export_planes(directory, pattern, work, comm=None, n_workers=None, silent=False, what="export"):
    """Run a plane exporter's work over the whole volume; (planes, bytes, seconds) of the job."""
    plane_path(pattern, 0)  # an output folder that cannot be made fails here, before any work
    totals = run(work, len(slabs(directory.geometry)), directory.shape[0], comm, n_workers,
                 desc=what, unit="plane", silent=silent)
    report(comm, what, "plane", *totals)
    return totals
