"""One writer per volume: the lock file `<directory file>.lock` every changing program holds.

It works where flock/fcntl do not (Lustre without the flock mount option): the
lock is a file created with O_CREAT | O_EXCL beside the directory file,
holding who took it (host, pid, SLURM job, program, time); where the
filesystem supports it, an fcntl lock on that file also says whether its
holder lives. A lock whose holder is gone is stale and is taken over with a
warning; one held from another host is refused (its holder cannot be asked)
unless broken on purpose, except by a later run of the same SLURM job (a
requeue). Readers take no lock. See docs/FORMAT.md.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from . import parallel
from .errors import BlockfsError

if TYPE_CHECKING:
    from mpi4py import MPI

log = logging.getLogger("blockfs_mpi")

SUFFIX = ".lock"
GRACE = 5.0  # seconds a new lock file may go without its fcntl lock (it is being taken)
REQUEUE_WAIT = 60.0  # seconds to wait for the dying earlier run of the same SLURM job
POLL = 0.2  # seconds between looks at a lock that is being taken or released
# fcntl errors that mean "this filesystem has no locks" (Lustre without -o flock: ENOSYS)
NO_FCNTL = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}

_held: dict[str, VolumeLock] = {}  # lock file path -> VolumeLock held by this process
_held_guard = threading.Lock()

Holder = dict[str, Any]  # a lock file's JSON: what _me records, as read back (unchecked)
FcntlState = Literal["held", "free"] | None  # None: the filesystem has no fcntl locks
Verdict = Literal["stale", "live", "dying"]


class LockedError(BlockfsError):
    """Another job (or this process) is changing the volume: refused, nothing touched."""


def program_name() -> str:
    """The name of the running program or script (`blockfs-write`, `lab.py`)."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"


def lock_path(directory_file: str) -> str:
    """The lock file of the volume whose directory file is directory_file."""
    return os.path.abspath(directory_file) + SUFFIX


def _process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> int | None:
    """When process pid started (clock ticks since boot, from /proc), or None where unknown:
    a pid that the system gave to a new process after its holder died is not the holder."""
    fields = _process_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _me(program: str | None) -> Holder:
    """What a lock file records of its holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": _boot_id(),
            "pid_start": _process_start(os.getpid()),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
            "program": program or program_name(), "started": time.time()}


def describe_holder(holder: Holder | None) -> str:
    """'blockfs-write (pid 42 on host n01, SLURM job 7, since 2024-05-01 10:00:00)'."""
    if not holder:
        return "an unknown writer (the lock file is empty or unreadable)"
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (f"{holder.get('program', '?')} (pid {holder.get('pid', '?')} on host "
            f"{holder.get('host', '?')}{job}, since {since})")


def _pid_alive(holder: Holder) -> bool:
    """False if the holder's process is gone from this host (or its pid now names a younger
    process); True if it may be alive."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return True
    if holder.get("boot_id") and _boot_id() and holder["boot_id"] != _boot_id():
        return False  # the machine rebooted since
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    fields = _process_stat(pid)
    if fields and fields[0] == "Z":
        return False  # killed, not yet reaped by its parent: it holds nothing any more
    start = _process_start(pid)
    return holder.get("pid_start") is None or start is None or start == holder["pid_start"]


def _fcntl_state(fd: int, shared: bool = False) -> FcntlState:
    """'held' if another process holds the fcntl lock on fd's file, 'free' if this process
    could take it (it then holds it, shared or exclusive), None where the filesystem has no
    fcntl locks. A shared probe needs only a descriptor open for reading."""
    try:
        fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return "free"
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            return "held"
        if e.errno in NO_FCNTL:
            return None
        raise


def _read_holder(fd: int) -> Holder | None:
    """The JSON a lock file holds, or None while it is empty or unreadable."""
    try:
        raw = os.pread(fd, 1 << 16, 0)
        holder = json.loads(raw.decode())
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None


def _judge(holder: Holder | None, state: FcntlState, age: float) -> tuple[Verdict, str | None]:
    """('stale', why), ('live', None) or ('dying', why) for a lock file's holder, given its
    fcntl state ('held', 'free' or None) and the lock file's age in seconds.

    A holder on this host is stale when its process is gone or its fcntl lock is free; one
    on another host cannot be asked and counts as live, unless it is an earlier run of this
    SLURM job (a requeue): then it is stale, or dying while it visibly still runs.
    """
    here = holder is not None and holder.get("host") == socket.gethostname()
    if state != "held" and (here or holder is None):
        if holder is not None and here and not _pid_alive(holder):
            return "stale", "its process is gone"
        if state == "free" and age > GRACE:
            return "stale", "its fcntl lock is free"
    job = os.environ.get("SLURM_JOB_ID")
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if holder and job and holder.get("slurm_job_id") == job and \
            holder.get("slurm_restart_count", 0) < restart:
        why = f"it is left by an earlier run of SLURM job {job}, which was requeued"
        return ("dying", why) if state == "held" or here else ("stale", why)
    return "live", None


