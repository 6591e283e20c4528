"""Shared fixtures: the real photo set and the example plugin distribution."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import spec
from zoo.registry import clear_caches

TESTS = Path(__file__).resolve().parent
PLUGIN_SOURCE = TESTS / "plugin_example"

# Nothing is downloaded in the tests: the zoo's downloads and Hugging Face's are switched off before anything
# imports them (ImageNet ResNet18 weights, say, are then missing, as on a machine without internet).
os.environ["ZOO_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"


def photos_path() -> Path:
    """The shared real photos: ``$ZOO_PHOTOS`` or ``../shared/data/photos`` beside the checkout."""
    return Path(os.environ.get("ZOO_PHOTOS", TESTS.parents[1] / "shared" / "data" / "photos"))


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    path = photos_path()
    if not any(path.glob("*.jpg")):
        pytest.skip(f"no shared photos at {path} (set ZOO_PHOTOS)")
    return path


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
