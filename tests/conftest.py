"""Shared fixtures: the real photo set and the example plugin distribution."""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import tempfile
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import spec
from zoo.data import SAMPLE_DIR
from zoo.registry import clear_caches

TESTS = Path(__file__).resolve().parent
PLUGIN_SOURCE = TESTS / "plugin_example"

# Nothing is downloaded in the tests: the zoo's downloads and Hugging Face's are switched off before anything
# imports them (ImageNet ResNet18 weights, say, are then missing, as on a machine without internet).
os.environ["ZOO_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


SHARED_PHOTOS = TESTS.parents[1] / "shared" / "data" / "photos"
GRAY_PHOTO = "gnome-control-center-data--guitar2.jpg"  # the shared set's one gray photo (tests/data holds a copy)


@functools.cache
def photos_path() -> Path:
    """The real photos the tests read: ``$ZOO_PHOTOS``, else ``../shared/data/photos`` beside the checkout, else
    the same photos as the package embeds them (the first 119 of zoo/sample_photos, byte for byte the shared
    ones) with the shared set's one gray photo from tests/data, linked into a folder of this test session, so
    that a fresh clone runs every photo test."""
    if "ZOO_PHOTOS" in os.environ:
        return Path(os.environ["ZOO_PHOTOS"])
    if any(SHARED_PHOTOS.glob("*.jpg")):
        return SHARED_PHOTOS
    folder = Path(tempfile.mkdtemp(prefix="zoo-photos-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for photo in [*SAMPLE_DIR.glob("*.jpg"), TESTS / "data" / GRAY_PHOTO]:
        (folder / photo.name).symlink_to(photo)
    return folder


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return photos_path()


def reset_discovery() -> None:
    """Forget cached plugin discovery so that a change of sys.path is seen."""
    clear_caches()
    spec.clear_cache()


@pytest.fixture(scope="session")
def example_plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, built and installed (with pip, as a user would) into a folder of its own."""
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN_SOURCE)],
        check=True,
    )
    return target


@pytest.fixture
def example_plugin(example_plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example plugin on sys.path (and PYTHONPATH, for subprocesses) for one test."""
    monkeypatch.syspath_prepend(str(example_plugin_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(example_plugin_path), os.environ.get("PYTHONPATH")])))
    reset_discovery()
    yield example_plugin_path
    monkeypatch.undo()
    reset_discovery()


@pytest.fixture(scope="session", autouse=True)
def scan_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, the zoo's and torch's (never the user's ~/.cache)."""
    path = tmp_path_factory.mktemp("zoo-cache")
    os.environ["ZOO_CACHE"] = str(path)
    os.environ["TORCH_HOME"] = str(path / "torch")
    return path


@pytest.fixture(autouse=True)
def seeded_global_generators() -> None:
    """Every test starts with torch, numpy and random seeded, so that what it draws is the same on every run."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
