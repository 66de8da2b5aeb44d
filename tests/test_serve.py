"""blockfs-serve, started for real on a free loopback port: the precomputed protocol, its
refusals, and real clients (TensorStore, cloud-volume, Neuroglancer in headless Chromium),
and the zarr v3 / OME-Zarr view (zarr-python, TensorStore, ome-zarr-py)."""
import gzip
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from blockfs_mpi import Directory, pyramid
from blockfs_mpi import format as fmt
from blockfs_mpi.compression import numcodecs_blosc
from blockfs_mpi.reader import read_header
from conftest import FORMAT1_FIXTURE, import_peer, microscopy_volume, write_array

pytestmark = pytest.mark.timeout(180)


def make_pyramid(dest, voxels, levels=3, block=16):
    """A pyramid of levels in dest, level 1 = voxels."""
    path = pyramid.level_path(str(dest), 1)
    os.makedirs(os.path.dirname(path))
    write_array(path, voxels, block)
    pyramid.build(str(dest), levels, (4, 4, 40), silent=True)


class Served:
    """`python -m blockfs_mpi.serve <root> --port 0` in a process of its own."""

    def __init__(self, root, log_path, *options):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "blockfs_mpi.serve", str(root), "--port=0", *options],
            stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        with selectors.DefaultSelector() as selector:  # epoll: any descriptor number
            selector.register(self.process.stdout, selectors.EVENT_READ)
            ready = selector.select(30)
        line = self.process.stdout.readline() if ready else ""
        if " at http://" not in line:
            self.stop()
            pytest.fail(f"blockfs-serve did not start: {line!r} {open(log_path).read()}")
        self.url = line.split(" at ")[1].strip().rstrip("/")
        self.host, self.port = self.url[len("http://"):].split(":")

    def get(self, path, headers=None, method="GET"):
        """(status, headers, body) of one request; path is sent exactly as given."""
        connection = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def requests_logged(self, pattern):
        """How many access log lines match a regular expression."""
        return sum(bool(re.search(pattern, line)) for line in open(self.log_path))

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """A served folder: a 3-level pyramid, a labels pyramid, a precomputed-tif format 1
    pyramid (info with size in z, y, x order, as precomputed-tif wrote it)."""
    root = tmp_path_factory.mktemp("served")
    voxels = microscopy_volume((37, 45, 51))
    make_pyramid(root / "lab" / "brain", voxels)
    level1 = root / "tif" / "1_1_1"
    level1.mkdir(parents=True)
    for path in FORMAT1_FIXTURE.glob("fixture.blockfs.*"):  # found beside by name
        shutil.copy(path, level1 / path.name)
    shutil.copy(FORMAT1_FIXTURE / "fixture.blockfs", level1 / "precomputed.blockfs")
    info = {"data_type": "uint16", "mesh": "mesh", "num_channels": 1, "type": "image",
            "scales": [{"chunk_sizes": [[64, 64, 64]], "encoding": "raw", "key": "1_1_1",
                        "resolution": [1, 1, 1], "size": [100, 90, 80],
                        "voxel_offset": [0, 0, 0]}]}
    (root / "tif" / "info").write_text(json.dumps(info))
    return root, voxels


@pytest.fixture(scope="module")
def server(volumes, tmp_path_factory):
    served = Served(volumes[0], tmp_path_factory.mktemp("log") / "serve.log")
    yield served
    served.stop()


def scale_volume(root, volume, level):
    return Directory.open(pyramid.level_path(str(root / volume), level))


def test_info_describes_every_scale(server, volumes):
    status, headers, body = server.get("/lab/brain/info")
    assert status == 200 and headers["Content-Type"] == "application/json"
    info = json.loads(body)
    assert [s["size"] for s in info["scales"]] == [[51, 45, 37], [26, 23, 19], [13, 12, 10]]
    assert info["scales"][2]["resolution"] == [16, 16, 160]
    assert info["data_type"] == "uint16" and info["type"] == "image"


