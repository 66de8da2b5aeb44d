"""Write every z plane of a blockfs volume to a TIFF file of its own.

Under mpiexec the ranks share the work by z-slabs one block deep: a rank reads
the blocks of its slab and writes its planes. Run without mpiexec, --n-workers
local processes do the same. A rank writes the planes of a slab at once by
strips of whole block rows and stays within --memory for any plane size (see
export.PlaneStripes); each strip is one TIFF strip. Planes over 4 GiB are written
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
  --memory <size>             Memory budget per rank with its unit, e.g. 512M or 4G: a rank holds a few strips of the planes it writes within it [default: 1G].
  --y-stripe <rows>           At most this many rows per strip (rounded up to whole blocks); 0 = as many as --memory allows [default: 0].
  --start <n>                 The number of the first plane in the output names: plane z is written as pattern % (z + n) [default: 0].
  --silent                    Do not show the progress bar.
"""
import zlib
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


def write_plane(path, strips, shape, dtype, rows, level, voxel=None):
    """One plane to one TIFF file from an iterator of its strips of `rows` rows (the last
    may be shorter), each compressed as it comes and written as one TIFF strip."""
    nbytes = shape[0] * shape[1] * dtype.itemsize
    encoded = (zlib.compress(strip, level) if level else strip.tobytes() for strip in strips)
    tifffile.imwrite(path, encoded, shape=shape, dtype=dtype, rowsperstrip=rows,
                     **tiff_options(nbytes, level, voxel))


def export_tiff(directory, pattern, level=3, comm=None, n_workers=None, y_stripe=0, silent=False,
                overwrite=False, resume=False, memory=None):
    """Write every plane of directory to pattern % z; (planes, bytes, seconds) of the job.
    Existing planes are refused unless overwrite (replace) or resume (keep, write the rest).
    memory: the budget per rank in bytes (default export.DEFAULT_MEMORY); y_stripe: at most
    that many rows per strip (0: as many as memory allows)."""
    export.check_pattern(pattern)
    write = partial(write_plane, level=level, voxel=from_metadata(directory.metadata))
    make_work = partial(export.PlaneStripes, directory, pattern, write,
                        memory or export.memory_option(None), rows=y_stripe)
    return export.export_planes(directory, pattern, make_work, comm, n_workers, silent,
                                "blockfs2tif", overwrite, resume)


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    start = number_in_range("--start", args["--start"], 0, 10 ** 12)
    pattern = export.PlanePattern(
        export.check_pattern(args["<pattern>"] or args["--output-pattern"]), start)
    level = number_in_range("--compression", args["--compression"], 0, 9)
    y_stripe = number_in_range("--y-stripe", args["--y-stripe"], 0, 2 ** 31)
    memory = export.memory_option(args["--memory"])
    n_workers = export.check_workers(args["--n-workers"])
    directory = export.open_volume(args["<blockfs-file>"] or args["--input"], parallel.world())
    export_tiff(directory, pattern, level, parallel.world(), n_workers, y_stripe,
                args["--silent"], args["--overwrite"], args["--resume"], memory)


if __name__ == "__main__":
    main()
