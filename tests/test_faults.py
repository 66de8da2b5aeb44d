"""Fault injection with real processes, signals and files: killed writers, damaged bytes,
a full disk, readers during commits. Nothing written is lost, nothing damaged reads silently."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import BlockfsError, Directory
from blockfs_mpi import format as fmt
from blockfs_mpi import index as index_module
from blockfs_mpi.atomic import write_atomically
from blockfs_mpi.check import check, check_share
from blockfs_mpi.fsck import fsck
from blockfs_mpi.index import read_index
from blockfs_mpi.reader import read_header
from blockfs_mpi.report import Report
from blockfs_mpi.scan import scan_data_file
from blockfs_mpi.synthetic import SyntheticVolume
from conftest import HERE, kill_group, microscopy_volume, mpiexec, run_checked, run_mpi

pytestmark = pytest.mark.mpi
SHAPE = (90, 100, 150)  # tests/mpi/common.new_volume's default (z, y, x), 32^3 blocks


def start_mpi(n, script, *args):
    """Start tests/mpi/<script> on n ranks in its own process group, without waiting."""
    command = [mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py",
               str(HERE / "mpi" / script), *map(str, args)]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(process, paths, timeout=60):
    """Wait until every path exists; fail if the job ends or overruns first."""
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            pytest.fail(f"job ended or hung before reaching {paths}\n{out}\n{err}")
        time.sleep(0.05)


def reap(process, timeout=30):
    """Wait for a job whose ranks were killed; kill the launcher's group if it lingers."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("mpiexec did not end after its ranks were killed")


def blocks_on_disk(path):
    """Blocks with an intact frame in any data file of the volume: what must be recovered."""
    folder, name = os.path.split(path)
    n_blocks = read_header(path).geometry.n_blocks
    blocks = set()
    for data in sorted(f for f in os.listdir(folder) if f.startswith(name + ".")):
        scan = scan_data_file(os.path.join(folder, data), 0, n_blocks)
        blocks |= set(scan.rows["block"].tolist())
    return blocks


def committed_blocks(path):
    return set(np.flatnonzero(~fmt.is_missing(read_index(path, read_header(path)))).tolist())


