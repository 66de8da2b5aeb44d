"""The registry of running local writer processes, shared by every process of a job.

Spawn and forkserver children re-run the main module, so a Directory made at
module level is made again in each worker; there it must write through the
writers its parent started (write_backends.StandIn), and create() anywhere
must not truncate a volume whose writers run. Each process that starts writers
records them here, one file per volume (addresses, authkey, owner), in a folder
readable by this user only.
"""
import hashlib
import json
import multiprocessing
import os
import tempfile
from typing import Any, TypedDict

# The folder, set on import unless inherited: the whole process tree of a job shares it, and a
# child reads it when it needs writers -- even writers started after the child (or the
# forkserver) was.
REGISTRY = os.environ.setdefault(
    "BLOCKFS_MPI_WRITERS",
    os.path.join(tempfile.gettempdir(), f"blockfs-writers-{os.getpid()}-{os.urandom(4).hex()}"))


class Entry(TypedDict):
    """The running writers of one volume, as their owner (local_writers.WriterProcesses)
    records them."""

    volume: str
    pid: int  # the owner's
    folder: str  # of their sockets
    addresses: list[str]
    authkey: str  # hex
    description: dict[str, Any]  # what a process writing through them must agree on


def rerunning_main() -> bool:
    """True while multiprocessing re-runs the main module in a new spawn or forkserver child.

    multiprocessing marks that phase with this flag (its own refusal to start processes from
    a child's module level reads it too).
    """
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _entry_path(volume: str) -> str:
    return os.path.join(REGISTRY, hashlib.sha256(volume.encode()).hexdigest()[:32] + ".json")


def publish(volume: str, entry: Entry) -> None:
    """Record the running writers of `volume` (readable by this user only)."""
    for attempt in range(2):  # another process may remove the emptied folder meanwhile
        os.makedirs(REGISTRY, 0o700, exist_ok=True)
        try:
            with tempfile.NamedTemporaryFile("w", dir=REGISTRY, delete=False) as f:
                json.dump(entry, f)
            os.replace(f.name, _entry_path(volume))
            return
        except FileNotFoundError:
            if attempt:
                raise


def withdraw(volume: str) -> None:
    """Forget the writers of `volume`; the folder goes with its last entry."""
    try:
        os.unlink(_entry_path(volume))
        os.rmdir(REGISTRY)
    except OSError:  # the folder still lists other volumes, or is gone
        pass


def _live_entry(path: str) -> Entry | None:
    """The registry entry in file `path` if its owner is alive and its writers' folder is
    there (an owner killed without closing its volume leaves its entry behind), else None."""
    try:
        with open(path) as f:
            entry: Entry = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        os.kill(entry["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return entry if os.path.isdir(entry["folder"]) else None


def published(volume: str) -> Entry | None:
    """The registry entry of the running writers of `volume`, or None."""
    return _live_entry(_entry_path(volume))


def published_volumes() -> list[str]:
    """The volumes whose writers are running (for error messages)."""
    try:
        names = sorted(os.listdir(REGISTRY))
    except OSError:
        return []
    entries = (_live_entry(os.path.join(REGISTRY, name)) for name in names)
    return [entry["volume"] for entry in entries if entry is not None]
