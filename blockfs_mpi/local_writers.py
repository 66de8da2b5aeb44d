"""Writer processes for one-rank use (no mpiexec): the original blockfs API's engine.

Each writer process owns one data file and listens on a Unix socket. Any
process holding the Directory -- the parent, or a multiprocessing worker
that got it by fork, spawn or forkserver -- connects lazily and sends
(block number, raw block); the writer acknowledges once the block is in its
bounded queue, compresses it and appends it. Acknowledged blocks are always
written before the writer honours close, so nothing sent is lost.

The writers are fresh interpreters running `python -m blockfs_mpi.writer_process`
(see WriterProcesses), so they never re-run the user's main module. Running
writers are published in a registry that every descendant of the process
shares, which lets a spawn or forkserver child that re-runs a module-level
`Directory(...)` find the writers of its parent (see Directory._attach_to_parent).
"""
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import weakref
from multiprocessing import spawn
from multiprocessing.connection import Client, Connection

import numpy as np

from .errors import WriterError
from .writer import WRITTEN

BLOCK_NUMBER = struct.Struct("<Q")  # a block sent to a writer: its number, then its voxels
START_TIMEOUT = 60

# The folder holding the package, put first on the writers' import path.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The registry of running writer processes: one file per volume in a folder named here. It is
# set on import unless inherited, so the whole process tree of a job shares one folder, and a
# child reads it when it needs writers -- even writers started after the child (or the
# forkserver) was.
REGISTRY = os.environ.setdefault(
    "BLOCKFS_MPI_WRITERS",
    os.path.join(tempfile.gettempdir(), f"blockfs-writers-{os.getpid()}-{os.urandom(4).hex()}"))


def rerunning_main() -> bool:
    """True while multiprocessing re-runs the main module in a new spawn or forkserver child.

    multiprocessing marks that phase with this flag (its own refusal to start processes from
    a child's module level reads it too).
    """
    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


def _entry_path(volume):
    return os.path.join(REGISTRY, hashlib.sha256(volume.encode()).hexdigest()[:32] + ".json")


def _publish(volume, entry):
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


def _withdraw(volume, folder, owner_pid):
    """Forget the writers of `volume` and remove their sockets (in their owner only)."""
    if os.getpid() != owner_pid:
        return
    try:
        os.unlink(_entry_path(volume))
        os.rmdir(REGISTRY)
    except OSError:  # the folder still lists other volumes, or is gone
        pass
    shutil.rmtree(folder, ignore_errors=True)


