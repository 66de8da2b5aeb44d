"""blockfs-cp and blockfs-mv as real programs on 1-3 ranks: every voxel, every refusal, kill -9, full disks."""
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from blockfs_mpi import format as fmt
from blockfs_mpi import relocate as relocate_module
from blockfs_mpi.errors import CorruptBlockError
from blockfs_mpi.reader import BlockReader, read_header
from blockfs_mpi.relocate import (
    MAX_COPY_THREADS,
    PIECE,
    RelocateError,
    across_files,
    copy_threads,
    make_folder,
    make_plan,
    piece_count,
    relocate,
    share,
    share_owners,
    verify_frames,
)
from conftest import FORMAT1_FIXTURE, kill_group, mpiexec
from volumes import (
    big_volume,
    digest,
    format1_volume,
    format2_volume,
    program,
    volume_files,
    voxels,
)

pytestmark = pytest.mark.mpi
RANKS = [0, 1, 2, 3]  # 0: plain python, no launcher


@pytest.fixture
def mount(tmp_path):
    """mount(size) -> a fresh tmpfs folder: another filesystem, and a small one fills up."""
    mounted = []

    def make(size):
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                 str(folder)], capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)])


def assert_no_volume(folder, name="v.blockfs"):
    """The destination is clearly incomplete: no directory file (the data may be partial)."""
    assert not (Path(folder) / name).exists()


# ------------------------------------------------------------ copies --

@pytest.mark.parametrize("n", RANKS)
def test_cp_format2_every_voxel(tmp_path, n):
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    data = format2_volume(source)
    files = volume_files(source)
    before = digest(files)
    program(n, "cp", source, tmp_path / "b")
    copy = tmp_path / "b" / "v.blockfs"
    np.testing.assert_array_equal(voxels(copy), data)
    assert digest(files) == before
    assert read_header(copy).data_files == read_header(source).data_files  # relative: unchanged
    assert copy.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("n", [0, 2])
def test_cp_no_fsync_copies_every_voxel(tmp_path, n):
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    data = format2_volume(source)
    program(n, "cp", "--no-fsync", source, tmp_path / "b")
    np.testing.assert_array_equal(voxels(tmp_path / "b" / "v.blockfs"), data)


def test_no_fsync_syncs_nothing(tmp_path, monkeypatch):
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    format2_volume(source)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    relocate(source, tmp_path / "synced", move=False)
    with_fsync, synced[:] = list(synced), []
    relocate(source, tmp_path / "unsynced", move=False, fsync=False)

    def data_files(paths):
        return sorted(p for p in paths if re.fullmatch(r"v\.blockfs\.\d+", Path(p).name))
    assert data_files(with_fsync) == sorted(str(tmp_path / "synced" / Path(name).name)
                                            for name in read_header(source).data_files)
    assert any(p.endswith(".commit") for p in with_fsync)  # the directory file, then its folder
    assert str(tmp_path / "synced") in with_fsync
    # Not even the directory file: on ext4 its fsync would wait for the journal to write out
    # the data the copy left dirty. Still renamed into place whole.
    assert synced == []
    assert (tmp_path / "unsynced" / "v.blockfs").read_bytes() == source.read_bytes()


def test_mv_has_no_no_fsync(tmp_path):
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    format2_volume(source)
    result = program(0, "mv", "--no-fsync", source, tmp_path / "b", expect_failure=True)
    assert "blockfs-mv: unknown option --no-fsync" in result.stderr and result.returncode == 2
    assert source.exists()


def test_copy_threads_share_the_pieces(tmp_path, monkeypatch):
    """4 KiB pieces on 3 copy threads: every byte lands where it belongs, and the threads
    really share the work."""
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    data = format2_volume(source)
    files = volume_files(source)
    assert all(os.path.getsize(f) > 3 * 4096 for f in files[1:])
    monkeypatch.setattr(relocate_module, "PIECE", 4096)
    copiers = set()
    real_copy_range = relocate_module.copy_range

    def copy_range(*args):
        copiers.add(threading.current_thread().name)
        time.sleep(0.005)
        real_copy_range(*args)
    monkeypatch.setattr(relocate_module, "copy_range", copy_range)
    relocate(source, tmp_path / "b", move=False, threads=3)
    assert len(copiers) >= 2
    for original in files:
        assert (tmp_path / "b" / Path(original).name).read_bytes() == Path(original).read_bytes()
    np.testing.assert_array_equal(voxels(tmp_path / "b" / "v.blockfs"), data)