def test_chunks_are_raw_little_endian_x_fastest(server, volumes):
    root, _ = volumes
    for level, key in ((1, "1_1_1"), (2, "2_2_2"), (3, "4_4_4")):
        d = scale_volume(root, "lab/brain", level)
        z, y, x = d.shape
        for x0, x1, y0, y1, z0, z1 in ((0, min(16, x), 0, min(16, y), 0, min(16, z)),
                                       (x // 2, x, y // 2, y, z // 2, z), (3, 5, 0, y, 1, 2)):
            status, headers, body = server.get(f"/lab/brain/{key}/{x0}-{x1}_{y0}-{y1}_{z0}-{z1}")
            assert status == 200 and headers["Content-Type"] == "application/octet-stream"
            chunk = np.frombuffer(body, "<u2").reshape(z1 - z0, y1 - y0, x1 - x0)
            np.testing.assert_array_equal(chunk, d[z0:z1, y0:y1, x0:x1])


def test_gzip_only_when_accepted(server):
    _, plain_headers, plain = server.get("/lab/brain/1_1_1/0-16_0-16_0-16")
    assert "Content-Encoding" not in plain_headers and len(plain) == 16 ** 3 * 2
    status, headers, body = server.get("/lab/brain/1_1_1/0-16_0-16_0-16",
                                       {"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(body) < len(plain)
    assert gzip.decompress(body) == plain


def test_range_requests(server):
    _, _, whole = server.get("/lab/brain/1_1_1/0-16_0-16_0-16")
    for header, part, content_range in (("bytes=10-19", whole[10:20], "bytes 10-19/8192"),
                                        ("bytes=8000-", whole[8000:], "bytes 8000-8191/8192"),
                                        ("bytes=-5", whole[-5:], "bytes 8187-8191/8192"),
                                        ("bytes=8190-99999", whole[8190:], "bytes 8190-8191/8192")):
        status, headers, body = server.get("/lab/brain/1_1_1/0-16_0-16_0-16",
                                           {"Range": header, "Accept-Encoding": "gzip"})
        assert (status, body, headers["Content-Range"]) == (206, part, content_range)
        assert "Content-Encoding" not in headers
    status, headers, _ = server.get("/lab/brain/1_1_1/0-16_0-16_0-16", {"Range": "bytes=9000-"})
    assert status == 416 and headers["Content-Range"] == "bytes */8192"


def test_cors(server):
    _, headers, _ = server.get("/lab/brain/info", {"Origin": "http://elsewhere:1234"})
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, headers, _ = server.get("/lab/brain/1_1_1/0-16_0-16_0-16",
                                    {"Origin": "http://elsewhere:1234",
                                     "Access-Control-Request-Method": "GET",
                                     "Access-Control-Request-Headers": "range"}, "OPTIONS")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in headers["Access-Control-Allow-Methods"]
    assert "Range" in headers["Access-Control-Allow-Headers"]
    status, headers, body = server.get("/lab/brain/1_1_1/0-16_0-16_0-16", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "8192"


@pytest.mark.parametrize("path, status", [
    ("/nothing/info", 404),
    ("/lab/info", 404),
    ("/lab/brain/8_8_8/0-16_0-16_0-16", 404),
    ("/lab/brain/1_1_1/0-16_0-16_0-38", 404),
    ("/lab/brain/1_1_1/48-52_0-16_0-16", 404),
    ("/lab/brain/1_1_1/0-16_0-16", 400),
    ("/lab/brain/1_1_1/16-16_0-16_0-16", 400),
    ("/lab/brain/1_1_1/a-b_0-16_0-16", 400),
    ("/lab/brain/1_1_1/-1-16_0-16_0-16", 400),
    ("/lab/brain/1_1_1/precomputed.blockfs", 400),
    ("/lab/brain/", 404),
    ("/lab/brain/provenance", 404),
    # the zarr view's URLs
    ("/lab/brain.ome.zarr/3/zarr.json", 404),
    ("/lab/brain.ome.zarr/0/c/3/0/0", 404),
    ("/lab/brain.ome.zarr/0/c/0/0", 404),
    ("/lab/brain.ome.zarr/0/c/0/0/0/0", 404),
    ("/lab/brain.ome.zarr/00/zarr.json", 404),
    ("/lab/brain.ome.zarr/", 404),
    ("/lab/brain.ome.zarr/info", 404),
    ("/nothing.ome.zarr/zarr.json", 404),
    ("/.ome.zarr/zarr.json", 404),
    ("/lab/brain/2_2_2/precomputed.blockfs.ome.zarr/0/c/0/0/0", 404),
])
def test_errors(server, path, status):
    got, headers, body = server.get(path)
    assert got == status, body
    assert headers["Access-Control-Allow-Origin"] == "*"


def test_a_single_blockfs_file_is_a_volume(server, volumes):
    root, voxels = volumes
    status, _, body = server.get("/lab/brain/2_2_2/precomputed.blockfs/info")
    assert status == 200 and json.loads(body)["scales"][0]["size"] == [26, 23, 19]
    status, _, body = server.get("/lab/brain/2_2_2/precomputed.blockfs/1_1_1/0-26_0-23_0-19")
    expected = scale_volume(root, "lab/brain", 2)[:, :, :]
    np.testing.assert_array_equal(np.frombuffer(body, "<u2").reshape(expected.shape), expected)


def test_format1_pyramid_of_precomputed_tif(server):
    info = json.loads(server.get("/tif/info")[2])
    assert info["scales"][0]["size"] == [80, 90, 100]  # x, y, z, whatever the file says
    assert info["scales"][0]["chunk_sizes"] == [[32, 32, 32]]
    expected = np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"]
    status, _, body = server.get("/tif/1_1_1/32-64_32-64_32-64")
    assert status == 200
    np.testing.assert_array_equal(np.frombuffer(body, "<u2").reshape(32, 32, 32),
                                  expected[32:64, 32:64, 32:64])


# ------------------------------------------------------------ never outside the folder --

@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A served folder with ways out of it, and a secret volume outside it."""
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    make_pyramid(outside / "secret", np.full((20, 20, 20), 7, np.uint16), levels=1)
    (root / "link").symlink_to(outside / "secret")  # a symlink out of the folder
    (root / "inner").mkdir()
    (root / "inner" / "1_1_1").symlink_to(outside / "secret" / "1_1_1")
    shutil.copy(outside / "secret" / "info", root / "inner" / "info")
    # a volume whose directory file is inside but whose data file is outside, by a
    # relative name with '..' and by an absolute name
    for name, data_file in (("relative", None), ("absolute", str(outside / "abs.0"))):
        level1 = root / name / "1_1_1"
        level1.mkdir(parents=True)
        path = level1 / "precomputed.blockfs"
        d = Directory(20, 20, 20, np.uint16, str(path), n_filenames=1,
                      block_filenames=[str(outside / f"{name}.0")])
        d.create()
        d[:, :, :] = 7
        d.close()
        shutil.copy(outside / "secret" / "info", root / name / "info")
        if data_file:
            header = read_header(str(path))
            raw = path.read_bytes()[header.index_offset:]
            index = np.frombuffer(raw[:header.n_entries * fmt.ENTRY.itemsize], fmt.ENTRY)
            header.data_files = [data_file]
            os.rename(outside / f"{name}.0", data_file)
            path.write_bytes(b"".join(fmt.directory2_parts(header, index)))
    served = Served(root, base / "serve.log")
    yield served
    served.stop()


@pytest.mark.parametrize("path, status", [
    ("/../outside/secret/info", 400),
    ("/%2e%2e/outside/secret/info", 400),
    ("/..%2Foutside/secret/info", 400),
    ("/%2Ftmp/info", 400),
    ("//etc/info", 404),  # http.server makes it /etc/info: inside the folder
    ("/./link/info", 400),
    ("/link/info", 404),
    ("/link/1_1_1/0-16_0-16_0-16", 404),
    ("/inner/info", 404),
    ("/inner/1_1_1/0-16_0-16_0-16", 404),
    ("/relative/info", 404),
    ("/relative/1_1_1/0-16_0-16_0-16", 404),
    ("/absolute/info", 404),
    ("/absolute/1_1_1/0-16_0-16_0-16", 404),
    ("/absolute/1_1_1/precomputed.blockfs/1_1_1/0-16_0-16_0-16", 404),
])
def test_nothing_outside_the_folder_is_served(hostile, path, status):
    got, _, body = hostile.get(path)
    assert got == status, body
    assert b"\x07\x00" not in body


def test_concurrent_requests_and_a_small_cache(volumes, tmp_path):
    """Threads fetch chunks of 4 scales through an LRU of 2 open volumes; all are right."""
    root, _ = volumes
    served = Served(root, tmp_path / "serve.log", "--cache=2", "--quiet")
    try:
        expected = {key: scale_volume(root, "lab/brain", level)[:8, :8, :8]
                    for level, key in ((1, "1_1_1"), (2, "2_2_2"), (3, "4_4_4"))}
        errors = []

        def client(seed):
            rng = np.random.default_rng(seed)
            for _ in range(25):
                key = list(expected)[rng.integers(3)]
                status, _, body = served.get(f"/lab/brain/{key}/0-8_0-8_0-8")
                if status != 200 or not np.array_equal(
                        np.frombuffer(body, "<u2").reshape(8, 8, 8), expected[key]):
                    errors.append((key, status))
                served.get("/lab/brain/2_2_2/precomputed.blockfs/info")
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads) and errors == []
    finally:
        served.stop()


def test_a_rewritten_volume_is_reopened(tmp_path):
    make_pyramid(tmp_path / "v", np.ones((16, 16, 16), np.uint16), levels=1)
    served = Served(tmp_path, tmp_path / "serve.log")
    try:
        assert np.frombuffer(served.get("/v/1_1_1/0-1_0-1_0-1")[2], "<u2")[0] == 1
        d = Directory(16, 16, 16, np.uint16, pyramid.level_path(str(tmp_path / "v"), 1),
                      x_block_size=16, y_block_size=16, z_block_size=16, n_filenames=1)
        d.create()
        d[:, :, :] = 2
        d.close()
        assert np.frombuffer(served.get("/v/1_1_1/0-1_0-1_0-1")[2], "<u2")[0] == 2
    finally:
        served.stop()


# ------------------------------------------------------------------------- real clients --

def subvolumes(d):
    """A few (x0, x1, y0, y1, z0, z1) boxes of a scale, across chunk edges and at its end."""
    z, y, x = d.shape
    return [(0, x, 0, y, 0, z), (x // 3, x - 1, y // 4, y, z // 2, z // 2 + 1),
            (x - 1, x, 0, 1, z - 3, z)]


def test_tensorstore_reads_every_scale(server, volumes):
    ts = pytest.importorskip("tensorstore")
    root, _ = volumes
    for index, level in enumerate((1, 2, 3)):
        store = ts.open({"driver": "neuroglancer_precomputed",
                         "kvstore": f"{server.url}/lab/brain/", "scale_index": index},
                        read=True).result(timeout=60)
        d = scale_volume(root, "lab/brain", level)
        assert tuple(store.shape) == d.shape[::-1] + (1,)
        for x0, x1, y0, y1, z0, z1 in subvolumes(d):
            got = store[x0:x1, y0:y1, z0:z1, 0].read().result(timeout=60)
            np.testing.assert_array_equal(got, d[z0:z1, y0:y1, x0:x1].transpose(2, 1, 0))
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"{server.url}/tif/"},
                    read=True).result(timeout=60)
    expected = np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"]
    got = store[:, :, :, 0].read().result(timeout=60)
    np.testing.assert_array_equal(got, expected.transpose(2, 1, 0))


def test_cloudvolume_reads_every_scale(server, volumes):
    cloudvolume = pytest.importorskip("cloudvolume")
    root, _ = volumes
    for mip, level in enumerate((1, 2, 3)):
        volume = cloudvolume.CloudVolume(f"precomputed://{server.url}/lab/brain", mip=mip,
                                         progress=False, parallel=1, cache=False,
                                         fill_missing=False)
        d = scale_volume(root, "lab/brain", level)
        for x0, x1, y0, y1, z0, z1 in subvolumes(d):
            got = np.asarray(volume[x0:x1, y0:y1, z0:z1])[..., 0]
            np.testing.assert_array_equal(got, d[z0:z1, y0:y1, x0:x1].transpose(2, 1, 0))


@pytest.mark.parametrize("source, metadata, chunk", [
    ("precomputed://{url}/lab/brain", r'"GET /lab/brain/info HTTP/1.1" 200',
     r'"GET /lab/brain/\d+_\d+_\d+/\d+-\d+_\d+-\d+_\d+-\d+ HTTP/1.1" 200'),
    ("zarr3://{url}/lab/brain.ome.zarr/", r'"GET /lab/brain.ome.zarr/zarr.json HTTP/1.1" 200',
     r'"GET /lab/brain.ome.zarr/\d/c/\d+/\d+/\d+ HTTP/1.1" 200'),
], ids=["precomputed", "zarr3"])
def test_neuroglancer_in_headless_chromium(volumes, tmp_path, monkeypatch, source, metadata,
                                           chunk):
    """Neuroglancer's own client, in Debian's chromium, loads a layer from the server (its
    precomputed or its OME-Zarr source): chunk requests reach it and the screenshot of the
    data panel is not blank."""
    pytest.importorskip("neuroglancer")
    pytest.importorskip("selenium")
    import neuroglancer.webdriver
    chromium = shutil.which("chromium")
    if chromium is None or shutil.which("chromedriver") is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium: use the chromedriver on PATH
    served = Served(volumes[0], tmp_path / "serve.log")
    neuroglancer.set_server_bind_address("127.0.0.1")
    viewer = neuroglancer.Viewer()
    with viewer.txn() as s:
        s.layers["brain"] = neuroglancer.ImageLayer(source=source.format(url=served.url))
        s.layout = "xy"
    browser = None
    try:
        browser = neuroglancer.webdriver.Webdriver(
            viewer, headless=True, browser_binary_path=chromium, print_logs=False,
            extra_command_line_args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader"])  # WebGL on the CPU
        shot = []
        thread = threading.Thread(target=lambda: shot.append(viewer.screenshot(size=[400, 300])),
                                  daemon=True)  # screenshot() waits without a time limit
        thread.start()
        thread.join(90)
        assert shot, "Neuroglancer gave no screenshot within 90 s"
        pixels = shot[0].screenshot.image_pixels[..., :3]
        assert pixels.std() > 10 and pixels.max() > 50, "the screenshot is blank"
        assert served.requests_logged(metadata) >= 1
        assert served.requests_logged(chunk) >= 4
    finally:
        if browser is not None:
            browser.driver.quit()
        served.stop()


def test_root_lists_the_volumes_and_a_single_volume_has_its_voxel_size(tmp_path):
    """GET / lists every volume with its Neuroglancer source and a viewer link, as printed at
    start; a single served .blockfs file has the voxel size it records (nm); --silent (and
    its old name --quiet) logs no request; binding beyond loopback is warned about."""
    from blockfs_mpi.voxel_size import parse
    root = tmp_path / "served"
    make_pyramid(root / "lab" / "brain", microscopy_volume((9, 10, 11)), levels=2)
    write_array(str(root / "single.blockfs"), microscopy_volume((6, 7, 8)), 4,
                metadata=parse("1.8,1.8,2um").metadata())
    (root / "notes.blockfs").write_text("not a volume")
    served = Served(root, tmp_path / "serve.log", "--silent", "--bind", "0.0.0.0")
    try:
        printed = [served.process.stdout.readline().strip() for _ in range(2)]
        status, headers, body = served.get("/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        page = body.decode()
        for volume in ("lab/brain", "single.blockfs"):
            assert f"<code>precomputed://{served.url}/{volume}</code>" in page
            assert f">{volume}</a>" in page
            assert any(line.endswith(f":{served.port}/{volume}") for line in printed), printed
        assert "notes.blockfs" not in page and "https://neuroglancer-demo.appspot.com/#!" in page
        status, _, body = served.get("/single.blockfs/info")
        assert json.loads(body)["scales"][0]["resolution"] == [1800, 1800, 2000]
        assert served.requests_logged("GET") == 0
        assert served.requests_logged("reachable from other machines, with no authentication")
    finally:
        served.stop()


# ------------------------------------------------------- zarr v3 / OME-Zarr 0.5 over HTTP --

def test_zarr_metadata(server, volumes):
    status, headers, body = server.get("/lab/brain.ome.zarr/zarr.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    group = json.loads(body)
    assert group["node_type"] == "group" and group["attributes"]["ome"]["version"] == "0.5"
    multiscale = group["attributes"]["ome"]["multiscales"][0]
    assert [d["path"] for d in multiscale["datasets"]] == ["0", "1", "2"]
    assert multiscale["datasets"][2]["coordinateTransformations"][0]["scale"] == [160, 16, 16]
    assert multiscale["axes"][0] == {"name": "z", "type": "space", "unit": "nanometer"}
    array = json.loads(server.get("/lab/brain.ome.zarr/1/zarr.json")[2])
    assert array["shape"] == [19, 23, 26] and array["chunk_grid"]["configuration"][
        "chunk_shape"] == [16, 16, 16]
    single = json.loads(server.get("/lab/brain/2_2_2/precomputed.blockfs.ome.zarr/zarr.json")[2])
    assert single["node_type"] == "array" and single["shape"] == [19, 23, 26]


def test_zarr_chunks_are_the_stored_payloads(server, volumes):
    root, _ = volumes
    reader = scale_volume(root, "lab/brain", 1).reader
    payload = bytes(reader.payload(reader.header.geometry.block_number(16, 0, 16)))
    status, headers, body = server.get("/lab/brain.ome.zarr/0/c/1/0/1",
                                       {"Accept-Encoding": "gzip"})
    assert status == 200 and body == payload and "Content-Encoding" not in headers
    status, headers, body = server.get("/lab/brain.ome.zarr/0/c/1/0/1", {"Range": "bytes=4-99"})
    assert status == 206 and body == payload[4:100]
    assert headers["Content-Range"] == f"bytes 4-99/{len(payload)}"
    edge = server.get("/lab/brain.ome.zarr/0/c/2/2/3")[2]  # z 32-37, y 32-45, x 48-51
    chunk = np.frombuffer(numcodecs_blosc().Blosc().decode(edge), "<u2").reshape(16, 16, 16)
    np.testing.assert_array_equal(chunk[:5, :13, :3],
                                  scale_volume(root, "lab/brain", 1)[32:, 32:, 48:])
    assert not chunk[5:].any() and not chunk[:, 13:].any() and not chunk[:, :, 3:].any()


@pytest.mark.parametrize("path", [
    "/link.ome.zarr/zarr.json", "/link.ome.zarr/0/c/0/0/0", "/inner.ome.zarr/0/c/0/0/0",
    "/relative.ome.zarr/0/c/0/0/0", "/absolute.ome.zarr/0/c/0/0/0",
    "/absolute/1_1_1/precomputed.blockfs.ome.zarr/c/0/0/0",
    "/..%2Foutside/secret.ome.zarr/zarr.json",
    "/%2e%2e/outside/secret.ome.zarr/zarr.json", "/../outside/secret.ome.zarr/0/c/0/0/0",
])
def test_zarr_nothing_outside_the_folder_is_served(hostile, path):
    got, _, body = hostile.get(path)
    assert got in (400, 404), body
    assert b"\x07\x00" not in body


def test_zarr_python_over_http(server, volumes):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("aiohttp")
    root, _ = volumes
    store = zarr.storage.FsspecStore.from_url(f"{server.url}/lab/brain.ome.zarr", read_only=True)
    group = zarr.open_group(store, mode="r")
    for level in range(3):
        np.testing.assert_array_equal(group[str(level)][...],
                                      scale_volume(root, "lab/brain", level + 1)[...])
    image = pytest.importorskip("ome_zarr_models.v05.image")
    assert len(image.Image.from_zarr(group).ome_attributes.multiscales[0].datasets) == 3
    tif = zarr.open_group(zarr.storage.FsspecStore.from_url(f"{server.url}/tif.ome.zarr",
                                                            read_only=True), mode="r")
    np.testing.assert_array_equal(tif["0"][...],
                                  np.load(FORMAT1_FIXTURE / "fixture-voxels.npz")["voxels"])


def test_ome_zarr_py_over_http(server, volumes):
    reader = import_peer("ome_zarr.reader", python=(3, 11))
    io = import_peer("ome_zarr.io", python=(3, 11))
    root, _ = volumes
    node = next(iter(reader.Reader(io.parse_url(f"{server.url}/lab/brain.ome.zarr"))()))
    levels = [scale_volume(root, "lab/brain", level) for level in (1, 2, 3)]
    assert [tuple(level.shape) for level in node.data] == [d.shape for d in levels]
    for array, d in zip(node.data, levels):
        np.testing.assert_array_equal(np.asarray(array), d[...])


def test_root_lists_each_volumes_zarr_url(tmp_path):
    """GET / lists /<volume>.ome.zarr/ for a pyramid and a single file, and each listed URL
    answers zarr.json: an OME-Zarr group for the pyramid, an array for the file."""
    root = tmp_path / "served"
    make_pyramid(root / "lab" / "brain", microscopy_volume((9, 10, 11)), levels=2)
    write_array(str(root / "single.blockfs"), microscopy_volume((6, 7, 8)), 4)
    served = Served(root, tmp_path / "serve.log", "--silent")
    try:
        page = served.get("/")[2].decode()
        listed = re.findall(r"zarr <code>([^<]+)</code>", page)
        assert listed == [f"{served.url}/lab/brain.ome.zarr/",
                          f"{served.url}/single.blockfs.ome.zarr/"], page
        kinds = []
        for url in listed:
            status, headers, body = served.get(url[len(served.url):] + "zarr.json")
            assert status == 200 and headers["Content-Type"] == "application/json", body
            kinds.append(json.loads(body)["node_type"])
        assert kinds == ["group", "array"]
    finally:
        served.stop()


def test_tensorstore_zarr3_over_http(server, volumes):
    ts = pytest.importorskip("tensorstore")
    root, _ = volumes
    for level in range(3):
        store = ts.open({"driver": "zarr3",
                         "kvstore": f"{server.url}/lab/brain.ome.zarr/{level}/"},
                        read=True).result(timeout=60)
        d = scale_volume(root, "lab/brain", level + 1)
        assert tuple(store.shape) == d.shape
        for x0, x1, y0, y1, z0, z1 in subvolumes(d):
            np.testing.assert_array_equal(store[z0:z1, y0:y1, x0:x1].read().result(timeout=60),
                                          d[z0:z1, y0:y1, x0:x1])
    store = ts.open({"driver": "zarr3",
                     "kvstore": f"{server.url}/lab/brain/2_2_2/precomputed.blockfs.ome.zarr/"},
                    read=True).result(timeout=60)
    np.testing.assert_array_equal(store.read().result(timeout=60),
                                  scale_volume(root, "lab/brain", 2)[...])
