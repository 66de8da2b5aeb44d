"""Write every z plane of a blockfs volume to a JPEG 2000 file of its own (glymur).

Lossless by default; --psnr gives lossy planes of about that quality. The file
format follows the pattern's extension (.jp2, or .j2k for a raw codestream).
Under mpiexec the ranks share the work by z-slabs one block deep; run without
mpiexec, --n-workers local processes do the same. glymur needs OpenJPEG >= 2.4
(Debian/Ubuntu: apt-get install libopenjp2-7). Each plane is written under a
hidden temporary name and renamed when complete, so an interrupted run leaves
no partial plane under a final name; existing planes are refused unless you
pass --overwrite (replace them) or --resume (keep them and write the rest).

Usage:
  blockfs2jp2k <blockfs-file> <pattern> [options]
  blockfs2jp2k --input <blockfs-file> --output-pattern <pattern> [options]
  blockfs2jp2k -h | --help | --version

Arguments:
  <blockfs-file>              The volume's directory file (blockfs format 1 or 2); --input is an alias.
  <pattern>                   printf pattern of the z index, e.g. out/img_%04d.jp2; missing folders are created; --output-pattern is an alias.

Options:
  -h --help                   Show this text.
  --input <blockfs-file>      Same as <blockfs-file> (the older spelling).
  --output-pattern <pattern>  Same as <pattern> (the older spelling).
  --overwrite                 Replace output planes that exist already.
  --resume                    Keep the output planes that exist already (complete by construction) and write the others.
  --n-workers <n>             Worker processes when run without mpiexec (default: one per core this process may use). Under mpiexec every rank is one worker and this option is not used.
  --psnr <psnr>               Lossy compression to this peak signal-to-noise ratio in dB (e.g. 80); lossless when not given.
  --silent                    Do not show the progress bar.
"""
from functools import partial

from . import export, parallel
from .options import number_in_range, parse_command_line

OPENJPEG_HELP = ("install Debian/Ubuntu's libopenjp2-7 (apt-get install libopenjp2-7), or point "
                 "glymur at another libopenjp2 (e.g. the one in Pillow's wheel, pillow.libs/) with "
                 "'[library]' 'openjp2 = PATH' in $XDG_CONFIG_HOME/glymur/glymurrc")


def require_glymur():
    """The glymur module, or a RuntimeError saying what is missing and how to install it."""
    try:
        import glymur
    except ImportError as e:
        raise RuntimeError(f"blockfs2jp2k needs glymur ({e}): pip install 'blockfs_mpi[jp2k]'")
    if glymur.version.openjpeg_version_tuple < (2, 4, 0):
        raise RuntimeError(f"glymur found no OpenJPEG >= 2.4 library (found "
                           f"{glymur.version.openjpeg_version}): {OPENJPEG_HELP}")
    return glymur


def write_plane(path, plane, psnr=None):
    """One plane to one JPEG 2000 file, lossless unless psnr (dB) is given."""
    options = {"psnr": [psnr]} if psnr else {}
    require_glymur().Jp2k(path, data=plane, **options)


def export_jp2k(directory, pattern, psnr=None, comm=None, n_workers=None, silent=False,
                overwrite=False, resume=False):
    """Write every plane of directory to pattern % z; (planes, bytes, seconds) of the job.
    Existing planes are refused unless overwrite (replace) or resume (keep, write the rest)."""
    export.check_pattern(pattern)
    require_glymur()
    make_work = partial(export.PlaneSlabs, directory, pattern, partial(write_plane, psnr=psnr))
    return export.export_planes(directory, pattern, make_work, comm, n_workers, silent,
                                "blockfs2jp2k", overwrite, resume)


@parallel.program
def main(argv=None):
    args = parse_command_line(__doc__, argv)
    pattern = export.check_pattern(args["<pattern>"] or args["--output-pattern"])
    psnr = args["--psnr"] and number_in_range("--psnr", args["--psnr"], 1, 1000, float)
    n_workers = export.check_workers(args["--n-workers"])
    require_glymur()
    directory = export.open_volume(args["<blockfs-file>"] or args["--input"], parallel.world())
    export_jp2k(directory, pattern, psnr, parallel.world(), n_workers, args["--silent"],
                args["--overwrite"], args["--resume"])


if __name__ == "__main__":
    main()