def test_threads_take_pieces_of_different_files_in_turn():
    """Two threads in one file serialise on its inode lock: alternate the files instead."""
    mine = share([3 * PIECE, 2 * PIECE], 1, 0)
    order = across_files(mine)
    assert [number for number, _, _ in order] == [0, 1, 0, 1, 0]
    assert sorted(order) == sorted(mine)


def test_copy_threads_default_to_the_cores(tmp_path):
    assert copy_threads(None) == min(MAX_COPY_THREADS, len(os.sched_getaffinity(0)))
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    data = format2_volume(source)
    program(2, "cp", "--threads", "3", source, tmp_path / "b")
    np.testing.assert_array_equal(voxels(tmp_path / "b" / "v.blockfs"), data)


@pytest.mark.parametrize("value", ["0", "many"])
def test_bad_threads_refused(tmp_path, value):
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    format2_volume(source)
    result = program(2, "cp", "--threads", value, source, tmp_path / "b", expect_failure=True)
    assert result.stderr.count(f"--threads must be a number from 1 to 64, not '{value}'") == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("n", [0, 2])
def test_cp_real_format1_fixture(format1_copy, tmp_path, n):
    source = format1_copy / "fixture.blockfs"
    expected = np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"]
    program(n, "cp", source, tmp_path / "moved")
    copy = tmp_path / "moved" / "fixture.blockfs"
    header = read_header(copy)
    assert copy.read_bytes()[:8] == fmt.FORMAT1_MAGIC and header.version == 1
    assert header.data_files == [str(tmp_path / "moved" / f"fixture.blockfs.{i}") for i in range(3)]
    assert header.metadata == read_header(source).metadata  # VoxelSize, Source kept
    old = read_header(source)
    assert (copy.read_bytes()[header.index_offset:]
            == source.read_bytes()[old.index_offset:])  # same (short) index, byte for byte
    np.testing.assert_array_equal(voxels(copy), expected)


@pytest.mark.parametrize("n", [1, 3])
def test_cp_format1_built_with_foreign_names(tmp_path, n):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    foreign = [f"/scratch/lab/expt7/v.blockfs.{i}" for i in range(3)]
    data = format1_volume(source, data_files=foreign)
    program(n, "cp", source, tmp_path / "out")
    copy = tmp_path / "out" / "v.blockfs"
    assert read_header(copy).data_files == [str(tmp_path / "out" / f"v.blockfs.{i}")
                                            for i in range(3)]
    assert read_header(source).data_files == foreign
    np.testing.assert_array_equal(voxels(copy), data)


