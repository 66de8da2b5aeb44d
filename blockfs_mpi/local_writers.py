"""Writer processes for one-rank use (no mpiexec): the original blockfs API's engine.

Each writer process owns one data file and listens on a Unix socket. Any
process holding the Directory -- the parent, or a multiprocessing worker
that got it by fork, spawn or forkserver -- connects lazily and sends
(block number, raw block); the writer acknowledges once the block is in its
bounded queue, compresses it and appends it. Acknowledged blocks are always
written before the writer honours close, so nothing sent is lost.

The writers are fresh interpreters running `python -m blockfs_mpi.writer_process`
(see _start_writer), so they never re-run the user's main module; while they
run, writer_registry lists them for the job's other processes.
"""
from __future__ import annotations

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
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import WriterError
from .format import WRITTEN
from .writer_registry import REGISTRY, Entry, publish, withdraw

# A block sent to a writer: its number and whether a stored payload (compressed with the
# volume's codec) or its voxels follow.
BLOCK_HEADER = struct.Struct("<Q?")
START_TIMEOUT = 60
# What a writer process says on its control socket (writer_process.serve): a status and its
# payload, None ("ready"), the WRITTEN rows as bytes ("done") or a message ("error").
Reply = tuple[str, Any]

# The folder holding the package, put first on the writers' import path.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clean_up(volume: str, folder: str, owner_pid: int) -> None:
    """Withdraw the writers of `volume` and remove their sockets, in their owner only (a
    forked child that exits normally runs its copy of this too)."""
    if os.getpid() == owner_pid:
        withdraw(volume)
        shutil.rmtree(folder, ignore_errors=True)


def _start_writer(control_fd: int) -> subprocess.Popen[bytes]:
    """`python -m blockfs_mpi.writer_process <fd>`: a fresh interpreter that imports this very
    package and never the user's main module.

    multiprocessing cannot promise that: spawn and forkserver children re-run the main module
    (a lab script whose module level starts writers would start writers again), and fork copies
    the parent's threads' locks. The interpreter is multiprocessing's (set_executable is
    honoured). The writer runs in the package's folder, which `-m` puts first on its path, so
    another blockfs_mpi in the user's folder is never imported; PYTHONPATH covers -P. The price
    is an interpreter's start per volume (0.3 s or so, most of it numpy's import).
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([spawn.get_executable(), "-m", "blockfs_mpi.writer_process",
                             str(control_fd)], pass_fds=[control_fd], cwd=PACKAGE_ROOT, env=env)


class WriterProcesses:
    """The writer processes of one volume, owned by the process that started them."""

    def __init__(self, volume: str, paths: list[str], codec_args: tuple[str, int, str],
                 dtype: npt.DTypeLike, description: dict[str, Any], queue_depth: int = 10) -> None:
        """Start one writer per data file of `volume` and publish them with `description`
        (what a process attaching to them must agree on)."""
        self.folder = tempfile.mkdtemp(prefix="blockfs-")
        self.addresses = [os.path.join(self.folder, f"w{i}") for i in range(len(paths))]
        self.authkey = os.urandom(32)
        self.paths = paths
        self._controls: list[Connection] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._cleanup = weakref.finalize(self, _clean_up, volume, self.folder, os.getpid())
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
        for file_number in range(len(self._controls)):
            status, message = self._receive(file_number, START_TIMEOUT)
            if status != "ready":
                self.terminate()
                raise WriterError(message)
        try:
            publish(volume, {"volume": volume, "pid": os.getpid(), "folder": self.folder,
                             "addresses": self.addresses, "authkey": self.authkey.hex(),
                             "description": description})
        except OSError as e:
            self.terminate()
            raise WriterError(f"cannot record the writer processes of {volume} in {REGISTRY}: "
                              f"{e}") from None

    def _receive(self, file_number: int, timeout: float | None = None) -> Reply:
        control = self._controls[file_number]
        try:
            if timeout is not None and not control.poll(timeout):
                return "error", f"writer of {self.paths[file_number]} did not start"
            reply: Reply = control.recv()
            return reply
        except (EOFError, OSError):
            code = self._processes[file_number].poll()
            status = "" if code is None else f" (exit status {code})"
            return "error", f"writer process of {self.paths[file_number]} died{status}"

    def close(self) -> npt.NDArray[np.void]:
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

    def terminate(self) -> None:
        """Stop every writer at once (after an error); what they appended stays on disk."""
        for process in self._processes:
            process.terminate()
            process.wait()
        self._cleanup()


class WriterClient:
    """A process's connections to the writer processes, opened lazily (fork-safe)."""

    def __init__(self, addresses: list[str], authkey: bytes) -> None:
        self.addresses = addresses
        self.authkey = authkey
        self._pid: int | None = None
        self._connections: dict[int, Connection] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, entry: Entry) -> WriterClient:
        """A client of the writers a registry entry (`published`) describes."""
        return cls(entry["addresses"], bytes.fromhex(entry["authkey"]))

    def __getstate__(self) -> dict[str, Any]:
        return {"addresses": self.addresses, "authkey": self.authkey}

    def __setstate__(self, state: dict[str, Any]) -> None:
        WriterClient.__init__(self, state["addresses"], state["authkey"])

    def _connection(self, index: int) -> tuple[Connection, threading.Lock]:
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

    def send(self, index: int, block_number: int, block: npt.NDArray[np.generic] | bytes
             ) -> None:
        """Hand a block to writer `index`, its voxels or (bytes) its stored payload; returns
        once that writer has queued it."""
        stored = isinstance(block, bytes)
        data = block if isinstance(block, bytes) else block.tobytes()
        connection, lock = self._connection(index)
        with lock:
            try:
                connection.send_bytes(BLOCK_HEADER.pack(block_number, stored) + data)
                error = connection.recv_bytes()
            except (EOFError, OSError) as e:
                raise WriterError(f"writer process {index} is gone: {e}") from None
        if error:
            raise WriterError(error.decode())