def assert_reads(path, source, blocks):
    """The volume holds exactly `blocks`, each equal to the source; the rest read as zeros."""
    directory = Directory.open(path)
    assert committed_blocks(path) == set(blocks)
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        zs, ys, xs = directory.get_block_size(x, y, z)
        expected = source[z:z + zs, y:y + ys, x:x + xs] if i in blocks else 0
        np.testing.assert_array_equal(directory.read_block(x, y, z), expected)
    directory.close()


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A volume whose even blocks were committed by a 4-rank job."""
    folder = tmp_path_factory.mktemp("committed")
    run_mpi(4, "fault_writer.py", folder, "first", "none", "all")
    return folder


KILLS = [("before-write", "1"), ("before-write", "all"), ("mid-write", "2"),
         ("mid-write", "all"), ("commit", "0"), ("commit", "all")]


@pytest.mark.parametrize("point,victims", KILLS)
def test_sigkill_writer(committed, tmp_path, point, victims):
    for name in os.listdir(committed):
        if name.startswith("volume.blockfs"):
            shutil.copy(committed / name, tmp_path / name)
    path = str(tmp_path / "volume.blockfs")
    source = SyntheticVolume(SHAPE)
    before = committed_blocks(path)
    pausing = "0" if point == "commit" else victims
    job = start_mpi(4, "fault_writer.py", tmp_path, "second", point, pausing)
    ranks = range(4) if pausing == "all" else [int(pausing)]
    wait_for(job, [tmp_path / f"pid.{r}" for r in range(4)]
             + [tmp_path / f"paused.{r}" for r in ranks])
    for r in range(4) if victims == "all" else [int(victims)]:
        os.kill(int((tmp_path / f"pid.{r}").read_text()), signal.SIGKILL)
    reap(job)
    assert job.returncode != 0

    # The previously committed directory still opens and reads correctly.
    assert_reads(path, source, before)
    on_disk = blocks_on_disk(path)
    assert before <= on_disk
    if point == "mid-write":  # each paused rank's frames before its last are surely on disk
        for r in ranks:
            written = int((tmp_path / f"paused.{r}").read_text())
            frames = scan_data_file(f"{path}.{r}", r).rows["block"]
            assert np.count_nonzero(frames % 2 == 1) >= written - 1
    lines = []
    status = fsck(path, fix=True, silent=True, out=lines.append)
    assert status == 0, "\n".join(lines)
    assert_reads(path, source, on_disk)
    print(f"RELIABILITY kill {point} ranks={victims}: committed {len(before)}, "
          f"intact frames of {len(on_disk)} blocks, recovered {len(committed_blocks(path))}")


def test_fsck_repair_under_mpiexec(committed, tmp_path):
    """The program itself: an uncommitted job found, exit 1; --repair on 2 ranks, exit 0."""
    for name in os.listdir(committed):
        if name.startswith("volume.blockfs"):
            shutil.copy(committed / name, tmp_path / name)
    path = str(tmp_path / "volume.blockfs")
    job = start_mpi(4, "fault_writer.py", tmp_path, "second", "mid-write", "all")
    wait_for(job, [tmp_path / f"paused.{r}" for r in range(4)])
    kill_group(job.pid)  # the launcher and every rank at once
    reap(job)
    on_disk = blocks_on_disk(path)
    fsck_command = [mpiexec(), "-n", "2", sys.executable, "-m", "blockfs_mpi.fsck", path,
                    "--silent"]
    found = run_checked(fsck_command, expect_failure=True)
    uncommitted = on_disk - committed_blocks(path)
    assert found.stdout.count("uncommitted: block") == len(uncommitted) > 0, found.stdout
    repaired = run_checked(fsck_command + ["--repair"])
    assert "after repair:" in repaired.stdout
    assert_reads(path, SyntheticVolume(SHAPE), on_disk)


# ------------------------------------------------------------- corruption --

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A format 2 volume of 3 data files, block 5 never written; and its voxels."""
    folder = tmp_path_factory.mktemp("pristine")
    source = microscopy_volume((70, 90, 100))
    directory = Directory(100, 90, 70, np.uint16, str(folder / "v.blockfs"), n_filenames=3,
                          x_block_size=32, y_block_size=32, z_block_size=32)
    directory.create()
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if i != 5:
            zs, ys, xs = directory.get_block_size(x, y, z)
            directory.write_block(source[z:z + zs, y:y + ys, x:x + xs], x, y, z)
    directory.close()
    x, y, z = directory.geometry.block_origin(5)
    source[z:z + 32, y:y + 32, x:x + 32] = 0
    return folder, source


def damaged_copy(pristine, tmp_path):
    folder, source = pristine
    for name in os.listdir(folder):
        shutil.copy(folder / name, tmp_path / name)
    path = str(tmp_path / "v.blockfs")
    return path, read_header(path), read_index(path, read_header(path)), source


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << int(offset % 8))]))


def assert_detected(path, source, damaged):
    """Damaged blocks raise a clear error, the others read right, fsck lists exactly them."""
    directory = Directory.open(path)
    for i, (x, y, z) in enumerate(directory.geometry.block_origins()):
        if i in damaged:
            with pytest.raises(BlockfsError, match=f"block {i}"):
                directory.read_block(x, y, z)
        else:
            zs, ys, xs = directory.get_block_size(x, y, z)
            np.testing.assert_array_equal(directory.read_block(x, y, z),
                                          source[z:z + zs, y:y + ys, x:x + xs])
    report = check(path)
    assert report.damaged_blocks == set(damaged), "\n".join(report.lines())
    quick = check(path, quick=True)  # no decompression: the same blocks found
    assert quick.damaged_blocks == set(damaged), "\n".join(quick.lines())
    return report


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_truncated_data_file(pristine, tmp_path, seed):
    path, header, index, source = damaged_copy(pristine, tmp_path)
    rng = np.random.default_rng(seed)
    number = int(rng.integers(3))
    data = f"{path}.{number}"
    cut = int(rng.integers(1, os.path.getsize(data)))
    os.truncate(data, cut)
    ends = index["offset"].astype(np.int64) + index["size"]
    damaged = set(np.flatnonzero((index["file"] == number) & (ends > cut)).tolist())
    assert_detected(path, source, damaged)
    shared = check(path, n_workers=2)  # two local worker processes find the same
    assert shared.damaged_blocks == set(damaged), "\n".join(shared.lines())
    print(f"RELIABILITY truncate: injected {len(damaged)} damaged blocks, "
          f"detected {len(shared.damaged_blocks)}")