def test_cp_format2_data_files_elsewhere_are_gathered(tmp_path):
    """Format 2 names like ../data/v.0: the copy holds every file and names them beside it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "dir").mkdir()
    source = tmp_path / "dir" / "v.blockfs"
    data = format2_volume(source)
    header = read_header(source)
    for name in header.data_files:
        os.rename(tmp_path / "dir" / name, tmp_path / "data" / name)
    from blockfs_mpi.data_files import write_directory
    write_directory(str(source), str(source), header,
                    [f"../data/{name}" for name in header.data_files])
    np.testing.assert_array_equal(voxels(source), data)
    program(2, "cp", source, tmp_path / "out")
    copy = tmp_path / "out" / "v.blockfs"
    assert read_header(copy).data_files == header.data_files
    np.testing.assert_array_equal(voxels(copy), data)


def test_large_files_are_split_in_byte_ranges():
    pieces = [share([300 << 20, 10], 2, rank) for rank in range(2)]
    assert {number for number, _, _ in pieces[0]} == {0}
    assert pieces[1][-1] == (1, 0, 10) and any(n == 0 for n, _, _ in pieces[1])
    covered = sorted((n, offset, length) for share in pieces for n, offset, length in share)
    assert sum(length for n, _, length in covered if n == 0) == 300 << 20


# ------------------------------------------------------------- moves --

@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_mv_same_filesystem_links_the_data(tmp_path, kind):
    source = tmp_path / "a" / "v.blockfs"
    source.parent.mkdir()
    data = format1_volume(source) if kind == "format1" else format2_volume(source)
    inodes = [os.stat(path).st_ino for path in volume_files(source)[1:]]
    program(0, "mv", source, tmp_path / "b")
    moved = tmp_path / "b" / "v.blockfs"
    assert [os.stat(path).st_ino for path in volume_files(moved)[1:]] == inodes
    assert os.listdir(tmp_path / "a") == []
    assert read_header(moved).version == (1 if kind == "format1" else 2)
    np.testing.assert_array_equal(voxels(moved), data)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_mv_across_filesystems_copies_then_removes(tmp_path, mount, n, kind):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    data = format1_volume(source) if kind == "format1" else format2_volume(source)
    other = mount("64m")
    program(n, "mv", source, other / "v")
    moved = other / "v" / "v.blockfs"
    np.testing.assert_array_equal(voxels(moved), data)
    assert os.listdir(source.parent) == []
    if kind == "format1":
        assert read_header(moved).data_files[0] == str(other / "v" / "v.blockfs.0")


def test_mv_verification_finds_a_damaged_copy(tmp_path):
    """Before a move removes its source, every format 2 frame of the copy is checked."""
    source = tmp_path / "v.blockfs"
    format2_volume(source)
    plan = make_plan(source, tmp_path.parent / (tmp_path.name + "-dest"), force=False)
    make_folder(plan)
    for a, b in zip(plan.sources, plan.targets):
        Path(b).write_bytes(Path(a).read_bytes())
    verify_frames(plan, None)
    damaged = bytearray(Path(plan.targets[1]).read_bytes())
    damaged[fmt.FRAME_SIZE + 100] ^= 0xFF
    Path(plan.targets[1]).write_bytes(bytes(damaged))
    with pytest.raises(CorruptBlockError, match="checksum mismatch"):
        verify_frames(plan, None)


# ----------------------------------------------------- refused input --

@pytest.fixture
def volume(tmp_path):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    format2_volume(source)
    files = volume_files(source)
    before = digest(files)
    yield source
    assert digest(files) == before, "the source volume was changed"


@pytest.mark.parametrize("name", ["mv", "cp"])
def test_destination_is_the_source_folder(volume, name):
    """The volume would land on its own directory file: refused, naming it."""
    result = program(0, name, volume, volume.parent, expect_failure=True)
    assert (f"{volume} is a file of the source volume {volume}: the destination would "
            f"overwrite it" in result.stderr)


def test_destination_is_the_source_through_a_link(volume, tmp_path):
    (tmp_path / "alias").symlink_to(volume.parent)
    result = program(2, "cp", volume, tmp_path / "alias", expect_failure=True)
    assert (f"{tmp_path / 'alias' / 'v.blockfs'} (the same file as {volume}) is a file of the "
            f"source volume" in result.stderr)
    assert result.stderr.count("is a file of the source volume") == 1


def test_destination_is_the_source_directory_file(volume):
    with pytest.raises(RelocateError, match="is a file of the source volume .* would overwrite"):
        make_plan(volume, volume, force=True)


def test_new_data_files_would_overwrite_the_source_ones(tmp_path):
    """v.blockfs whose data files are named w.blockfs.N: a copy named w.blockfs would write
    its data files over them, even with --force."""
    source = tmp_path / "v.blockfs"
    format2_volume(source)
    header = read_header(source)
    names = [f"w.blockfs.{i}" for i in range(len(header.data_files))]
    for old, new in zip(header.data_files, names):
        os.rename(tmp_path / old, tmp_path / new)
    from blockfs_mpi.data_files import write_directory
    write_directory(str(source), str(source), header, names)
    with pytest.raises(RelocateError, match=re.escape(
            f"{tmp_path / 'w.blockfs.0'} is a file of the source volume {source}")):
        make_plan(source, tmp_path / "w.blockfs", force=True)
    assert not (tmp_path / "w.blockfs").exists()


@pytest.mark.parametrize("inside", ["v.blockfs.0/sub", "v.blockfs.1/x.blockfs", "v.blockfs/sub"])
def test_destination_inside_a_file_of_the_source(volume, inside):
    """A folder inside a data file (or the directory file) cannot exist: say so, not just that
    its parent is missing."""
    dest = volume.parent / inside
    with pytest.raises(RelocateError, match=re.escape(
            f"is inside {volume.parent / inside.split('/')[0]}, a file of the source volume "
            f"{volume}")):
        make_plan(volume, dest, force=False)


def test_destination_inside_a_data_file_from_the_command_line(volume):
    result = program(0, "mv", volume, volume.parent / "v.blockfs.0" / "pyr", expect_failure=True)
    assert (f"{volume.parent / 'v.blockfs.0' / 'pyr'} is inside {volume.parent / 'v.blockfs.0'}"
            f", a file of the source volume {volume}: choose a folder" in result.stderr)


@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_mv_beside_and_inside_the_source_folder(tmp_path, kind):
    """A volume is its files, not its folder: /data/l1.blockfs moves into /data/pyr/1_1_1 (a
    folder beside it, inside the source's folder), then to a new name in that same folder."""
    source = tmp_path / "l1.blockfs"
    data = format1_volume(source) if kind == "format1" else format2_volume(source)
    (tmp_path / "pyr").mkdir()
    program(0, "mv", source, tmp_path / "pyr" / "1_1_1")
    moved = tmp_path / "pyr" / "1_1_1" / "l1.blockfs"
    np.testing.assert_array_equal(voxels(moved), data)
    assert not source.exists()
    renamed = relocate(moved, moved.parent / "precomputed.blockfs", move=True)
    assert renamed == str(moved.parent / "precomputed.blockfs")
    assert sorted(os.listdir(moved.parent)) == ["precomputed.blockfs"] + [
        f"precomputed.blockfs.{i}" for i in range(len(read_header(renamed).data_files))]
    np.testing.assert_array_equal(voxels(renamed), data)


@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_cp_to_a_new_name_names_the_data_files_after_it(tmp_path, kind):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    data = format1_volume(source) if kind == "format1" else format2_volume(source)
    target = relocate(source, tmp_path / "pyr" / "copy.blockfs", move=False)
    header = read_header(target)
    n = len(read_header(source).data_files)
    names = [f"copy.blockfs.{i}" for i in range(n)]
    assert header.data_files == (names if kind == "format2"
                                 else [str(tmp_path / "pyr" / name) for name in names])
    np.testing.assert_array_equal(voxels(target), data)
    np.testing.assert_array_equal(voxels(source), data)


@pytest.mark.parametrize("n", [0, 2])
def test_destination_holds_a_volume_of_that_name(volume, tmp_path, n):
    other = tmp_path / "dest" / "v.blockfs"
    other.parent.mkdir()
    old = format1_volume(other)
    result = program(n, "cp", volume, other.parent, expect_failure=True)
    assert "already exists: use --overwrite" in result.stderr
    np.testing.assert_array_equal(voxels(other), old)  # refused: the old volume untouched
    program(n, "cp", "--force", volume, other.parent)
    np.testing.assert_array_equal(voxels(other), voxels(volume))


def test_destination_parent_missing(volume, tmp_path):
    result = program(0, "cp", volume, tmp_path / "no" / "such" / "place", expect_failure=True)
    assert "parent folder" in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("name", ["mv", "cp"])
def test_destination_is_a_file(volume, tmp_path, name):
    (tmp_path / "out").write_text("keep me")
    result = program(0, name, volume, tmp_path / "out", expect_failure=True)
    assert "exists and is not a folder" in result.stderr
    assert (tmp_path / "out").read_text() == "keep me" and volume.exists()


def test_source_is_not_a_volume(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = program(0, "mv", tmp_path / "notes.txt", tmp_path / "out", expect_failure=True)
    assert "not a blockfs directory file" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "hello"


@pytest.mark.parametrize("name", ["mv", "cp"])
def test_missing_data_file(tmp_path, name):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    format2_volume(source)
    os.unlink(f"{source}.1")
    result = program(2, name, source, tmp_path / "out", expect_failure=True)
    assert "v.blockfs.1: data file of" in result.stderr and "is missing" in result.stderr
    assert result.stderr.count("is missing") == 1  # every rank failed alike: reported once
    assert source.exists() and Path(f"{source}.0").exists()
    assert_no_volume(tmp_path / "out")


@pytest.mark.parametrize("name", ["mv", "cp"])
@pytest.mark.parametrize("kind", ["format1", "format2"])
def test_data_file_of_the_wrong_size(tmp_path, name, kind):
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    format1_volume(source) if kind == "format1" else format2_volume(source)
    os.truncate(f"{source}.0", os.path.getsize(f"{source}.0") - 10)
    files = volume_files(source)
    before = digest(files)
    result = program(0, name, source, tmp_path / "out", expect_failure=True)
    assert "truncated or wrong file" in result.stderr
    assert digest(files) == before
    assert_no_volume(tmp_path / "out")


# -------------------------------------------------- failures midway --

@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("name", ["mv", "cp"])
def test_no_space_left(tmp_path, mount, n, name):
    """A tmpfs too small for the volume: the job fails on every rank, the source stays whole."""
    source = tmp_path / "src" / "v.blockfs"
    source.parent.mkdir()
    data = format2_volume(source, shape=(128, 128, 160))
    files = volume_files(source)
    before = digest(files)
    small = mount(f"{sum(map(os.path.getsize, files)) // 2}")
    result = program(n, name, source, small / "v", expect_failure=True)
    assert "No space left on device" in result.stderr
    assert_no_volume(small / "v")
    assert digest(files) == before
    np.testing.assert_array_equal(voxels(source), data)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 1.3 GB volume: long enough to copy that a kill lands in the middle."""
    path = tmp_path_factory.mktemp("big") / "v.blockfs"
    big_volume(str(path), n_blocks=40)
    return path


def kill_midway(command, targets, timeout=60):
    """Start command, SIGKILL its whole process group once the copy has begun; bytes copied."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    copied = 0
    try:
        while copied == 0:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.005)
            copied = sum(os.path.getsize(t) for t in targets if os.path.exists(t))
    finally:
        kill_group(process.pid)
        process.communicate()
    return copied


def assert_source_reads(path):
    """Every block of the volume reads back and passes its checksum."""
    reader = BlockReader(path)
    for block in range(reader.header.n_entries):
        assert reader.payload(block) is not None
    reader.close()


@pytest.mark.parametrize("n", [1, 2])
def test_kill_9_during_cp(big, tmp_path, n):
    dest = tmp_path / "copy"
    command = [mpiexec(), "-n", str(n), sys.executable, "-m", "blockfs_mpi.cp", str(big),
               str(dest)]
    copied = kill_midway(command, [dest / "v.blockfs.0", dest / "v.blockfs.1"])
    total = os.path.getsize(f"{big}.0") + os.path.getsize(f"{big}.1")
    assert 0 < copied < total, "the kill did not land during the copy"
    assert_no_volume(dest)
    assert_source_reads(big)
    program(n, "cp", big, dest)  # a rerun completes over the remains
    assert_source_reads(dest / "v.blockfs")


def test_kill_9_during_mv_across_filesystems(big, tmp_path, mount):
    """The move copies first: killed midway, the source is whole and the copy has no directory."""
    dest = mount("2g") / "moved"
    command = [mpiexec(), "-n", "2", sys.executable, "-m", "blockfs_mpi.mv", str(big), str(dest)]
    kill_midway(command, [dest / "v.blockfs.0", dest / "v.blockfs.1"])
    assert_no_volume(dest)
    assert big.exists()
    assert_source_reads(big)


def dealt_whole(sizes, n_ranks):
    """Every rank's pieces as the whole job's list dealt them before share: each piece to the
    rank whose run of about equal bytes its first byte is in."""
    total = max(1, sum(sizes))
    pieces = [[] for _ in range(n_ranks)]
    done = 0
    for number, size in enumerate(sizes):
        for offset in range(0, size, PIECE):
            pieces[min(n_ranks - 1, done * n_ranks // total)].append(
                (number, offset, min(PIECE, size - offset)))
            done += min(PIECE, size - offset)
    return pieces


@pytest.mark.parametrize("seed", range(20))
def test_a_ranks_share_is_computed_without_the_whole_list(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(size) for size in rng.integers(0, 5 * PIECE, rng.integers(1, 12))]
    sizes[rng.integers(len(sizes))] = 0  # empty data files too
    for n_ranks in (1, 2, 3, 7, 64):
        whole = dealt_whole(sizes, n_ranks)
        assert [share(sizes, n_ranks, rank) for rank in range(n_ranks)] == whole
        assert piece_count(sizes) == sum(map(len, whole))
        owners = share_owners(sizes, n_ranks, np.array([n for s in whole for n, _, _ in s]),
                              np.array([o for s in whole for _, o, _ in s]))
        assert list(owners) == [r for r, s in enumerate(whole) for _ in s]


def test_a_100_tb_copy_on_4096_ranks_lists_a_ranks_pieces_only():
    sizes = [25 << 30] * 4096  # 100 TB in 4096 data files: 1.6 * 10^6 pieces of 64 MiB
    mine = share(sizes, 4096, 4095)
    assert piece_count(sizes) == 4096 * 400 and len(mine) == 400
    assert mine[0] == (4095, 0, PIECE) and mine[-1] == (4095, 399 * PIECE, PIECE)
