"""Entry of a local writer process: `python -m blockfs_mpi.writer_process <control fd>`.

A fresh interpreter that imports only blockfs_mpi, never the user's main
module (which spawn and forkserver children re-run). The parent
(local_writers.WriterProcesses) sends its settings over the control socket;
the process owns one data file, listens on a Unix socket for blocks from any
process of the job, and appends them until told to close.
"""
import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection, Listener

import numpy as np
import numpy.typing as npt

from .compression import make_codec, single_threaded
from .local_writers import BLOCK_HEADER
from .writer import BlockWriter, PosixFile

STOP = None
Block = tuple[int, npt.NDArray[np.generic] | bytes]  # a number and its voxels, or its payload


def serve(control: Connection, address: str, authkey: bytes, path: str, file_number: int,
          codec_args: tuple[str, int, str], dtype: np.dtype[np.generic], depth: int) -> None:
    """Append the blocks sent to `address` to data file `path` until `control` says close."""
    single_threaded()
    blocks: queue.Queue[Block | None] = queue.Queue(maxsize=depth)
    error: str | None = None  # the first write that failed, said to every later sender
    closing = False  # set once the listener is closed on purpose
    try:
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
        writer = BlockWriter(PosixFile(path, truncate=False), file_number,
                             make_codec(*codec_args), append=True)
    except Exception as e:
        control.send(("error", f"writer for {path} failed to start: {e}"))
        return

    def receive(conn: Connection) -> None:
        with conn:
            while True:
                try:
                    message = conn.recv_bytes()
                except (EOFError, OSError):
                    return
                block_number, stored = BLOCK_HEADER.unpack_from(message)
                blocks.put((block_number, message[BLOCK_HEADER.size:] if stored else
                            np.frombuffer(message, dtype, offset=BLOCK_HEADER.size)))
                conn.send_bytes((error or "").encode())

    def accept() -> None:
        while True:
            try:
                conn = listener.accept()
            except Exception:  # closed at shutdown, or a client that failed to authenticate
                if closing:
                    return
                continue
            threading.Thread(target=receive, args=(conn,), daemon=True).start()

    def wait_for_close() -> None:
        try:
            control.recv()
        except (EOFError, OSError):  # the parent died (a reset if it left a reply unread):
            pass                     # write what was acknowledged and stop
        blocks.put(STOP)

    threading.Thread(target=accept, daemon=True).start()
    threading.Thread(target=wait_for_close, daemon=True).start()
    control.send(("ready", None))
    while True:
        item = blocks.get()
        if item is STOP:
            break
        if error is None:
            try:
                block_number, block = item
                if isinstance(block, bytes):
                    writer.write_payload(block_number, block)
                else:
                    writer.write(block_number, block)
            except Exception as e:
                error = f"writer of {path} failed: {e}"
    closing = True
    listener.close()
    try:
        rows = writer.close()
    except Exception as e:
        error = error or f"writer of {path} failed at close: {e}"
    try:
        control.send(("error", error) if error else ("done", rows.tobytes()))
    except OSError:  # the parent is gone: no one is left to tell
        pass


def main() -> None:
    """Read the settings from the control socket given as argv[1], then serve."""
    # Ctrl-C reaches the whole process group: the parent decides, and when it dies the
    # control socket ends, after which every acknowledged block is still written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = Connection(int(sys.argv[1]))
    try:
        settings = control.recv()
    except EOFError:  # the parent died before sending them
        return
    serve(control, *settings)


if __name__ == "__main__":
    main()
