"""MNIST-format image data sets (IDX files) found on disk.

Search order for data set ``name`` ("fashion-mnist" or "mnist"): ``data_dir``
argument, ``$SCG_DATA`` (either may hold the files or a ``<name>/`` folder),
``~/.cache/scg/<name>``, then the system location of Debian's package
(``/usr/share/datasets/fashion-mnist``, from ``apt-get install dataset-fashion-mnist``).
"""

import gzip
import os
from pathlib import Path

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SYSTEM_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}
DATASETS = ("fashion-mnist", "mnist")


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupt."""


def read_idx(path):
    """Read an IDX file (optionally gzipped) into an ndarray, checking its header.

    IDX: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions,
    then each dimension as a big-endian int32, then the data.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is missing or corrupt") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: unsupported IDX type code 0x{raw[2]:02x} (expected 0x08, unsigned bytes)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data for shape {dims}, "
            f"file holds {len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, np.uint8, expected, header).reshape(dims)


def candidate_dirs(name, data_dir=None):
    """The folders searched for data set ``name``, in order."""
    dirs = []
    for base in (data_dir, os.environ.get("SCG_DATA")):
        if base:
            dirs += [Path(base) / name, Path(base)]
    dirs.append(Path.home() / ".cache" / "scg" / name)
    if name in SYSTEM_DIRS:
        dirs.append(Path(SYSTEM_DIRS[name]))
    return dirs


def find(name, data_dir=None):
    """The first folder holding all four files of data set ``name``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set '{name}'; choose from {DATASETS}")
    dirs = candidate_dirs(name, data_dir)
    for d in dirs:
        if all((d / f).is_file() for f in FILES.values()):
            return d
    hint = (
        "On Debian/Ubuntu: `apt-get install dataset-fashion-mnist`. "
        if name == "fashion-mnist"
        else ""
    )
    raise DataError(
        f"data set '{name}' not found; looked for {', '.join(FILES.values())} in: "
        + ", ".join(str(d) for d in dirs)
        + f". {hint}Or copy the four files into ~/.cache/scg/{name} or point --data-dir/SCG_DATA at them."
    )


def load(name="fashion-mnist", data_dir=None):
    """Dict of ``train_images`` (60000, 28, 28) uint8, ``train_labels`` (60000,), and
    the test split likewise; shapes and counts are checked against each other."""
    d = find(name, data_dir)
    data = {k: read_idx(d / f) for k, f in FILES.items()}
    for split in ("train", "test"):
        imgs, labels = data[f"{split}_images"], data[f"{split}_labels"]
        if imgs.ndim != 3 or labels.ndim != 1 or len(imgs) != len(labels):
            raise DataError(
                f"{d}: {split} images {imgs.shape} and labels {labels.shape} do not match"
            )
    return data
