"""The IDX reader rejects bad files by name and finds the real Fashion-MNIST files."""

import gzip
import struct

import numpy as np
import pytest

from models import data


def write_idx(path, array, gz=True, truncate=0, magic=b"\x00\x00\x08", compresslevel=9):
    """``array`` as an IDX file of unsigned bytes (gzipped when ``gz``), optionally damaged:
    ``truncate`` bytes cut off the end, another ``magic``. Also conftest.py's writer."""
    body = magic + bytes([array.ndim]) + b"".join(struct.pack(">i", n) for n in array.shape)
    body += array.astype(np.uint8).tobytes()
    if truncate:
        body = body[:-truncate]
    with (gzip.open(path, "wb", compresslevel=compresslevel) if gz else open(path, "wb")) as f:
        f.write(body)


def test_read_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", a)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), a)
    write_idx(tmp_path / "y", a[0], gz=False)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "y"), a[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(truncate=5), "truncated or corrupt"),
        (dict(magic=b"\x01\x00\x08"), "bad magic"),
        (dict(magic=b"\x00\x00\x0d"), "type code"),
    ],
)
def test_read_idx_rejects_bad_files_naming_them(tmp_path, kwargs, message):
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((3, 2, 2)), **kwargs)
    with pytest.raises(data.DataError, match=message) as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(data.DataError, match="t10k-labels"):
        data.read_idx(path)


def test_missing_dataset_message_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SCG_DATA", raising=False)
    with pytest.raises(data.DataError, match="not found") as e:
        data.find("mnist", data_dir=tmp_path / "nowhere")
    assert "nowhere" in str(e.value) and "SCG_DATA" in str(e.value)


def test_data_dir_takes_precedence(tmp_path):
    for key, name in data.FILES.items():
        n = 5 if key.startswith("train") else 2
        write_idx(tmp_path / name, np.zeros((n, 28, 28)) if "images" in key else np.arange(n))
    d = data.load("mnist", data_dir=tmp_path)
    assert d["train_images"].shape == (5, 28, 28) and d["test_labels"].tolist() == [0, 1]


def test_mismatched_images_and_labels_are_rejected(tmp_path):
    for key, name in data.FILES.items():
        n = 5 if key == "train_images" else 4
        write_idx(tmp_path / name, np.zeros((n, 28, 28)) if "images" in key else np.arange(n))
    with pytest.raises(data.DataError, match="do not match"):
        data.load("mnist", data_dir=tmp_path)


def test_real_fashion_mnist_is_found():
    d = data.load("fashion-mnist")
    assert d["train_images"].shape == (60000, 28, 28)
    assert d["test_images"].shape == (10000, 28, 28)
    assert sorted(np.unique(d["train_labels"])) == list(range(10))
