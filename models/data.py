"""MNIST-format image data sets (IDX files) found on disk.

Search order for data set ``name`` ("fashion-mnist" or "mnist"): ``$SCG_DATA`` (the
files or a ``<name>/`` folder), ``~/.cache/scg/<name>``, then the system location of
Debian's package (``/usr/share/datasets/fashion-mnist``, from ``apt-get install
dataset-fashion-mnist``). A ``data_dir`` argument (``--data-dir``) replaces the search:
the files must be there (or in its ``<name>/`` folder), never silently taken elsewhere.
"""

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IMAGE_SHAPE = (28, 28)  # every data set here; the models read 784 pixels
SYSTEM_DIRS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist"}
DATASETS = ("fashion-mnist", "mnist")
# Where each data set is published, and the SHA-256 of each of its files there.
OFFICIAL = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
}


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
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; a damaged stream, zlib.error
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
    """The first folder holding all four files of data set ``name``; with ``data_dir``, only
    ``data_dir/<name>`` or ``data_dir`` itself (a DataError names the files missing there)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set '{name}'; choose from {DATASETS}")
    if data_dir is not None:
        return find_in(name, Path(data_dir))
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


def find_in(name, base):
    """``base/<name>`` or ``base`` if it holds all four files, else a DataError naming what is missing."""
    how = (f"copy {', '.join(FILES.values())} there, or leave out --data-dir to search SCG_DATA, "
           f"~/.cache/scg/{name} and the system copy")
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise DataError(f"data set '{name}' not found: --data-dir {base} {what}; {how}")
    dirs = [base / name, base]
    for d in dirs:
        if all((d / f).is_file() for f in FILES.values()):
            return d
    best = max([base, base / name], key=lambda d: sum((d / f).is_file() for f in FILES.values()))  # ties: base
    missing = [f for f in FILES.values() if not (best / f).is_file()]
    held = "none of its files" if len(missing) == len(FILES) else f"only part of it; missing: {', '.join(missing)}"
    other = base / name if best == base else base
    raise DataError(f"data set '{name}' not found: --data-dir {best} holds {held} (looked in {other} too); {how}")


def download(name, dest, base_url=None, checksums=None, progress=True, timeout=30):
    """Fetch the missing files of data set ``name`` into ``dest`` from ``base_url`` (default:
    the official location), verifying each file's SHA-256 (default: the official values).

    Each file is streamed into a temporary file beside its destination and moved into
    place only once its checksum matches, so a failed or mismatching download leaves
    nothing behind. Raises ``DataError`` naming the file and what went wrong.
    """
    if name not in OFFICIAL:
        raise ValueError(f"unknown data set '{name}'; choose from {tuple(OFFICIAL)}")
    official_url, official_sums = OFFICIAL[name]
    base_url = base_url or official_url
    checksums = checksums or official_sums
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for fname in FILES.values():
        target = dest / fname
        if target.is_file():
            continue
        url = base_url.rstrip("/") + "/" + fname
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{fname}.", suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                from tqdm.auto import tqdm  # only when downloading: a notebook that loads files needs no ipywidgets

                with tqdm(total=total, unit="B", unit_scale=True, desc=fname, disable=not progress) as bar:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            actual = digest.hexdigest()
            if actual != checksums[fname]:
                raise DataError(
                    f"{url}: SHA-256 mismatch for {fname} (expected {checksums[fname]}, got {actual}); "
                    f"the download was discarded"
                )
            os.replace(tmp, target)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DataError(f"could not download {fname} from {url}: {e}") from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def load(name="fashion-mnist", data_dir=None, allow_download=True):
    """Dict of ``train_images`` (60000, 28, 28) uint8, ``train_labels`` (60000,), and
    the test split likewise; images must be 28x28 and shapes and counts are checked against
    each other (a DataError names the file).

    Files not found in the searched folders are downloaded (with checksums) into
    ``data_dir`` or ``~/.cache/scg/<name>`` when ``allow_download``; if that fails
    (no network, say) the error says how to get them.
    """
    try:
        d = find(name, data_dir)
    except DataError as missing:
        if not allow_download or (data_dir is not None and not Path(data_dir).is_dir()):
            raise
        dest = Path(data_dir) if data_dir else Path.home() / ".cache" / "scg" / name
        try:
            download(name, dest)
        except DataError as failed:
            raise DataError(f"{missing}. Downloading them failed too: {failed}") from None
        d = find(name, data_dir or dest)
    data = {k: read_idx(d / f) for k, f in FILES.items()}
    for key in ("train_images", "test_images"):
        if data[key].shape[1:] != IMAGE_SHAPE:
            size = "x".join(map(str, data[key].shape[1:])) or "no"
            raise DataError(f"{d / FILES[key]}: images of {size} pixels (shape {data[key].shape}), expected "
                            f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}; this is not a {name} file")
    for split in ("train", "test"):
        imgs, labels = data[f"{split}_images"], data[f"{split}_labels"]
        if imgs.ndim != 3 or labels.ndim != 1 or len(imgs) != len(labels):
            raise DataError(
                f"{d}: {split} images {imgs.shape} and labels {labels.shape} do not match"
            )
    return data
