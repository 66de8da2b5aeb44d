"""The HTTP face of a Catalog (the library of blockfs-serve): precomputed info files and
chunks, zarr v3 / OME-Zarr 0.5 keys, and a listing page, with CORS, gzip and byte ranges."""
import gzip
import html
import json
import logging
import os
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote

from .catalog import BadName, Catalog, NotFound
from .identify import is_volume
from .pyramid import DIRECTORY_NAME

log = logging.getLogger("blockfs_mpi")

CHUNK = re.compile(r"(\d{1,12})-(\d{1,12})_(\d{1,12})-(\d{1,12})_(\d{1,12})-(\d{1,12})")
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
MAX_CHUNK_BYTES = 256 << 20  # a chunk is a block or so; refuse requests for whole volumes
ZARR_SUFFIX = ".ome.zarr"  # /<volume>.ome.zarr/<key>: the volume's zarr view
MAX_LISTED = 1000  # volumes GET / lists
NEUROGLANCER = "https://neuroglancer-demo.appspot.com/"  # the public viewer of viewer_link


class Handler(BaseHTTPRequestHandler):
    """GET/HEAD/OPTIONS of info files and chunks, with CORS, gzip and single byte ranges."""

    protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
    timeout = 60  # seconds a silent connection may hold a thread
    server_version = "blockfs-serve"
    server: "Server"

    def do_OPTIONS(self) -> None:
        """A CORS preflight: any origin may GET, with a Range header."""
        self.send_response(HTTPStatus.NO_CONTENT)
        self.common_headers({"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                             "Access-Control-Allow-Headers": "Range, Accept-Encoding, Content-Type",
                             "Access-Control-Max-Age": "86400", "Content-Length": "0"})

    def do_HEAD(self) -> None:
        self.do_GET(body=False)

    def do_GET(self, body: bool = True) -> None:
        try:
            content, kind, compressible = self.content()
        except BadName as e:
            return self.fail(HTTPStatus.BAD_REQUEST, e, body)
        except NotFound as e:
            return self.fail(HTTPStatus.NOT_FOUND, e, body)
        except Exception as e:  # a damaged volume: say so, keep serving the rest
            log.warning("%s: %s", self.path, e)
            return self.fail(HTTPStatus.INTERNAL_SERVER_ERROR, e, body)
        self.send(content, kind, body, compressible)

    def content(self) -> tuple[bytes | memoryview, str, bool]:
        """(bytes, content type, whether gzip may shrink them) for the request path."""
        if self.path.partition("?")[0] == "/":
            host = self.headers.get("Host") or self.server.url[len("http://"):]
            return listing_page(self.server.volumes(), f"http://{host}").encode(), \
                "text/html; charset=utf-8", True
        parts = unquote(self.path.partition("?")[0]).split("/")[1:]
        for at, part in enumerate(parts):
            if part.endswith(ZARR_SUFFIX) and part != ZARR_SUFFIX:
                volume = parts[:at] + [part[:-len(ZARR_SUFFIX)]]
                key = "/".join(parts[at + 1:])
                data = self.server.catalog.zarr(volume, key)
                if key.endswith("zarr.json"):
                    return data, "application/json", True
                return data, "application/octet-stream", False  # Blosc-compressed already
        if parts[-1] == "info":
            info = self.server.catalog.info(parts[:-1])
            return json.dumps(info).encode(), "application/json", True
        if len(parts) < 2:
            raise NotFound("expected /<volume>/info or /<volume>/<scale>/<chunk>")
        with self.server.catalog.scale(parts[:-2], parts[-2]) as d:
            match = CHUNK.fullmatch(parts[-1])
            if match is None:
                raise BadName(f"malformed chunk name {parts[-1]!r}: expected x0-x1_y0-y1_z0-z1")
            x0, x1, y0, y1, z0, z1 = map(int, match.groups())
            if not (x0 < x1 and y0 < y1 and z0 < z1):
                raise BadName(f"empty chunk {parts[-1]!r}")
            if x1 > d.x_extent or y1 > d.y_extent or z1 > d.z_extent:
                raise NotFound(f"chunk {parts[-1]} is outside the volume "
                               f"{d.x_extent}x{d.y_extent}x{d.z_extent}")
            if (x1 - x0) * (y1 - y0) * (z1 - z0) * d.dtype.itemsize > MAX_CHUNK_BYTES:
                raise BadName(f"chunk {parts[-1]} is larger than {MAX_CHUNK_BYTES >> 20} MiB")
            chunk = d[z0:z1, y0:y1, x0:x1]
        return chunk.astype(chunk.dtype.newbyteorder("<"), copy=False).tobytes(), \
            "application/octet-stream", True

    def send(self, content: bytes | memoryview, kind: str, body: bool,
             compressible: bool = True) -> None:
        """200 (gzip when accepted and compressible) or, for a Range request, 206/416 of the
        identity bytes."""
        status, headers = HTTPStatus.OK, {"Content-Type": kind, "Accept-Ranges": "bytes"}
        wanted = self.headers.get("Range")
        match = RANGE.fullmatch(wanted.strip()) if wanted else None
        if match and match.group(1) + match.group(2):
            first, last = match.groups()
            size = len(content)
            if first:
                start, stop = int(first), size if not last else min(int(last) + 1, size)
            else:
                start, stop = max(size - int(last), 0), size
            if start >= size or start >= stop:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.common_headers({"Content-Range": f"bytes */{size}", "Content-Length": "0"})
                return
            status = HTTPStatus.PARTIAL_CONTENT
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
            content = content[start:stop]
        elif compressible and "gzip" in self.headers.get("Accept-Encoding", ""):
            content = gzip.compress(content, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        headers.update({"Content-Length": str(len(content)), "Vary": "Accept-Encoding"})
        self.send_response(status)
        self.common_headers(headers)
        if body:
            self.wfile.write(content)

    def fail(self, status: HTTPStatus, error: Exception, body: bool) -> None:
        message = f"{status.value} {status.phrase}: {error}\n".encode()
        self.send_response(status)
        self.common_headers({"Content-Type": "text/plain; charset=utf-8",
                             "Content-Length": str(len(message))})
        if body:
            self.wfile.write(message)

    def common_headers(self, headers: dict[str, str]) -> None:
        """CORS for browsers on other origins, then the response's own headers."""
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers",
                         "Content-Range, Content-Length, Content-Encoding, Accept-Ranges")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            log.info("%s %s", self.address_string(), format % args)


