"""Write every z plane of a blockfs volume to a TIFF file of its own.

Under mpiexec the ranks share the work by z-slabs one block deep: a rank reads
the blocks of its slab and writes its planes. Run without mpiexec, --n-workers
local processes do the same. Memory per rank is one slab (z block x Y x X), or
with --y-stripe a few stripes of that many rows. Planes over 4 GiB are written
as BigTIFF. Each plane is written under a hidden temporary name and renamed when
complete, so an interrupted run leaves no partial plane under a final name;
existing planes are refused unless --overwrite (replace them) or --resume (keep
them and write the rest).

Usage:
  blockfs2tif <blockfs-file> <pattern> [options]
  blockfs2tif --input <blockfs-file> --output-pattern <pattern> [options]
  blockfs2tif -h | --help | --version

Arguments:
  <blockfs-file>              The volume's directory file (blockfs format 1 or 2); --input is an alias.
  <pattern>                   printf pattern of the z index, e.g. out/img_%04d.tiff; missing folders are created; --output-pattern is an alias.

Options:
  -h --help                   Show this text.
  --input <blockfs-file>      Same as <blockfs-file> (the older spelling).
  --output-pattern <pattern>  Same as <pattern> (the older spelling).
  --overwrite                 Replace output planes that exist already.
  --resume                    Keep the output planes that exist already (complete by construction) and write the others.
  --n-workers <n>             Worker processes when run without mpiexec (default: one per core this process may use). Under mpiexec every rank is one worker and this option is not used.
  --compression <level>       The zlib (deflate) level of the TIFF planes, 0 (uncompressed) to 9: a level here, where blockfs-write's --compression names a Blosc compressor [default: 3].
  --y-stripe <rows>           Cut each slab into stripes of this many rows (rounded up to whole blocks) so that a rank holds about 3 stripes instead of a whole slab; 0 = whole slabs [default: 0].
  --start <n>                 The number of the first plane in the output names: plane z is written as pattern % (z + n) [default: 0].
  --silent                    Do not show the progress bar.
"""
import queue
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import tifffile

from . import export, parallel
from .options import number_in_range, parse_command_line
from .voxel_size import from_metadata

BIGTIFF_THRESHOLD = 2 ** 32 - 2 ** 25  # tifffile's: 4 GiB less room for metadata


def tiff_options(nbytes, level, voxel=None):
    """tifffile.imwrite keywords for a plane of nbytes at zlib level (0 = none), with the
    resolution tags of voxel (a VoxelSize) if given: pixels per centimetre, ResolutionUnit
    CENTIMETER (baseline TIFF; ImageJ and Fiji show such sizes in micrometres)."""
    options = dict(bigtiff=nbytes > BIGTIFF_THRESHOLD, photometric="minisblack")
    if level:
        options.update(compression="zlib", compressionargs={"level": level})
    if voxel is not None:
        x, y, _ = voxel.in_nanometers()
        options.update(resolution=(1e7 / x, 1e7 / y), resolutionunit="CENTIMETER")
    return options


def write_plane(path, plane, level, voxel=None):
    """One plane to one TIFF file."""
    tifffile.imwrite(path, plane, **tiff_options(plane.nbytes, level, voxel))


class StripeSlabs(export.SlabWork):
    """work(i) writing slab i by y-stripes: every plane of the slab left to write is written
    at once, one thread per plane, each fed its plane's strips through a queue of depth one."""

    def __init__(self, directory, pattern, level, rows, done=frozenset()):
        super().__init__(directory, pattern, done)
        self.level = level
        yb = directory.geometry.y_block_size
        self.rows = -(-rows // yb) * yb

    def _encode(self, feed):
        while (strip := feed.get()) is not None:
            yield zlib.compress(strip, self.level) if self.level else strip.tobytes()

    def _write(self, path, feed, shape):
        nbytes = shape[0] * shape[1] * self.directory.dtype.itemsize
        export.write_atomically(path, lambda temporary: tifffile.imwrite(
            temporary, self._encode(feed), shape=shape, dtype=self.directory.dtype,
            rowsperstrip=self.rows,
            **tiff_options(nbytes, self.level, from_metadata(self.directory.metadata))))

    def __call__(self, i):
        z0, z1, todo = self.slabs[i]
        _, ny, nx = self.directory.shape
        feeds = [queue.Queue(maxsize=1) for _ in todo]
        pool = ThreadPoolExecutor(len(feeds))
        writers = [pool.submit(self._write, export.plane_path(self.pattern, z), feed, (ny, nx))
                   for z, feed in zip(todo, feeds)]
        try:
            for y in range(0, ny, self.rows):
                stripe = self.directory[z0:z1, y:y + self.rows]
                for z, feed, writer in zip(todo, feeds, writers):
                    _put(feed, stripe[z - z0], writer)
                yield 0, stripe[0].nbytes * len(todo)
        finally:  # end every plane, also when reading failed, so that no thread waits forever
            for feed, writer in zip(feeds, writers):
                _put(feed, None, writer)
            pool.shutdown()
        for writer in writers:
            writer.result()
        yield len(todo), 0


def _put(feed, item, writer):
    """Queue item for a writer thread, unless the thread has ended (its result tells why)."""
    while not writer.done():
        try:
            return feed.put(item, timeout=0.1)
        except queue.Full:
            pass


def export_tiff(directory, pattern, level=3, comm=None, n_workers=None, y_stripe=0, silent=False,
                overwrite=False, resume=False):
    """Write every plane of directory to pattern % z; (planes, bytes, seconds) of the job.
    Existing planes are refused unless overwrite (replace) or resume (keep, write the rest)."""
    export.check_pattern(pattern)
    if y_stripe:
        make_work = partial(StripeSlabs, directory, pattern, level, y_stripe)
    else:
        make_work = partial(export.PlaneSlabs, directory, pattern,
                            partial(write_plane, level=level,
                                    voxel=from_metadata(directory.metadata)))
    return export.export_planes(directory, pattern, make_work, comm, n_workers, silent,
                                "blockfs2tif", overwrite, resume)


@parallel.program
def main(argv=None):
    args = parse_command_line(__doc__, argv)
    start = number_in_range("--start", args["--start"], 0, 10 ** 12)
    pattern = export.PlanePattern(
        export.check_pattern(args["<pattern>"] or args["--output-pattern"]), start)
    level = number_in_range("--compression", args["--compression"], 0, 9)
    y_stripe = number_in_range("--y-stripe", args["--y-stripe"], 0, 2 ** 31)
    n_workers = export.check_workers(args["--n-workers"])
    directory = export.open_volume(args["<blockfs-file>"] or args["--input"], parallel.world())
    export_tiff(directory, pattern, level, parallel.world(), n_workers, y_stripe,
                args["--silent"], args["--overwrite"], args["--resume"])


if __name__ == "__main__":
    main()