class VolumeLock:
    """The exclusive lock of one volume: `with VolumeLock(path):` or acquire()/release().

    break_lock takes over any lock but one held by this process, with a warning.
    Held by the process that took it: a forked child never releases it. The holder never
    opens its lock file a second time (see _held): closing any descriptor of a file drops
    the process's fcntl locks on it.
    """

    def __init__(self, directory_file: str, program: str | None = None,
                 break_lock: bool = False) -> None:
        self.directory_file = os.path.abspath(directory_file)
        self.path = lock_path(directory_file)
        self.program = program
        self.break_lock = break_lock
        self._fd: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> VolumeLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __getstate__(self) -> dict[str, Any]:  # a copy in another process holds nothing
        return dict(self.__dict__, _fd=None, _pid=None)

    @property
    def held(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    def acquire(self) -> VolumeLock:
        """Take the lock, taking over a stale one; LockedError if a live writer holds it."""
        with _held_guard:
            mine = _held.get(self.path)
            if mine is not None and mine.held:
                raise LockedError(f"{self.directory_file} is being changed by this process "
                                  f"already (close() that Directory first)")
        deadline = time.monotonic() + REQUEUE_WAIT
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_or_wait(deadline)
                continue
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.directory_file}: folder "
                                        f"{os.path.dirname(self.path)} does not exist") from None
            except OSError as e:
                raise LockedError(f"{self.directory_file}: cannot create its lock file "
                                  f"{self.path}: {e.strerror or e}") from None
            break
        try:
            os.write(fd, json.dumps(_me(self.program)).encode())
            _fcntl_state(fd)  # where fcntl works, the lock now also says that we live
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        self._fd, self._pid = fd, os.getpid()
        with _held_guard:
            _held[self.path] = self
        return self

    def _take_over_or_wait(self, deadline: float) -> None:
        """The lock file exists: remove it if stale (or broken), pause if it is being taken or
        its holder is dying, then return to try again; else raise LockedError."""
        shared = False
        try:
            fd = os.open(self.path, os.O_RDWR)
        except PermissionError:  # another user's lock file: judged through a read descriptor
            fd, shared = os.open(self.path, os.O_RDONLY), True
        except FileNotFoundError:
            return  # released meanwhile
        try:
            holder = _read_holder(fd)
            age = time.time() - os.fstat(fd).st_mtime
            if holder is None and age < GRACE:  # being written by its taker
                time.sleep(POLL)
                return
            state = _fcntl_state(fd, shared)
            verdict, why = _judge(holder, state, age)
            if self.break_lock and verdict != "stale":
                verdict, why = "stale", "--break-lock"
            if verdict == "dying" and time.monotonic() < deadline:
                time.sleep(POLL)
                return
            if verdict != "stale":
                raise LockedError(self._refusal(holder, verdict))
            try:  # still the file judged (a contender may have replaced it), then gone
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    return
                os.unlink(self.path)
            except FileNotFoundError:
                return
            log.warning("%s: taking over the lock of %s: %s", self.directory_file,
                        describe_holder(holder), why)
        finally:
            os.close(fd)  # drops the fcntl lock this probe may hold (the file is gone)

    def _refusal(self, holder: Holder | None, verdict: Verdict) -> str:
        """The message of a refused lock."""
        if verdict == "dying":
            return (f"{self.directory_file} is locked by {describe_holder(holder)}, an earlier "
                    f"run of this SLURM job that did not end in {REQUEUE_WAIT:.0f} s; "
                    f"nothing was changed")
        here = holder and holder.get("host") == socket.gethostname()
        advice = ("wait for it to finish, or stop it" if here else
                  "if that job is no longer running (its host cannot be asked), rerun with "
                  "--break-lock (Directory(..., break_lock=True))")
        return (f"{self.directory_file} is locked by {describe_holder(holder)}: another job "
                f"is changing this volume, so nothing was changed; {advice}. Lock file: "
                f"{self.path}")

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the fcntl lock."""
        if not self.held:
            return
        fd, self._fd = self._fd, None
        assert fd is not None  # held
        with _held_guard:
            if _held.get(self.path) is self:
                del _held[self.path]
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.path)
        finally:
            os.close(fd)


def check_unlocked(directory_file: str, break_lock: bool = False) -> None:
    """Raise LockedError now if a live writer holds the volume's lock (before work whose
    checks would otherwise speak first); the lock itself is taken later."""
    if break_lock:
        return
    with _held_guard:
        mine = _held.get(lock_path(directory_file))
    if mine is not None and mine.held:
        raise LockedError(f"{os.path.abspath(directory_file)} is being changed by this process "
                          f"already")
    try:
        fd = os.open(lock_path(directory_file), os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        holder = _read_holder(fd)
        age = time.time() - os.fstat(fd).st_mtime
        verdict, _ = _judge(holder, _fcntl_state(fd, shared=True), age)
    finally:
        os.close(fd)
    if verdict == "live" and (holder is not None or age >= GRACE):
        raise LockedError(VolumeLock(directory_file)._refusal(holder, verdict))


def acquire_all(directory_files: Iterable[str], program: str | None = None,
                break_lock: bool = False) -> list[VolumeLock]:
    """Take the locks of several volumes (all or none)."""
    locks: list[VolumeLock] = []
    try:
        for path in directory_files:
            locks.append(VolumeLock(path, program, break_lock).acquire())
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


@contextlib.contextmanager
def volume_locks(directory_files: Iterable[str], comm: MPI.Comm | None = None,
                 break_lock: bool = False, program: str | None = None) -> Iterator[None]:
    """Collectively hold the locks of volumes: rank 0 takes them, every rank raises the same
    LockedError if refused; released by rank 0 when the block ends, however it ends."""
    locks = parallel.on_rank0(comm, lambda: acquire_all(directory_files, program, break_lock),
                              LockedError)
    try:
        yield
    finally:
        for lock in locks or []:
            lock.release()


@atexit.register
def _release_at_exit() -> None:
    """A program that ends without close() leaves no lock behind."""
    with _held_guard:
        locks = list(_held.values())
    for lock in locks:
        lock.release()