class Server(ThreadingHTTPServer):
    """One thread per connection; blocks are read with pread, so threads never share offsets."""

    daemon_threads = True
    server_address: tuple[str, int]  # (host, port): an IPv4 or IPv6 socket's

    def __init__(self, folder: str, port: int = 8000, bind: str = "127.0.0.1", cache: int = 64,
                 quiet: bool = False) -> None:
        self.catalog = Catalog(folder, cache)
        self.quiet = quiet
        super().__init__((bind, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def volumes(self) -> list[str]:
        """The names of the volumes served, as GET / lists them."""
        return served_volumes(self.catalog.root)

    def start(self) -> threading.Thread:
        """Serve in a background thread (for tests and benchmarks); returns the thread."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.catalog.close()


def served_volumes(root: str, most: int = MAX_LISTED) -> list[str]:
    """The volumes under root by the names blockfs-serve serves them at (paths relative to
    root, sorted): pyramid folders (an info file beside a <key>/precomputed.blockfs) and
    directory files outside them. Symbolic links to folders are not followed."""
    found: list[str] = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        relative = os.path.relpath(folder, root)
        if "info" in files and any(os.path.isfile(os.path.join(folder, sub, DIRECTORY_NAME))
                                   for sub in subfolders):
            found.append(relative)
            subfolders.clear()  # its levels are part of it
            continue
        found += [os.path.normpath(os.path.join(relative, name)) for name in sorted(files)
                  if name.endswith(".blockfs") and is_volume(os.path.join(folder, name))]
        if len(found) >= most:
            break
    return sorted(found[:most])


def neuroglancer_source(url: str, volume: str) -> str:
    """The Neuroglancer data source of a served volume."""
    return f"precomputed://{url}/{quote(volume)}"


def zarr_url(url: str, volume: str) -> str:
    """The URL of a served volume's zarr v3 array (a pyramid's OME-Zarr 0.5 image)."""
    return f"{url}/{quote(volume)}{ZARR_SUFFIX}/"


def viewer_link(url: str, volume: str) -> str:
    """A Neuroglancer viewer URL showing a served volume as an image layer."""
    state = {"layers": [{"type": "image", "name": volume,
                         "source": neuroglancer_source(url, volume)}], "layout": "4panel"}
    return f"{NEUROGLANCER}#!{quote(json.dumps(state, separators=(',', ':')))}"


def listing_page(volumes: list[str], url: str) -> str:
    """GET /: an HTML list of the served volumes, each with its Neuroglancer source, a viewer
    link and its zarr v3 / OME-Zarr URL."""
    items = "".join(f'<li><a href="{html.escape(viewer_link(url, v))}">{html.escape(v)}</a> '
                    f"<code>{html.escape(neuroglancer_source(url, v))}</code> "
                    f"zarr <code>{html.escape(zarr_url(url, v))}</code></li>\n"
                    for v in volumes)
    return (f"<!doctype html>\n<title>blockfs-serve</title>\n<h1>Volumes served at "
            f"{html.escape(url)}</h1>\n<ul>\n{items or '<li>none</li>'}</ul>\n")