def test_check_reads_the_index_in_runs(pristine, tmp_path, monkeypatch):
    """Each share of a check reads the index a run at a time and keeps only what it needs:
    runs of 3 entries find exactly what one run finds (damaged blocks of a truncated data
    file, a damaged index entry and the index checksum, the frames of every file)."""
    path, header, index, source = damaged_copy(pristine, tmp_path)
    os.truncate(f"{path}.1", os.path.getsize(f"{path}.1") // 2)
    flip(path, header.index_offset + 7 * fmt.ENTRY.itemsize + 9)  # block 7's stored size
    whole = Report.merge([check_share(path, rank, 2) for rank in (0, 1)])
    monkeypatch.setattr(index_module, "RUN", 3)
    runs = Report.merge([check_share(path, rank, 2) for rank in (0, 1)])
    assert runs.lines() == whole.lines()
    assert (runs.rows == whole.rows).all() and runs.frames == whole.frames > 0
    assert any(p.kind == "index" for p in runs.problems) and 7 in runs.damaged_blocks
    assert len(runs.damaged_blocks) > 1, runs.lines()


def test_problems_listed_per_kind(pristine, tmp_path):
    """Every problem is counted, but only the lowest `listed` blocks of each kind are listed,
    however the check is split: 16 blocks dropped from the index, 3 damaged."""
    path, header, index, source = damaged_copy(pristine, tmp_path)
    for block in (3, 30, 33):
        flip(f"{path}.{index[block]['file']}", int(index[block]["offset"]) + 5)
    index[10:26] = fmt.empty_index(16)
    write_atomically(path, *fmt.directory2_parts(header, index))
    every = check(path, listed=None)
    assert every.counts == {"damaged": 3, "uncommitted": 16} and len(every.problems) == 19
    report = check(path, listed=2)
    assert report.counts == every.counts
    assert [(p.kind, p.block) for p in report.problems] == [
        ("damaged", 3), ("uncommitted", 10), ("uncommitted", 11), ("damaged", 30)]
    lines = report.lines()
    assert lines[4:6] == ["damaged: 1 more not listed (--max-listed)",
                          "uncommitted: 14 more not listed (--max-listed)"], lines
    assert lines[-1].startswith(f"{path}: 19 problem(s) (3 damaged, 16 uncommitted)")
    assert check(path, n_workers=2, listed=2).lines() == lines
    program = run_checked([mpiexec(), "-n", "2", sys.executable, "-m", "blockfs_mpi.fsck", path,
                           "--max-listed", "2", "--quick", "--silent"], expect_failure=True)
    quick = check(path, listed=2, quick=True).lines()
    assert quick[:-1] == lines[:-1]  # the same damaged payloads found without decompressing
    assert program.stdout.splitlines() == quick and "(quick: not decompressed)" in quick[-1]


def test_rewritten_blocks_not_committed(pristine, tmp_path):
    """A resumed job rewrote blocks 2, 7 and 20 and its commit was lost: their new frames are
    newer than the committed ones; fsck lists exactly them and --repair commits them."""
    path, header, index, source = damaged_copy(pristine, tmp_path)
    source = source.copy()  # the fixture's voxels are shared with other tests
    committed = Path(path).read_bytes()
    directory = Directory.resume(path)
    origins = list(directory.geometry.block_origins())
    for block in (20, 2, 7):
        x, y, z = origins[block]
        zs, ys, xs = directory.get_block_size(x, y, z)
        source[z:z + zs, y:y + ys, x:x + xs] += 1
        directory.write_block(source[z:z + zs, y:y + ys, x:x + xs], x, y, z)
    directory.close()
    Path(path).write_bytes(committed)  # as if the job had been killed before its commit
    report = check(path)
    assert [(p.kind, p.block) for p in report.problems] == [("uncommitted", b) for b in (2, 7, 20)]
    assert all("is newer than the committed one" in p.message for p in report.problems)
    lines = []
    assert fsck(path, fix=True, out=lines.append) == 0, lines
    assert "repaired, 3 index entries changed" in "\n".join(lines)
    assert lines[-1].startswith(f"{path}: 0 problem(s), 0 warning(s); 35 committed blocks")
    assert_detected(path, source, set())


def test_listed_uncommitted_blocks_are_the_lowest(tmp_path):
    """Frames written in reverse block order, none committed: the listed ones are blocks 0, 1."""
    path = str(tmp_path / "v.blockfs")
    directory = Directory(64, 64, 64, np.uint8, path, x_block_size=16, y_block_size=16,
                          z_block_size=16)
    directory.create()
    for x, y, z in reversed(list(directory.geometry.block_origins())):
        directory.write_block(np.ones((16, 16, 16), np.uint8), x, y, z)
    directory.close()
    header = read_header(path)
    write_atomically(path, *fmt.directory2_parts(header, fmt.empty_index(64)))
    report = check(path, listed=2)
    assert report.counts == {"uncommitted": 64}
    assert [p.block for p in report.problems] == [0, 1]


def test_quick_check_misses_only_a_block_stored_undecodable(pristine, tmp_path):
    """A frame whose intact checksum covers a compressed stream that does not decode (a
    writer's bug, not damage): only the full check, which decompresses, finds it."""
    path, header, index, source = damaged_copy(pristine, tmp_path)
    entry = index[8]
    data = f"{path}.{entry['file']}"
    with open(data, "r+b") as f:
        f.seek(int(entry["offset"]) - fmt.FRAME_SIZE)
        sequence = fmt.decode_frame_header(f.read(fmt.FRAME_SIZE), data)[2]
        payload = bytearray(f.read(int(entry["size"])))
        payload[16:] = bytes(len(payload) - 16)  # Blosc header kept, stream zeroed
        f.seek(int(entry["offset"]) - fmt.FRAME_SIZE)
        f.write(fmt.encode_frame_header(8, bytes(payload), sequence) + payload)
    assert check(path, quick=True).n_problems == 0
    assert check(path).damaged_blocks == {8}


@pytest.mark.parametrize("where", ["payload", "frame header", "index entry"])
@pytest.mark.parametrize("seed", SEEDS)
def test_flipped_byte(pristine, tmp_path, where, seed):
    path, header, index, source = damaged_copy(pristine, tmp_path)
    rng = np.random.default_rng(seed)
    block = int(rng.choice(np.flatnonzero(~fmt.is_missing(index))))
    entry = index[block]
    if where == "payload":
        flip(f"{path}.{entry['file']}", int(entry["offset"] + rng.integers(entry["size"])))
    elif where == "frame header":
        flip(f"{path}.{entry['file']}", int(entry["offset"]) - fmt.FRAME_SIZE
             + int(rng.integers(fmt.FRAME_SIZE)))
    else:
        block = int(rng.integers(len(index)))  # any entry, never-written ones included
        flip(path, header.entry_position(block) + int(rng.integers(fmt.ENTRY.itemsize)))
    report = assert_detected(path, source, {block})
    if where == "index entry":
        assert any(p.kind == "index" for p in report.problems)
        assert fsck(path, fix=True, out=lambda line: None) == 0  # rebuilt from the frames
        assert_detected(path, source, set())
    print(f"RELIABILITY flip {where}: injected 1 damaged block, detected "
          f"{len(report.damaged_blocks)}")


@pytest.mark.parametrize("seed", SEEDS)
def test_zeroed_range_of_directory_file(pristine, tmp_path, seed):
    path, header, index, source = damaged_copy(pristine, tmp_path)
    rng = np.random.default_rng(seed)
    size = os.path.getsize(path)
    start = int(rng.integers(header.index_offset, size))
    length = int(rng.integers(1, 200))
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(min(length, size - start)))
    changed = read_index(path, header) != index
    damaged = set(np.flatnonzero(changed).tolist())
    assert_detected(path, source, damaged)
    assert fsck(path, fix=True, out=lambda line: None) == 0
    assert_detected(path, source, set())
    print(f"RELIABILITY zero index range: injected {len(damaged)} damaged entries, "
          f"detected {len(damaged)}")


