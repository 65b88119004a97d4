"""Downloads from a local HTTP server on 127.0.0.1: a good checksum lands the files,
a bad checksum or a server error leaves nothing behind, and offline loading explains
how to get the files."""

import functools
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from models import data


def idx_bytes(array):
    header = b"\x00\x00\x08" + bytes([array.ndim]) + b"".join(struct.pack(">i", n) for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def served(tmp_path):
    """A folder of four small IDX files served over HTTP on 127.0.0.1; yields (url, checksums, arrays)."""
    root = tmp_path / "served"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28)), "train_labels": rng.integers(0, 10, 6),
        "test_images": rng.integers(0, 256, (3, 28, 28)), "test_labels": rng.integers(0, 10, 3),
    }
    sums = {}
    for key, fname in data.FILES.items():
        blob = idx_bytes(arrays[key])
        (root / fname).write_bytes(blob)
        sums[fname] = hashlib.sha256(blob).hexdigest()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", sums, arrays
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_with_good_checksums(served, tmp_path):
    url, sums, arrays = served
    dest = tmp_path / "cache"
    data.download("mnist", dest, base_url=url, checksums=sums, progress=False)
    loaded = data.load("mnist", data_dir=dest, allow_download=False)
    for key, a in arrays.items():
        np.testing.assert_array_equal(loaded[key], a)


def test_bad_checksum_leaves_nothing(served, tmp_path):
    url, sums, _ = served
    bad = dict(sums, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    dest = tmp_path / "cache"
    with pytest.raises(data.DataError, match="SHA-256 mismatch for t10k-images-idx3-ubyte.gz"):
        data.download("mnist", dest, base_url=url, checksums=bad, progress=False)
    names = sorted(p.name for p in dest.iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not any(n.endswith(".part") for n in names)  # no partial file either


def test_server_error_leaves_nothing(served, tmp_path):
    url, sums, _ = served
    dest = tmp_path / "cache"
    with pytest.raises(data.DataError, match="could not download train-images-idx3-ubyte.gz.*404"):
        data.download("mnist", dest, base_url=url + "missing/", checksums=sums, progress=False)
    assert list(dest.iterdir()) == []


def test_offline_load_explains_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SCG_DATA", raising=False)
    closed = "http://127.0.0.1:9/"  # the discard port: nothing listens there
    monkeypatch.setitem(data.OFFICIAL, "mnist", (closed, data.OFFICIAL["mnist"][1]))
    with pytest.raises(data.DataError) as e:
        data.load("mnist")
    message = str(e.value)
    assert "not found" in message and "Downloading them failed too" in message
    assert "SCG_DATA" in message and ".cache/scg/mnist" in message
    assert list((tmp_path / ".cache" / "scg" / "mnist").iterdir()) == []


def test_real_fashion_mnist_files():
    d = data.load("fashion-mnist", allow_download=False)
    assert d["train_images"].dtype == np.uint8 and d["train_images"].shape == (60000, 28, 28)
    assert d["test_labels"].shape == (10000,) and d["test_labels"].min() == 0 and d["test_labels"].max() == 9
