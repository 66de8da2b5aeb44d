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

from .compression import make_codec, single_threaded
from .local_writers import BLOCK_NUMBER
from .writer import BlockWriter, PosixFile

STOP = None


def serve(control, address, authkey, path, file_number, codec_args, dtype, depth):
    """Append the blocks sent to `address` to data file `path` until `control` says close."""
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