def test_zeroed_directory_header(pristine, tmp_path):
    """A damaged header or metadata: the volume cannot open, fsck says so, repair refuses."""
    path, header, index, source = damaged_copy(pristine, tmp_path)
    with open(path, "r+b") as f:
        f.seek(40)
        f.write(bytes(20))
    with pytest.raises(BlockfsError, match="checksum mismatch"):
        Directory.open(path)
    lines = []
    assert fsck(path, fix=True, out=lines.append) == 1
    assert lines[0].startswith("damaged: directory file:") and "cannot repair" in lines[-1]


def test_truncated_format1_data_file(format1_copy):
    """Format 1 has no checksums: fsck checks that entries lie inside their files and decode."""
    path = str(format1_copy / "fixture.blockfs")
    header = read_header(path)
    index = read_index(path, header)
    assert check(path).problems == []
    cut = os.path.getsize(f"{path}.1") // 2
    os.truncate(f"{path}.1", cut)
    ends = index["offset"].astype(np.int64) + index["size"]
    damaged = set(np.flatnonzero((index["file"] == 1) & (ends > cut)).tolist())
    source = np.load(format1_copy / "fixture-voxels.npz")["voxels"]
    assert_detected(path, source, damaged)
    lines = []
    assert fsck(path, fix=True, out=lines.append) == 1 and "format 1" in lines[-1]


