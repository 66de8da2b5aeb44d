"""A volume says whether its writer finished (a killed job is loud, a sparse volume is not),
and --resume refuses a source other than the one the volume was started from."""
import functools
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from blockfs_mpi import Directory
from blockfs_mpi.reader import read_header
from conftest import microscopy_volume, run_checked, write_array

SHAPE = (24, 64, 96)  # 1 x 2 x 3 blocks of 32^3: 6 blocks


def program(module, *args, expect_failure=False, cwd=None):
    return run_checked([sys.executable, "-m", f"blockfs_mpi.{module}", *map(str, args)],
                       expect_failure=expect_failure, cwd=cwd)


@pytest.fixture
def killed(tmp_path):
    """A volume whose writer wrote 5 of its 6 blocks and was then SIGKILLed (a real process)."""
    path = tmp_path / "killed.blockfs"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from blockfs_mpi import Directory
        d = Directory(96, 64, 24, np.uint16, {str(path)!r}, n_filenames=2,
                      x_block_size=32, y_block_size=32, z_block_size=32)
        d.create()
        d.start_writer_processes()
        for n, (x, y) in enumerate([(0, 0), (32, 0), (64, 0), (0, 32), (32, 32)]):
            d.write_block(np.full((24, 32, 32), n + 1, np.uint16), x, y, 0)
        d._backend.processes.close()  # every block handed over has reached its data file ...
        os.kill(os.getpid(), signal.SIGKILL)  # ... and the job dies before close() commits
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == -9, result.stderr
    return path


def test_a_finished_volume_is_complete(tmp_path):
    path = write_array(str(tmp_path / "done.blockfs"), microscopy_volume(SHAPE))
    header = read_header(path)
    assert header.writer["complete"] is True and header.writer["program"]
    result = program("info", path)
    assert "incomplete" not in result.stdout


def test_a_sparse_volume_is_complete(tmp_path):
    path = str(tmp_path / "sparse.blockfs")
    with Directory(96, 64, 24, np.uint16, path, n_filenames=1, x_block_size=32,
                   y_block_size=32, z_block_size=32) as directory:
        directory.create()
        directory.write_block(np.ones((24, 32, 32), np.uint16), 32, 32, 0)
    assert program("info", path, "--json").stdout.count('"incomplete": null') == 1
    assert program("fsck", path).returncode == 0


def test_info_says_a_killed_volume_is_incomplete(killed):
    result = program("info", killed, expect_failure=True)
    assert result.returncode == 1
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"{killed}: incomplete: 0 of 6 blocks written by ")
    assert "run" in last and "again" in last  # says how to complete it
    info = json.loads(program("info", killed, "--json", expect_failure=True).stdout)
    assert info["incomplete"] and info["writer"]["complete"] is False


def test_fsck_says_incomplete_also_after_repair(killed):
    result = program("fsck", killed, expect_failure=True)
    assert "uncommitted" in result.stdout  # the 5 frames nobody committed
    repaired = program("fsck", killed, "--repair", expect_failure=True)
    assert repaired.stdout.splitlines()[-1] == (
        f"{killed}: incomplete: 5 of 6 blocks written by {read_header(killed).writer['program']}"
        f"; complete it by running {read_header(killed).writer['program']} again "
        f"(blockfs-fsck --repair commits what it wrote)")
    assert "after repair:" in repaired.stdout and ": 0 problem(s)" in repaired.stdout
    assert program("fsck", killed, expect_failure=True).returncode == 1


def test_open_warns_about_an_incomplete_volume(killed, caplog):
    with caplog.at_level("WARNING", logger="blockfs_mpi"):
        directory = Directory.open(killed)
    assert "incomplete" in caplog.text and "read as zeros" in caplog.text
    assert not directory[:, :, :].any()  # nothing committed: zeros, but said loudly


