"""Every program's command line: a bad number ends the program with one line naming the
option and the value, before anything is read or written; --version names the release."""
import re
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


# ------------------------------------------- a path that is not what is expected --

def program_run(program, *args, expect_failure=True, n=None):
    """Run python -m blockfs_mpi.<program> (under mpiexec -n n when n); the CompletedProcess."""
    from conftest import mpiexec
    launcher = [mpiexec(), "-n", str(n)] if n else []
    return run_checked([*launcher, sys.executable, "-m", f"blockfs_mpi.{program}",
                        *map(str, args)], timeout=120, expect_failure=expect_failure)


@pytest.fixture
def lab(tmp_path):
    """A pyramid, a volume with two data files, a TIFF and an HDF5 file with a group."""
    import h5py
    import numpy as np

    from conftest import write_array
    (tmp_path / "pyr" / "brain" / "1_1_1").mkdir(parents=True)
    write_array(str(tmp_path / "pyr" / "brain" / "1_1_1" / "precomputed.blockfs"),
                np.ones((8, 8, 8), np.uint16))
    write_array(str(tmp_path / "v.blockfs"), np.ones((8, 8, 8), np.uint16), block=4)
    (tmp_path / "stack.tif").write_bytes(b"II*\0" + bytes(60))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("raw/ch0", data=np.ones((4, 4, 4), np.uint16))
        f.create_dataset("raw/ch1", data=np.ones((4, 4, 4), np.uint16))
    return tmp_path


@pytest.mark.parametrize("name, error, said", [
    ("pyr/brain", IsADirectoryError,
     "{lab}/pyr/brain is a pyramid folder (its level 1 is {lab}/pyr/brain/1_1_1/"
     "precomputed.blockfs), not a blockfs directory file: pass {lab}/pyr/brain/1_1_1/"
     "precomputed.blockfs"),
    ("pyr/brain/1_1_1", IsADirectoryError, "pass {lab}/pyr/brain/1_1_1/precomputed.blockfs"),
    ("v.blockfs.1", "FormatError",
     "{lab}/v.blockfs.1 is data file 1 of the volume {lab}/v.blockfs, not a blockfs directory "
     "file: pass {lab}/v.blockfs"),
    ("stack.tif", "FormatError", "{lab}/stack.tif is a TIFF file, not a blockfs directory file"),
    ("f.h5", "FormatError", "blockfs-write '{lab}/f.h5:/<dataset>' <output> converts one of "
                            "its datasets"),
    ("", IsADirectoryError, "{lab} is a folder (of the volume {lab}/v.blockfs), not a blockfs "
                            "directory file: pass {lab}/v.blockfs"),
])
def test_open_says_what_a_path_is_and_what_to_pass(lab, name, error, said):
    """Directory.open of a folder, a pyramid, a data file, a TIFF or an HDF5 file: what it is
    and what to pass instead, from the API as from every program."""
    from blockfs_mpi import Directory
    from blockfs_mpi.errors import FormatError
    error = FormatError if error == "FormatError" else error
    with pytest.raises(error) as raised:
        Directory.open(str(lab / name) if name else str(lab))
    assert said.format(lab=lab) in str(raised.value)
    result = program_run("info", lab / name if name else lab)
    assert result.stderr == f"error: {raised.value}\n"


def test_an_hdf5_group_where_a_dataset_is_expected(lab):
    """blockfs-write file.h5:/raw (a group) lists its datasets; blockfs2hdf never replaces a
    group, even with --overwrite, and says which datasets it holds."""
    import h5py
    result = program_run("write", f"{lab}/f.h5:/raw", lab / "out.blockfs")
    assert result.stderr == (f"error: {lab}/f.h5:/raw: /raw is an HDF5 group, not a dataset; "
                             f"its datasets: /raw/ch0, /raw/ch1\n")
    result = program_run("write", f"{lab}/f.h5:/row", lab / "out.blockfs")
    assert "no dataset '/row'; its datasets: /raw/ch0, /raw/ch1" in result.stderr
    result = program_run("blockfs2hdf", lab / "v.blockfs", lab / "f.h5", "raw", "--overwrite")
    assert "/raw is an HDF5 group, not a dataset; its datasets: /raw/ch0, /raw/ch1" in \
        result.stderr
    with h5py.File(lab / "f.h5", "r") as f:
        assert sorted(f["raw"]) == ["ch0", "ch1"]
    assert not (lab / "out.blockfs").exists()


