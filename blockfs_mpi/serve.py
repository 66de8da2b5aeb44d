"""Serve every blockfs volume under a folder over HTTP: Neuroglancer's precomputed format, and
zarr v3 / OME-Zarr 0.5 for zarr clients.

Usage:
  blockfs-serve <folder> [--port=<n>] [--bind=<address>] [--cache=<n>] [--silent | --quiet]
  blockfs-serve --help | --version

Options:
  --port=<n>         TCP port; 0 picks a free one (printed at start).  [default: 8000]
  --bind=<address>   Address to listen on.  [default: 127.0.0.1]
  --cache=<n>        Volumes (scales) kept open at once.  [default: 64]
  --silent           Do not log each request.
  --quiet            The old name of --silent.
  -h --help          Show this text.

GET / lists the volumes served, each with its Neuroglancer source (also printed at start),
a viewer link and its zarr URL. GET /<volume>/info gives the precomputed info; GET /<volume>/<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>
a chunk in raw encoding (little-endian, x fastest). <volume> is a pyramid folder
(precomputed-tif's layout, blockfs format 1 or 2) or a single .blockfs file,
relative to <folder>. In Neuroglancer: precomputed://http://127.0.0.1:8000/<volume>
The same volume is a zarr v3 array (a pyramid: an OME-Zarr 0.5 image, levels 0, 1, ...)
at /<volume>.ome.zarr/: GET /<volume>.ome.zarr/zarr.json, /<volume>.ome.zarr/0/c/<z>/<y>/<x>
(a block as stored); in Neuroglancer: zarr3://http://127.0.0.1:8000/<volume>.ome.zarr/
There is no authentication: an address other than loopback is warned about.
"""
import ipaddress
import logging
import socket
import time

from . import parallel
from .options import number_in_range, parse_command_line
from .server import Server, neuroglancer_source

log = logging.getLogger("blockfs_mpi")

PRINTED = 20  # volumes printed at start


def announce(server: Server) -> None:
    """Print where the server listens and its volumes' Neuroglancer sources; warn when it is
    reachable from other machines (there is no authentication)."""
    print(f"blockfs-serve: serving {server.catalog.root} at {server.url}/", flush=True)
    address = ipaddress.ip_address(server.server_address[0])
    url = f"http://{socket.gethostname()}:{server.server_address[1]}" \
        if address.is_unspecified else server.url  # 0.0.0.0 names no machine to a browser
    volumes = server.volumes()
    for volume in volumes[:PRINTED]:
        print(f"  {neuroglancer_source(url, volume)}", flush=True)
    if len(volumes) > PRINTED:
        print(f"  ... {len(volumes) - PRINTED} more: GET {url}/ lists them", flush=True)
    if not volumes:
        print("  no volume found yet (pyramid folders or .blockfs files)", flush=True)
    if not address.is_loopback:
        log.warning("blockfs-serve: listening on %s, reachable from other machines, with no "
                    "authentication; bind to 127.0.0.1 (the default) and use an SSH tunnel "
                    "unless every machine that can reach it may read these volumes",
                    server.server_address[0])


@parallel.program
def main(argv: list[str] | None = None) -> None:
    args = parse_command_line(__doc__, argv)
    server = Server(args["<folder>"], number_in_range("--port", args["--port"], 0, 65535),
                    args["--bind"], number_in_range("--cache", args["--cache"], 1, 2 ** 20),
                    args["--silent"] or args["--quiet"])
    announce(server)
    started = time.monotonic()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("blockfs-serve: stopped after %.0f s", time.monotonic() - started)
    finally:
        server.server_close()
        server.catalog.close()


if __name__ == "__main__":
    main()
