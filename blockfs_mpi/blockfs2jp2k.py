"""Write every z plane of a blockfs volume to a JPEG 2000 file of its own (glymur).

Lossless by default; --psnr gives lossy planes of about that quality. The file
format follows the pattern's extension (.jp2, or .j2k for a raw codestream).
Under mpiexec the ranks share the work by z-slabs one block deep; run without
mpiexec, --n-workers local processes do the same. A rank writes the planes of a
slab at once by tiles of whole block rows (one tile row of each plane at a
time) and stays within --memory for any plane size (see export.PlaneStripes). glymur needs OpenJPEG >= 2.4
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
  --memory <size>             Memory budget per rank with its unit, e.g. 512M or 4G [default: 1G].
  --psnr <psnr>               Lossy compression to this peak signal-to-noise ratio in dB (e.g. 80); lossless when not given.
  --silent                    Do not show the progress bar.
"""
from . import export, parallel
from .export_jp2k import export_jp2k, require_glymur
from .options import number_in_range, parse_command_line


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    pattern = export.check_pattern(args["<pattern>"] or args["--output-pattern"])
    psnr = args["--psnr"] and number_in_range("--psnr", args["--psnr"], 1, 1000, float)
    n_workers = export.check_workers(args["--n-workers"])
    memory = export.memory_option(args["--memory"])
    require_glymur()
    directory = export.open_volume(args["<blockfs-file>"] or args["--input"], parallel.world())
    export_jp2k(directory, pattern, psnr, parallel.world(), n_workers, args["--silent"],
                args["--overwrite"], args["--resume"], memory)


if __name__ == "__main__":
    main()
