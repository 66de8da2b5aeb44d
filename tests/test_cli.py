"""Every program's command line: a bad number ends the program with one line naming the
option and the value, before anything is read or written; --version names the release."""
import sys

import pytest

from conftest import run_checked


@pytest.mark.parametrize("program, args, option", [
    ("write", ["synthetic:20x20x20", "{out}", "--level", "x"], "--level"),
    ("write", ["synthetic:20x20x20", "{out}", "--level", "10"], "--level"),
    ("write", ["synthetic:20x20x20", "{out}", "--stripe-count", "two"], "--stripe-count"),
    ("write", ["synthetic:20x20x20", "{out}", "--stripe-size", "1"], "--stripe-size"),
    ("write", ["synthetic:20x20x20", "{out}", "--levels", "0"], "--levels"),
    ("downsample", ["{out}", "--levels", "many"], "--levels"),
    ("fsck", ["{out}", "--n-workers", "0"], "--n-workers"),
    ("serve", ["{tmp}", "--port", "http"], "--port"),
    ("serve", ["{tmp}", "--cache", "-1"], "--cache"),
    ("rebase", ["{out}", "--index-chunk", "0"], "--index-chunk"),
    ("rebase", ["{out}", "--block-size", "lots"], "--block-size"),  # the old name
])
def test_bad_number_names_its_option(tmp_path, program, args, option):
    out = tmp_path / "out.blockfs"
    command = [sys.executable, "-m", f"blockfs_mpi.{program}",
               *[a.format(out=out, tmp=tmp_path) for a in args]]
    result = run_checked(command, timeout=60, expect_failure=True)
    assert f"{option} must be a number from" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (["--compression", "brotli"],
     "error: unknown compression 'brotli': expected one of zstd, blosclz, lz4, lz4hc, zlib"),
    (["--dtype", "U8"], "unsupported dtype"),
])
def test_bad_codec_or_dtype_is_one_line(tmp_path, args, message):
    """Bad arguments (OptionError, a ValueError, not FormatError) end the program with their
    message alone, before anything is written."""
    command = [sys.executable, "-m", "blockfs_mpi.write", "synthetic:20x20x20",
               str(tmp_path / "out.blockfs"), *args]
    result = run_checked(command, timeout=60, expect_failure=True)
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


PROGRAMS = ["write", "blockfs2tif", "blockfs2jp2k", "blockfs2hdf", "mv", "cp", "rebase", "info",
            "fsck", "downsample", "serve"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_version(program):
    import blockfs_mpi
    result = run_checked([sys.executable, "-m", f"blockfs_mpi.{program}", "--version"],
                         timeout=60)
    assert result.stdout.strip() == f"blockfs_mpi {blockfs_mpi.__version__}", result.stdout
