"""Reading a program's command line: docopt against its usage, numbers checked against their
range with an error naming the option."""
import difflib
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

# Beside docopt() itself, docopt-ng's own argv parser (pinned in setup.cfg) tells why a command
# line did not fit.
from docopt import (
    Argument,
    DocoptExit,
    Option,
    Tokens,
    docopt,
    parse_argv,
    parse_docstring_sections,
    parse_options,
)

from . import parallel
from .errors import OptionError

if TYPE_CHECKING:
    from .voxel_size import VoxelSize

Number = TypeVar("Number", int, float)

USAGE_ERROR = 2  # exit status of a command line that does not fit the usage, as in getopt tools


def parse_command_line(usage: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The options of argv as docopt reads them against usage; --help prints the usage and
    --version blockfs_mpi's version, and both exit. A command line that does not fit ends
    the program with one line saying why (rank 0 only) and exit status 2."""
    from . import __version__  # here: the package imports this module while it loads
    argv = sys.argv[1:] if argv is None else argv
    try:
        return docopt(usage, argv, version=f"blockfs_mpi {__version__}")
    except DocoptExit:
        line = usage.split("Usage:", 1)[1].strip().splitlines()[0].strip()
        program = line.split()[0]
        why = misfit(usage, line, argv) or f"the arguments do not fit the usage {line!r}"
        if parallel.rank_of(parallel.world()) == 0:
            sys.stderr.write(f"{program}: {why} (see {program} --help)\n")
        sys.exit(USAGE_ERROR)


def misfit(usage: str, line: str, argv: list[str]) -> str | None:
    """Why argv does not fit usage, in one line: an unknown option with the nearest known
    one, a glob the shell expanded, arguments too many, or what is missing (None if none
    of these)."""
    sections = parse_docstring_sections(usage)
    known = parse_options(sections.before_usage) + parse_options(sections.after_usage)
    names = sorted({o.longer for o in known if o.longer})
    try:
        given = parse_argv(Tokens(argv), list(known), False)
    except DocoptExit as e:  # e.g. "--level requires argument"
        return str(e).splitlines()[0]
    # parse_argv gives every Option its name and every Argument an argv token (docopt types
    # both as optional)
    options = [cast(str, p.name) for p in given if isinstance(p, Option)]
    for name in options:
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1)
            return f"unknown option {name}" + (f" (did you mean {near[0]}?)" if near else "")
    repeatable = re.findall(r"\[(--[\w-]+)[^\]]*\]\.\.\.", line)
    for name in options:
        if options.count(name) > 1 and name not in repeatable:
            return f"option {name} given more than once"
    values = [cast(str, p.value) for p in given if isinstance(p, Argument)]
    positionals = [name for name in required(line) if name.startswith("<")]
    if len(values) > len(positionals):
        expanded = expanded_glob(values)
        if expanded:
            return (f"{len(expanded)} files where one path was expected: this looks like a glob "
                    f"the shell expanded; quote it, e.g. '{expanded_pattern(expanded)}'")
        extra = values[len(positionals):]
        return "unexpected argument" + ("s " if len(extra) > 1 else " ") + \
            ", ".join(repr(value) for value in extra)
    missing = positionals[len(values):] + [name for name in required(line)
                                           if name.startswith("--") and name not in options]
    if missing:
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
    return None


def expanded_glob(values: list[str]) -> list[str]:
    """The longest run of values that looks like one glob's matches: two or more existing
    files of one folder and extension (empty if none)."""
    best: list[str] = []
    run: list[str] = []
    for value in values:
        same = run and (os.path.dirname(value), os.path.splitext(value)[1]) == \
            (os.path.dirname(run[0]), os.path.splitext(run[0])[1])
        run = run + [value] if same and os.path.isfile(value) else \
            ([value] if os.path.isfile(value) else [])
        best = run if len(run) > len(best) else best
    return best if len(best) > 1 else []


def expanded_pattern(files: list[str]) -> str:
    """A quoted glob that matches files: their folder, common name prefix and extension."""
    stem = os.path.commonprefix([os.path.basename(f) for f in files])
    return os.path.join(os.path.dirname(files[0]), f"{stem}*{os.path.splitext(files[0])[1]}")


def required(line: str) -> list[str]:
    """The positional arguments and options a usage line requires, in order: those outside
    [brackets], without an option's value."""
    while re.search(r"\[[^\[\]]*\]", line):
        line = re.sub(r"\[[^\[\]]*\]", "", line)
    line = re.sub(r"(--[\w-]+)[= ]<[^>]+>", r"\1", line)
    return re.findall(r"--[\w-]+|<[^>]+>", line)


def number_in_range(name: str, value: object, low: float, high: float,
                    kind: Callable[[Any], Number] = int) -> Number:
    """value (a string from the command line) as a number of kind from low to high, or a
    one-line OptionError naming the option.

    Every rank parses the same command line, so every rank raises the same error.
    """
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise parallel.everywhere(
            OptionError(f"{name} must be a number from {low} to {high}, not {value!r}"))
    return number


def voxel_size_option(text: str | None, unit: str | None) -> "VoxelSize | None":
    """--voxel-size (with --unit) as a VoxelSize, or None when not given; --unit alone is an
    error."""
    from . import voxel_size  # here: a module that only programs with a voxel size need
    if text is None:
        if unit is not None:
            raise parallel.everywhere(
                OptionError("--unit gives the unit of the --voxel-size numbers: pass both"))
        return None
    try:
        return voxel_size.parse(text, unit)
    except OptionError as e:
        raise parallel.everywhere(e) from None
