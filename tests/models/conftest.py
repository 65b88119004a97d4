"""Fixtures the model tests share: smaller copies of the data set for runs that only need a
few hundred images, and the data files read once per module by in-process runs."""

import os
from pathlib import Path

import pytest

from models import data
from test_data import write_idx


@pytest.fixture(scope="module")
def small_data(request, tmp_path_factory):
    """SCG_DATA (searched before the system copy) set, for the requesting module and the
    processes it starts, to a folder holding the first ``SMALL_DATA = (n_train, n_test)`` (a
    constant of that module) training and test images and labels of the system's
    fashion-mnist; yields the folder. Loading all 70,000 images cost each run about a second;
    a module whose runs use ``--limit`` needs few."""
    n_train, n_test = request.module.SMALL_DATA
    d = tmp_path_factory.mktemp("small-data")
    system = Path(data.SYSTEM_DIRS["fashion-mnist"])
    for key, f in data.FILES.items():
        write_idx(d / f, data.read_idx(system / f)[:n_train if key.startswith("train") else n_test], compresslevel=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCG_DATA", str(d))
        yield d


@pytest.fixture(scope="module")
def data_files_read_once():
    """The runs made in this process read the data set's IDX files once per module, not once
    each (un-gzipping them is ~0.4 s a run); every run still prepares its images from them
    (split, limit, scaling, binarization). Read-only arrays: a run cannot alter the next's."""
    read, cache = data.load, {}

    def load(name="fashion-mnist", data_dir=None, allow_download=True):
        key = (name, None if data_dir is None else str(data_dir), allow_download, os.environ.get("SCG_DATA"))
        if key not in cache:
            cache[key] = read(name, data_dir, allow_download)
            for array in cache[key].values():
                array.flags.writeable = False
        return dict(cache[key])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "load", load)
        yield