@pytest.mark.mpi
def test_an_error_every_rank_has_is_said_once_without_mpich_noise(lab):
    """Every rank fails to open the source: one '[rank 0] error: ...' line, no MPI_Abort
    noise; an error of one rank alone is said by that rank."""
    result = program_run("write", f"{lab}/f.h5:/raw", lab / "out.blockfs", n=2)
    assert result.stderr == (f"[rank 0] error: {lab}/f.h5:/raw: /raw is an HDF5 group, not a "
                             f"dataset; its datasets: /raw/ch0, /raw/ch1\n"), result.stderr
    result = program_run("blockfs2tif", lab / "pyr" / "brain", lab / "z%d.tif", n=2)
    assert result.stderr.count("error:") == 1 and "Abort(" not in result.stderr
    assert result.stderr.startswith(f"[rank 0] error: {lab}/pyr/brain is a pyramid folder")


# ------------------------------------------------------------- small ones --

def test_a_gap_in_the_plane_numbers_is_warned_about(tmp_path):
    import numpy as np
    import tifffile
    for z in (0, 1, 2, 4, 5):
        tifffile.imwrite(tmp_path / f"img_{z:04d}.tif", np.full((8, 8), z, np.uint16))
    result = program_run("write", tmp_path / "img_*.tif", tmp_path / "v.blockfs", "--silent",
                         expect_failure=False)
    assert "the plane numbers jump from 2 to 4: 1 missing, so z shifts: plane 4 and every " \
           "one after it lands 1 lower in z than its number" in result.stderr
    for z in (3, 4):
        tifffile.imwrite(tmp_path / f"img_{z:04d}.tif", np.full((8, 8), z, np.uint16))
    result = program_run("write", tmp_path / "img_*.tif", tmp_path / "w.blockfs", "--silent",
                         expect_failure=False)
    assert "jump" not in result.stderr


@pytest.mark.parametrize("options", [["--n-workers", "2"], ["--y-stripe", "4"]])
def test_blockfs2tif_start_numbers_the_first_plane(tmp_path, options):
    import numpy as np
    import tifffile

    from conftest import write_array
    voxels = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    write_array(str(tmp_path / "v.blockfs"), voxels, block=4)
    program_run("blockfs2tif", tmp_path / "v.blockfs", tmp_path / "out" / "z%02d.tif",
                "--start", "1", "--silent", *options, expect_failure=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        [f"z{n:02d}.tif" for n in range(1, 7)]
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "z01.tif"), voxels[0])
    result = program_run("blockfs2tif", tmp_path / "v.blockfs", tmp_path / "out" / "z%02d.tif",
                         "--start", "1", "--resume", "--silent", *options, expect_failure=False)
    assert "no plane left to write" in result.stderr


def test_summaries_say_no_nan_nor_zero_rates():
    from blockfs_mpi.convert import Summary
    assert str(Summary(0, 400, 0, 0, 0.05)) == \
        "0 blocks written, 400 already present; nothing left to write (0.1 s)"
    small = str(Summary(1, 0, 1024, 697, 3.6))
    assert small == ("1 blocks written, 0 already present; 1.0 kB in, 697 B out (ratio 1.47); "
                     "284 B/s in 3.6 s")
    assert "536.9 MB/s" in str(Summary(8, 0, 2 ** 30, 2 ** 28, 2.0))


