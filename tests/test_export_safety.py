"""blockfs2tif and blockfs2jp2k never leave a partial plane under its final name, refuse
existing planes without --overwrite, and --resume writes only the missing ones.

Real processes throughout: a blockfs2tif killed with SIGKILL in the middle of its job, a
plane that fails to be written under mpiexec on 2 ranks, and every plane read back with
tifffile or glymur and compared with the volume.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from blockfs_mpi import export
from blockfs_mpi.errors import BlockfsError
from conftest import mpiexec, run_checked, write_array

PLANES = 48  # 3 z-slabs of 16


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """(path, voxels) of a volume whose planes take tifffile ~0.1 s each at zlib level 9."""
    voxels = np.random.default_rng(0).poisson(300, (PLANES, 256, 200)).astype(np.uint16)
    path = tmp_path_factory.mktemp("safety") / "noise.blockfs"
    return write_array(path, voxels, block=16), voxels


def run_program(module, *args, n=0, expect_failure=False):
    """blockfs_mpi.<module> as a plain process (n=0) or on n ranks under mpiexec."""
    command = [sys.executable, "-m", f"blockfs_mpi.{module}", *map(str, args)]
    if n:
        command = [mpiexec(), "-n", str(n), *command]
    return run_checked(command, expect_failure=expect_failure)


def finals(folder, suffix):
    """{z: path} of the planes under their final names (p_<z>.<suffix>) in folder."""
    return {int(p.stem.split("_")[1]): p for p in folder.glob(f"p_*.{suffix}")}


def stamps(folder):
    """(inode, mtime) of every entry of folder, hidden ones included."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def check_planes(planes, voxels, read):
    """Every plane given reads back whole and equals the volume's plane."""
    for z, path in planes.items():
        np.testing.assert_array_equal(read(path), voxels[z], err_msg=str(path))


def test_killed_export_leaves_only_whole_planes_then_refuse_resume_overwrite(tmp_path, volume):
    import tifffile
    source, voxels = volume
    out = tmp_path / "planes"
    pattern = str(out / "p_%02d.tif")
    process = subprocess.Popen(
        [sys.executable, "-m", "blockfs_mpi.blockfs2tif", str(source), str(pattern),
         "--n-workers", "1", "--compression", "9", "--silent"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and finals(out, "tif")):  # the first plane is complete
            assert process.poll() is None and time.monotonic() < deadline, "no plane written"
            time.sleep(0.002)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.communicate()
    written = finals(out, "tif")
    assert 0 < len(written) < PLANES  # the kill landed in the middle of the job
    check_planes(written, voxels, tifffile.imread)

    before = stamps(out)
    refused = run_program("blockfs2tif", source, pattern, expect_failure=True)
    assert (f"{len(written)} of the {PLANES} output planes exist already, the first "
            f"{pattern % min(written)}: use --overwrite") in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and stamps(out) == before

    run_program("blockfs2tif", source, pattern, "--resume", "--compression", "1")
    after = stamps(out)
    assert all(after[p.name] == before[p.name] for p in written.values())  # kept as they were
    assert sorted(after) == sorted(p.name for p in finals(out, "tif").values())  # no leftovers
    check_planes(finals(out, "tif"), voxels, tifffile.imread)

    run_program("blockfs2tif", "--input", source, "--output-pattern", pattern, "--overwrite",
                "--compression", "0")
    replaced = stamps(out)
    assert sorted(replaced) == sorted(after)
    assert all(replaced[name][0] != after[name][0] for name in after)  # new files, renamed in
    check_planes(finals(out, "tif"), voxels, tifffile.imread)
    assert tifffile.TiffFile(pattern % 0).pages[0].compression.name == "NONE"


@pytest.mark.mpi
@pytest.mark.parametrize("options", [[], ["--y-stripe", "64"]])
def test_a_plane_failing_under_mpiexec_leaves_whole_planes_and_resume_finishes(
        tmp_path, volume, options):
    """Plane 20's final name is a folder: the rename of its slab's plane fails on whichever
    rank writes it and ends the job; what is under a final name is whole, and --resume,
    once the folder is gone, writes the rest and removes the temporary files left behind."""
    import tifffile
    source, voxels = volume
    (tmp_path / "p_20.tif").mkdir()
    pattern = str(tmp_path / "p_%d.tif")
    failed = run_program("blockfs2tif", source, pattern, "--overwrite", "--silent", *options,
                         n=2, expect_failure=True)
    assert "p_20.tif" in failed.stderr and "Is a directory" in failed.stderr, failed.stderr
    (tmp_path / "p_20.tif").rmdir()
    check_planes(finals(tmp_path, "tif"), voxels, tifffile.imread)
    run_program("blockfs2tif", source, pattern, "--resume", "--silent", *options, n=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"p_{z}.tif" for z in range(PLANES))
    check_planes(finals(tmp_path, "tif"), voxels, tifffile.imread)


@pytest.mark.mpi
def test_jp2k_refuses_existing_planes_and_resumes(tmp_path, volume, glymur):
    source, voxels = volume
    pattern = str(tmp_path / "p_%02d.jp2")
    run_program("blockfs2jp2k", source, pattern, "--silent", n=2)
    for z in (3, 40):
        os.unlink(pattern % z)
    before = stamps(tmp_path)
    refused = run_program("blockfs2jp2k", "--input", source, "--output-pattern", pattern,
                          expect_failure=True)
    assert f"{PLANES - 2} of the {PLANES} output planes exist already" in refused.stderr
    assert stamps(tmp_path) == before
    result = run_program("blockfs2jp2k", source, pattern, "--resume", n=2)
    assert "writing 2" in result.stderr, result.stderr
    after = stamps(tmp_path)
    assert {name: after[name] for name in before} == before and len(after) == PLANES
    planes = finals(tmp_path, "jp2")
    check_planes(planes, voxels, lambda p: glymur.Jp2k(str(p))[:])
    with open(pattern % 3, "rb") as f:  # a JP2 container: the temporary name kept .jp2
        assert f.read(12) == b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def test_temporary_names_and_atomic_writes(tmp_path):
    final = str(tmp_path / "img_0007.tif")
    temporary = export.partial_path(final)
    folder, name = os.path.split(temporary)
    assert folder == str(tmp_path) and name.startswith(".") and name.endswith(".tif")
    assert export.partial_of(name) == "img_0007.tif"
    assert export.partial_of(".img_0007.tif") is None and export.partial_of("x.tif") is None

    def fail(path):
        with open(path, "wb") as f:
            f.write(b"half a plane")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        export.write_atomically(final, fail)
    assert not list(tmp_path.iterdir())
    export.write_atomically(final, lambda path: open(path, "wb").close())
    assert [p.name for p in tmp_path.iterdir()] == ["img_0007.tif"]
    with pytest.raises(BlockfsError, match="exclude each other"):
        export.check_outputs(str(tmp_path / "img_%04d.tif"), 10, overwrite=True, resume=True)