def _live_entry(path):
    """The registry entry in file `path` if its owner is alive and its writers' folder is
    there (an owner killed without closing its volume leaves its entry behind), else None."""
    try:
        with open(path) as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    try:
        os.kill(entry["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return entry if os.path.isdir(entry["folder"]) else None


def published(volume: str) -> dict | None:
    """The registry entry of the running writers of `volume`, or None."""
    return _live_entry(_entry_path(volume))


def published_volumes() -> list:
    """The volumes whose writers are running (for error messages)."""
    try:
        names = sorted(os.listdir(REGISTRY))
    except OSError:
        return []
    entries = (_live_entry(os.path.join(REGISTRY, name)) for name in names)
    return [entry["volume"] for entry in entries if entry is not None]


def _start_writer(control_fd):
    """`python -m blockfs_mpi.writer_process <fd>`: a fresh interpreter that imports this very
    package and never the user's main module.

    multiprocessing cannot promise that: spawn and forkserver children re-run the main module
    (a lab script whose module level starts writers would start writers again), and fork copies
    the parent's threads' locks. The interpreter is multiprocessing's (set_executable is
    honoured). The writer runs in the package's folder, which `-m` puts first on its path, so
    another blockfs_mpi in the user's folder is never imported; PYTHONPATH covers -P.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([spawn.get_executable(), "-m", "blockfs_mpi.writer_process",
                             str(control_fd)], pass_fds=[control_fd], cwd=PACKAGE_ROOT, env=env)


class WriterProcesses:
    """The writer processes of one volume, owned by the process that started them."""

    def __init__(self, volume, paths, codec_args, dtype, description, queue_depth=10):
        """Start one writer per data file of `volume` and publish them with `description`
        (what a process attaching to them must agree on)."""
        self.folder = tempfile.mkdtemp(prefix="blockfs-")
        self.addresses = [os.path.join(self.folder, f"w{i}") for i in range(len(paths))]
        self.authkey = os.urandom(32)
        self.paths = paths
        self._controls, self._processes = [], []
        self._cleanup = weakref.finalize(self, _withdraw, volume, self.folder, os.getpid())
        for file_number, (path, address) in enumerate(zip(paths, self.addresses)):
            ours, theirs = socket.socketpair()
            with theirs:
                try:
                    process = _start_writer(theirs.fileno())
                except OSError as e:
                    ours.close()
                    self.terminate()
                    raise WriterError(f"cannot start the writer process of {path}: {e}") from None
            control = Connection(ours.detach())
            self._controls.append(control)
            self._processes.append(process)
            try:
                control.send((address, self.authkey, path, file_number, codec_args,
                              np.dtype(dtype), queue_depth))
            except OSError:  # it died at once: _receive says so
                pass
        for file_number, control in enumerate(self._controls):
            status, message = self._receive(file_number, START_TIMEOUT)
            if status != "ready":
                self.terminate()
                raise WriterError(message)
        _publish(volume, {"volume": volume, "pid": os.getpid(), "folder": self.folder,
                          "addresses": self.addresses, "authkey": self.authkey.hex(),
                          "description": description})

    def _receive(self, file_number, timeout=None):
        control = self._controls[file_number]
        try:
            if timeout is not None and not control.poll(timeout):
                return "error", f"writer of {self.paths[file_number]} did not start"
            return control.recv()
        except (EOFError, OSError):
            code = self._processes[file_number].poll()
            status = "" if code is None else f" (exit status {code})"
            return "error", f"writer process of {self.paths[file_number]} died{status}"

    def close(self):
        """Stop every writer after it wrote all it acknowledged; their WRITTEN rows."""
        for control in self._controls:
            try:
                control.send("close")
            except OSError:
                pass
        results = [self._receive(i) for i in range(len(self._controls))]
        for process in self._processes:
            process.wait()
        self._cleanup()
        errors = [message for status, message in results if status != "done"]
        if errors:
            raise WriterError("; ".join(errors))
        return np.concatenate([np.frombuffer(rows, WRITTEN) for _, rows in results])

    def terminate(self):
        """Stop every writer at once (after an error); what they appended stays on disk."""
        for process in self._processes:
            process.terminate()
            process.wait()
        self._cleanup()


class WriterClient:
    """A process's connections to the writer processes, opened lazily (fork-safe)."""

    def __init__(self, addresses, authkey):
        self.addresses = addresses
        self.authkey = authkey
        self._pid = None
        self._connections = {}
        self._locks = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, entry: dict) -> "WriterClient":
        """A client of the writers a registry entry (`published`) describes."""
        return cls(entry["addresses"], bytes.fromhex(entry["authkey"]))

    def __getstate__(self):
        return {"addresses": self.addresses, "authkey": self.authkey}

    def __setstate__(self, state):
        self.__init__(state["addresses"], state["authkey"])

    def _connection(self, index):
        with self._lock:
            if self._pid != os.getpid():
                self._pid, self._connections = os.getpid(), {}
                self._locks = {i: threading.Lock() for i in range(len(self.addresses))}
            connection = self._connections.get(index)
            if connection is None:
                try:
                    connection = Client(self.addresses[index], family="AF_UNIX",
                                        authkey=self.authkey)
                except (OSError, EOFError, multiprocessing.AuthenticationError) as e:
                    raise WriterError(f"cannot reach writer process {index} (was the volume "
                                      f"closed already?): {e}") from None
                self._connections[index] = connection
            return connection, self._locks[index]

    def send(self, index, block_number, array):
        """Hand a block to writer `index`; returns once that writer has queued it."""
        connection, lock = self._connection(index)
        with lock:
            try:
                connection.send_bytes(BLOCK_NUMBER.pack(block_number) + array.tobytes())
                error = connection.recv_bytes()
            except (EOFError, OSError) as e:
                raise WriterError(f"writer process {index} is gone: {e}") from None
        if error:
            raise WriterError(error.decode())