# -------------------------------------------------------- disk full, readers --

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test (root only)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_disk_full(small_disk):
    result = run_mpi(4, "disk_full.py", small_disk)
    errors = result.stdout.split("/4: ")[1:]  # one message per rank
    assert len(errors) == 4 and all(e.startswith("error: ") and "not committed" in e
                                    and "No space left on device" in e for e in errors), result.stdout
    assert all("No space left on device" in e.splitlines()[0] for e in errors), result.stdout
    assert "error stack" not in result.stdout, result.stdout  # one line each, not MPICH's stack
    source = SyntheticVolume((64, 64, 128))
    path = str(small_disk / "volume.blockfs")
    assert_reads(path, source, set(range(0, read_header(path).geometry.n_blocks, 2)))


def test_directory_file_does_not_fit_at_commit(small_disk):
    """The distributed commit's own write fails (the frames fit, the new index does not):
    every rank says why, the committed volume stands, no temporary file is left."""
    result = run_mpi(3, "commit_full.py", small_disk)
    errors = result.stdout.split("/3: ")[1:]
    assert len(errors) == 3 and all(e.startswith("error: ") and "not committed" in e
                                    and "No space left on device" in e for e in errors), result.stdout
    assert all("No space left on device" in e.splitlines()[0] for e in errors), result.stdout
    assert "error stack" not in result.stdout, result.stdout  # one line each, not MPICH's stack


def test_readers_during_commits(tmp_path):
    path, stop = tmp_path / "volume.blockfs", tmp_path / "stop"
    writer = start_mpi(2, "commit_loop.py", tmp_path, 20, 2)
    wait_for(writer, [tmp_path / "started"])
    readers = [subprocess.Popen([sys.executable, str(HERE / "mpi" / "read_loop.py"), str(path),
                                 str(stop), str(tmp_path / f"ready.{i}")], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
               for i in range(2)]
    try:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    finally:
        stop.touch()
    for reader in readers:
        out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
        seen = out.split("generations")[1]
        assert seen.count(",") >= 1, f"the reader saw only one generation: {out}"
        print(f"RELIABILITY readers during commits: {out.strip()}")
