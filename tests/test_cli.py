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


PROGRAMS = ["write", "blockfs2tif", "blockfs2jp2k", "blockfs2hdf", "blockfs2zarr", "mv", "cp",
            "rebase", "info", "fsck", "downsample", "serve"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_version(program):
    import blockfs_mpi
    result = run_checked([sys.executable, "-m", f"blockfs_mpi.{program}", "--version"],
                         timeout=60)
    assert result.stdout.strip() == f"blockfs_mpi {blockfs_mpi.__version__}", result.stdout


@pytest.fixture
def planes(tmp_path):
    folder = tmp_path / "planes"
    folder.mkdir()
    for z in range(12):
        (folder / f"img_{z:04d}.tif").write_bytes(b"")
    return sorted(str(p) for p in folder.iterdir())


@pytest.mark.parametrize("program, args, message", [
    ("write", ["synthetic:8x8x8", "{out}", "--verfiy"],
     "unknown option --verfiy (did you mean --verify?)"),
    ("fsck", ["{out}", "--repiar"], "unknown option --repiar (did you mean --repair?)"),
    ("write", ["{planes}", "{out}"], "12 files where one path was expected: this looks like a "
                                     "glob the shell expanded; quote it, e.g. '{folder}/img_00*.tif'"),
    ("write", ["synthetic:8x8x8"], "<output> is required"),
    ("downsample", ["{out}"], "--levels is required"),
    ("write", ["synthetic:8x8x8", "{out}", "--level", "1", "--level", "2"],
     "option --level given more than once"),
    ("info", ["{out}", "extra"], "unexpected argument 'extra'"),
])
def test_a_command_line_that_does_not_fit_is_one_line(tmp_path, planes, program, args, message):
    out, folder = tmp_path / "out.blockfs", tmp_path / "planes"
    argv = []
    for a in args:
        argv += planes if a == "{planes}" else [a.format(out=out)]
    result = run_checked([sys.executable, "-m", f"blockfs_mpi.{program}", *argv], timeout=60,
                         expect_failure=True)
    name = "blockfs-" + program if program in ("write", "fsck", "downsample", "info") else program
    assert result.returncode == 2
    assert result.stderr == f"{name}: {message.format(folder=folder)} (see {name} --help)\n"
    assert not out.exists()


@pytest.mark.mpi
def test_a_misfit_under_mpi_is_said_once(tmp_path):
    from conftest import mpiexec
    result = run_checked([mpiexec(), "-n", "2", sys.executable, "-m", "blockfs_mpi.write",
                          "synthetic:8x8x8", str(tmp_path / "out.blockfs"), "--verfiy"],
                         timeout=60, expect_failure=True)
    assert result.stderr.count("unknown option --verfiy (did you mean --verify?)") == 1, \
        result.stderr