def test_info_of_an_empty_volume_and_into_a_closed_pipe(tmp_path):
    """No 'ratio None' for a volume without blocks; a reader that stopped reading (`| head`)
    ends blockfs-info quietly."""
    import os
    import subprocess

    import numpy as np

    from blockfs_mpi import Directory
    directory = Directory(8, 8, 8, np.uint8, str(tmp_path / "v.blockfs"), n_filenames=1)
    directory.create()
    directory.close()
    out = program_run("info", tmp_path / "v.blockfs", expect_failure=False).stdout
    assert "bytes: 0 compressed, 0 uncompressed\n" in out and "None" not in out
    read, write = os.pipe()
    os.close(read)  # as head does once it has its lines
    process = subprocess.run([sys.executable, "-m", "blockfs_mpi.info",
                              str(tmp_path / "v.blockfs")], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=60)
    os.close(write)
    assert process.stderr == "" and process.returncode == 1


@pytest.mark.parametrize("args, message", [
    (["--memory", "2"], "error: --memory '2' has no unit: give one, e.g. 2G or 2M"),
    (["--data-dirs", "{tmp}/disk1,{tmp}/nodisk"],
     "error: --data-dirs: {tmp}/nodisk: no such folder; create it first"),
])
def test_write_options_that_would_surprise(tmp_path, args, message):
    (tmp_path / "disk1").mkdir()
    result = program_run("write", "synthetic:8x8x8", tmp_path / "v.blockfs",
                         *[a.format(tmp=tmp_path) for a in args])
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert not (tmp_path / "v.blockfs").exists()


# ---------------------------------------------------------- one language --

# Every program's options that mean the same thing everywhere, and the old spellings kept as
# documented aliases ("The old name of ..." / "the older spelling").
SHARED = {
    "write": ["--overwrite", "--resume", "--silent", "--compression=<name>", "--voxel-size",
              "--unit", "--levels"],
    "blockfs2tif": ["<blockfs-file>", "--overwrite", "--resume", "--silent", "--n-workers",
                    "--compression <level>", "--start"],
    "blockfs2jp2k": ["<blockfs-file>", "--overwrite", "--resume", "--silent", "--n-workers"],
    "blockfs2hdf": ["<src>", "--overwrite", "--silent", "--compression <compression>"],
    "blockfs2zarr": ["--overwrite", "--resume", "--silent", "--n-workers", "--voxel-size",
                     "--unit"],
    "mv": ["--overwrite", "--force"],
    "cp": ["--overwrite", "--force"],
    "downsample": ["<blockfs-file>", "--overwrite", "--silent", "--voxel-size", "--unit",
                   "--levels"],
    "fsck": ["<blockfs-file>", "--silent", "--n-workers"],
    "info": ["<blockfs-file>"],
    "rebase": ["<blockfs-file>"],
    "serve": ["--silent", "--quiet"],
}
OLD_NAMES = {"--force": "--overwrite", "--quiet": "--silent"}


@pytest.mark.parametrize("program", sorted(SHARED))
def test_every_help_speaks_the_same_language(program):
    assert sorted(SHARED) == sorted(PROGRAMS)
    text = run_checked([sys.executable, "-m", f"blockfs_mpi.{program}", "--help"],
                       timeout=60).stdout
    for word in SHARED[program]:
        assert word in text, f"{program} --help lacks {word}"
    for old, new in OLD_NAMES.items():
        if re.search(rf"{old}(?![\w-])", text):  # --force, not --force-source
            assert new in text and f"The old name of {new}" in text, text
    if "--n-workers" in text:
        assert "(default: one per core this process may use)" in " ".join(text.split())
    if "--compression" in text:  # says what it names in this program
        line = next(line for line in text.splitlines() if line.strip().startswith("--compression"))
        assert any(word in line for word in ("Blosc", "HDF5", "zlib")), line