def test_blockfs_write_records_how_to_complete_it(tmp_path):
    np.save(tmp_path / "v.npy", microscopy_volume(SHAPE))
    output = tmp_path / "out.blockfs"
    program("write", tmp_path / "v.npy", output, "--block-size", 32, "--silent")
    header = read_header(output)
    assert header.writer["program"] == "blockfs-write" and header.writer["complete"] is True
    assert header.writer["source"]["spec"] == str(tmp_path / "v.npy")
    header.writer["complete"] = False  # as a killed job leaves it
    from blockfs_mpi.completion import incomplete_line
    assert incomplete_line(str(output), header, 3).endswith(
        f"3 of 6 blocks written by blockfs-write; complete it with: "
        f"blockfs-write {tmp_path / 'v.npy'} {output} --resume")


# ----------------------------------------------------------- source check --

def planes(folder, volume):
    folder.mkdir()
    for z, plane in enumerate(volume):
        tifffile.imwrite(folder / f"img_{z:03d}.tif", plane)
    return str(folder / "img_*.tif")


@pytest.fixture
def written(tmp_path):
    """(planes glob, volume) of a volume written with blockfs-write from TIFF planes in a/."""
    first = planes(tmp_path / "a", microscopy_volume(SHAPE, seed=1))
    output = tmp_path / "out.blockfs"
    program("write", first, output, "--block-size", 32, "--silent")
    return first, output


def resume(source, output, *options, expect_failure=False):
    return program("write", source, output, "--block-size", 32, "--resume", *options,
                   expect_failure=expect_failure)


def test_resume_from_another_source_is_refused(tmp_path, written):
    first, output = written
    other = planes(tmp_path / "b", microscopy_volume(SHAPE, seed=2))  # same shape and sizes
    before = output.read_bytes()
    result = resume(other, output, expect_failure=True)
    assert f"was started from {first}, and {other} is not the same source: the voxels of " \
           f"the sampled regions differ" in result.stderr
    assert "--force-source" in result.stderr
    assert output.read_bytes() == before  # nothing committed
    forced = resume(other, output, "--force-source")
    assert "0 blocks written, 6 already present" in forced.stderr


def test_resume_from_the_same_planes_moved_is_accepted(tmp_path, written):
    _, output = written
    shutil.copytree(tmp_path / "a", tmp_path / "moved")  # new mtimes, same planes
    result = resume(str(tmp_path / "moved" / "img_*.tif"), output)
    assert "0 blocks written, 6 already present" in result.stderr


def test_resume_with_fewer_planes_says_so(tmp_path, written):
    first, output = written
    (tmp_path / "a" / "img_023.tif").unlink()
    result = resume(first, output, expect_failure=True)
    assert "cannot be resumed" in result.stderr  # 23 planes: not the same volume


def test_ctrl_c_says_how_to_continue(tmp_path):
    """Ctrl-C (SIGINT to the program) ends it with status 130 and a hint to --resume. The
    job starts with SIGINT at its default: a suite run in the background of a shell without
    job control inherits it ignored, and Python then ignores it too. A Ctrl-C while the writer
    processes start ends it, about one run in twenty here, by SIGINT itself after the same
    message (as a shell shows it, status 130 too): both are accepted."""
    output = tmp_path / "out.blockfs"
    job = subprocess.Popen([sys.executable, "-m", "blockfs_mpi.write", "synthetic:128x512x512",
                            str(output), "--silent", "--level", "9"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=functools.partial(signal.signal, signal.SIGINT,
                                                        signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not output.exists():  # the empty volume is committed: the job is under way
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "the job did not start in 60 s"
            time.sleep(0.02)
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode in (130, -signal.SIGINT), err
    assert "interrupted; rerun the same command with --resume to continue where it stopped" \
        in err
    assert "incomplete" in program("info", output, expect_failure=True).stdout
    program("write", "synthetic:128x512x512", output, "--silent", "--resume")
    assert program("info", output).returncode == 0
