"""Writer processes for one-rank use (no mpiexec): the original blockfs API's engine.

Each writer process owns one data file and listens on a Unix socket. Any
process holding the Directory -- the parent, or a multiprocessing worker
that got it by fork, spawn or forkserver -- connects lazily and sends
(block number, raw block); the writer acknowledges once the block is in its
bounded queue, compresses it and appends it. Acknowledged blocks are always
written before the writer honours close, so nothing sent is lost.
"""
import multiprocessing
import os
import queue
import shutil
import struct
import tempfile
import threading
from multiprocessing.connection import Client, Listener

import numpy as np

from .compression import make_codec, single_threaded
from .errors import WriterError
from .writer import WRITTEN, BlockWriter, PosixFile

BLOCK_NUMBER = struct.Struct("<Q")
STOP = None
START_TIMEOUT = 60


def _serve(address, authkey, path, file_number, codec_args, dtype, depth, control):
    """Body of a writer process."""
    single_threaded()
    blocks = queue.Queue(maxsize=depth)
    state = {"error": None}
    try:
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
        writer = BlockWriter(PosixFile(path, truncate=False), file_number,
                             make_codec(*codec_args), append=True)
    except Exception as e:
        control.send(("error", f"writer for {path} failed to start: {e}"))
        return

    def receive(conn):
        with conn:
            while True:
                try:
                    message = conn.recv_bytes()
                except (EOFError, OSError):
                    return
                (block_number,) = BLOCK_NUMBER.unpack_from(message)
                blocks.put((block_number, np.frombuffer(message, dtype, offset=BLOCK_NUMBER.size)))
                conn.send_bytes((state["error"] or "").encode())

    def accept():
        while True:
            try:
                conn = listener.accept()
            except Exception:  # closed at shutdown, or a client that failed to authenticate
                if state.get("closing"):
                    return
                continue
            threading.Thread(target=receive, args=(conn,), daemon=True).start()

    def wait_for_close():
        try:
            control.recv()
        except EOFError:  # the parent died: write what was acknowledged and stop
            pass
        blocks.put(STOP)

    threading.Thread(target=accept, daemon=True).start()
    threading.Thread(target=wait_for_close, daemon=True).start()
    control.send(("ready", None))
    while True:
        item = blocks.get()
        if item is STOP:
            break
        if state["error"] is None:
            try:
                writer.write(*item)
            except Exception as e:
                state["error"] = f"writer of {path} failed: {e}"
    state["closing"] = True
    listener.close()
    try:
        rows = writer.close()
    except Exception as e:
        state["error"] = state["error"] or f"writer of {path} failed at close: {e}"
    if state["error"]:
        control.send(("error", state["error"]))
    else:
        control.send(("done", rows.tobytes()))


class WriterProcesses:
    """The writer processes of one volume, owned by the process that started them."""

    def __init__(self, paths, codec_args, dtype, queue_depth=10):
        self.folder = tempfile.mkdtemp(prefix="blockfs-")
        self.addresses = [os.path.join(self.folder, f"w{i}") for i in range(len(paths))]
        self.authkey = os.urandom(32)
        self.paths = paths
        context = multiprocessing.get_context()
        self._controls, self._processes = [], []
        for file_number, (path, address) in enumerate(zip(paths, self.addresses)):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve, name=f"blockfs-writer-{file_number}", daemon=True,
                args=(address, self.authkey, path, file_number, codec_args, np.dtype(dtype),
                      queue_depth, theirs))
            process.start()
            theirs.close()
            self._controls.append(ours)
            self._processes.append(process)
        for file_number, control in enumerate(self._controls):
            status, message = self._receive(file_number, START_TIMEOUT)
            if status != "ready":
                self.terminate()
                raise WriterError(message)

    def _receive(self, file_number, timeout=None):
        control = self._controls[file_number]
        try:
            if timeout is not None and not control.poll(timeout):
                return "error", f"writer of {self.paths[file_number]} did not start"
            return control.recv()
        except (EOFError, OSError):
            return "error", f"writer process of {self.paths[file_number]} died"

    def close(self):
        """Stop every writer after it wrote all it acknowledged; their WRITTEN rows."""
        for control in self._controls:
            try:
                control.send("close")
            except OSError:
                pass
        results = [self._receive(i) for i in range(len(self._controls))]
        for process in self._processes:
            process.join()
        shutil.rmtree(self.folder, ignore_errors=True)
        errors = [message for status, message in results if status != "done"]
        if errors:
            raise WriterError("; ".join(errors))
        return np.concatenate([np.frombuffer(rows, WRITTEN) for _, rows in results])

    def terminate(self):
        """Stop every writer at once (after an error); what they appended stays on disk."""
        for process in self._processes:
            process.terminate()
            process.join()
        shutil.rmtree(self.folder, ignore_errors=True)


class WriterClient:
    """A process's connections to the writer processes, opened lazily (fork-safe)."""

    def __init__(self, addresses, authkey):
        self.addresses = addresses
        self.authkey = authkey
        self._pid = None
        self._connections = {}
        self._locks = {}
        self._lock = threading.Lock()

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
