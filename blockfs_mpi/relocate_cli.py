"""The command line blockfs-mv and blockfs-cp share: the parts of their usage texts that say
the same, and reading it into a relocate() call."""
from . import parallel
from .options import number_in_range, parse_command_line
from .relocate import relocate

DESTINATION = """, where it keeps its name; or, ending in
          .blockfs, its new directory file (pyr/1_1_1/precomputed.blockfs), whose
          data files are then named after it (<dest>.0, <dest>.1 ...). The folder is
          created if missing; its parent must exist. Any folder will do (the
          source's own, beside it, inside it) as long as no new file would replace
          one of the source's own files.
"""
REPLACING = """  --overwrite      Replace the blockfs volume already at the destination (nothing
                   else is ever replaced).
  --force          The old name of --overwrite.
  --break-lock     Take over a lock that a job on another host left (see blockfs-write).
"""
THREADS = """  --threads <n>    Copy streams per rank [default: auto]: auto is the rank's share
                   of its node's cores, at most 4.
  --silent         No progress bar.
  -h --help        Show this text.
"""


def run(usage: str, move: bool, argv: list[str] | None) -> None:
    """Move (move=True) or copy the volume the command line argv names, as usage reads it."""
    args = parse_command_line(usage, argv)
    threads = None if args["--threads"] == "auto" else number_in_range(
        "--threads", args["--threads"], 1, 64)
    comm = parallel.world()
    overwrite = args["--overwrite"] or args["--force"]
    target = relocate(args["<src>"], args["<dest>"], move, overwrite, comm,
                      fsync=not args.get("--no-fsync"), threads=threads,
                      silent=args["--silent"], break_lock=args["--break-lock"])
    parallel.log.info("%s %s to %s", args["<src>"], "moved" if move else "copied", target)
