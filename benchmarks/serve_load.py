"""Load check of blockfs-serve: N concurrent clients fetch random chunks for a bounded time.

    python benchmarks/serve_load.py [--clients 8] [--seconds 20] [--size 256]

Writes a synthetic 3-level pyramid (64^3 blocks, uint16) into a temporary
folder, starts `python -m blockfs_mpi.serve` on a free loopback port, and runs
the clients (threads, one keep-alive connection each, gzip accepted as
Neuroglancer's browser does) until the time is up or each made --max-requests.
Prints errors, chunks/s, MB/s and latency percentiles.
"""
import argparse
import http.client
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np


def serve(folder):
    """blockfs-serve on a free loopback port: (process, "host:port")."""
    process = subprocess.Popen([sys.executable, "-m", "blockfs_mpi.serve", folder, "--port=0",
                                "--silent"], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    if " at http://" not in line:
        os.killpg(process.pid, signal.SIGKILL)
        sys.exit(f"blockfs-serve did not start: {line!r}")
    threading.Thread(target=process.stdout.read, daemon=True).start()  # drain its listing
    return process, line.split(" at http://")[1].strip().rstrip("/")


def chunk_names(folder, levels):
    """Every chunk name of every scale, as /vol/<key>/<x0-x1_y0-y1_z0-z1>."""
    from blockfs_mpi import Directory, pyramid
    names = []
    for level in range(1, levels + 1):
        d = Directory.open(pyramid.level_path(os.path.join(folder, "vol"), level))
        for x, y, z in d.geometry.block_origins():
            zs, ys, xs = d.get_block_size(x, y, z)
            names.append(f"/vol/{pyramid.scale_key(level)}/{x}-{x + xs}_{y}-{y + ys}_{z}-{z + zs}")
    return names


def client(address, names, seed, deadline, max_requests, results):
    """Fetch random chunks on one connection; append (latency s, bytes, status) per request."""
    host, port = address.split(":")
    rng = np.random.default_rng(seed)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(max_requests):
        if time.monotonic() >= deadline:
            break
        started = time.monotonic()
        try:
            connection.request("GET", names[rng.integers(len(names))],
                               headers={"Accept-Encoding": "gzip"})
            response = connection.getresponse()
            body = response.read()
            results.append((time.monotonic() - started, len(body), response.status))
        except (OSError, http.client.HTTPException):
            results.append((time.monotonic() - started, 0, -1))
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--size", type=int, default=256, help="edge of the cubic volume")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per client")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "blockfs_mpi.write", f"synthetic:{args.size}x"
                        f"{args.size}x{args.size}", os.path.join(folder, "vol"), "--levels=3",
                        "--silent"], check=True, timeout=600, stderr=subprocess.DEVNULL)
        names = chunk_names(folder, 3)
        process, address = serve(folder)
        try:
            results = []
            deadline = time.monotonic() + args.seconds
            started = time.monotonic()
            threads = [threading.Thread(target=client, args=(address, names, seed, deadline,
                                                              args.max_requests, results))
                       for seed in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(args.seconds + 60)
            elapsed = time.monotonic() - started
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
    latency = np.array([r[0] for r in results]) * 1000
    errors = sum(r[2] != 200 for r in results)
    p50, p90, p99 = np.percentile(latency, [50, 90, 99])
    print(f"{args.clients} clients, {elapsed:.1f} s, {len(names)} chunks of 64^3 uint16 in 3 "
          f"scales of a {args.size}^3 volume, gzip accepted; {os.cpu_count()} cores")
    print(f"requests {len(results)}, errors {errors}, {len(results) / elapsed:.0f} chunks/s, "
          f"{sum(r[1] for r in results) / elapsed / 1e6:.1f} MB/s sent")
    print(f"latency ms: p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {latency.max():.1f}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
