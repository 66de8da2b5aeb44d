"""Describe a blockfs volume: format, extents, dtype, blocks, codec, data files, metadata.

Works on format 1 (original blockfs) and format 2 volumes. Reads only the
directory file and the sizes of the data files.

Usage:
  blockfs-info <blockfs-file> [--json]
  blockfs-info -h | --help | --version

Arguments:
  <blockfs-file>  The volume's directory file.

Exit status 1 if the volume is incomplete: its writer did not finish (a killed
job); the last line then says how to complete it.

Options:
  --json     Print one JSON object (for scripts) instead of text.
  -h --help  Show this text.
"""
import json
import sys

from . import parallel
from .describe import format_info, volume_info
from .options import parse_command_line


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    info = volume_info(args["<blockfs-file>"])
    print(json.dumps(info, indent=1) if args["--json"] else "\n".join(format_info(info)))
    sys.exit(1 if info["incomplete"] else 0)  # a killed job's volume is not a finished one


if __name__ == "__main__":
    main()
