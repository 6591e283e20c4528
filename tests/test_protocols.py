"""Scoring protocols (zoo.harness.protocols): each geometry against PIL written out, and zoo against zoo train's
validation crop, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from zoo.data import ColorizationDataset, resolve_source
from zoo.harness.protocols import PROTOCOLS, ProtocolImages, get_protocol


def _pil(path: Path) -> Image.Image:
    """A photo decoded in full by PIL, upright, RGB."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def _short_side_crop(image: Image.Image, side: int) -> np.ndarray:
    """Short side resized to ``side`` (bicubic; the long side rounded), then the centre side x side."""
    width, height = image.size
    scale = side / min(width, height)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    resized = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (resized.width - side) // 2, (resized.height - side) // 2
    return np.asarray(resized.crop((left, top, left + side, top + side)))


def _prepared(paths: list[Path], name: str, side: int) -> np.ndarray:
    images = ProtocolImages([(p,) for p in paths], PROTOCOLS[name], side)
    return np.stack([images[i][0].permute(1, 2, 0).numpy() for i in range(len(images))])


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    """Every tenth sample photo (12 real JPEGs, 96 to 480 px)."""
    return resolve_source("sample")[::10]


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo upscaled to 1280 x 960 and saved as a JPEG with an EXIF turn (orientation 6): large enough
    for a reduced-scale decode, and upright only once the turn is applied."""
    path = tmp_path_factory.mktemp("large") / "turned.jpg"
    photo = _pil(resolve_source("sample")[0]).resize((1280, 960), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored turned a quarter the other way
    photo.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    return path


@pytest.mark.parametrize("side", [64, 256])
def test_zoo_is_zoo_train_s_validation_crop(photos, side):
    dataset = ColorizationDataset(photos, side, train=False)
    expected = np.stack([dataset[i].permute(1, 2, 0).numpy() for i in range(len(dataset))])
    np.testing.assert_array_equal(_prepared(photos, "zoo", side), expected)


def test_crop256_is_a_short_side_resize_and_centre_crop(photos, large_jpeg):
    files = [*photos, large_jpeg]
    expected = np.stack([_short_side_crop(_pil(p), 256) for p in files])
    np.testing.assert_array_equal(_prepared(files, "crop256", 256), expected)


def test_resize256_keeps_the_whole_scene(photos, large_jpeg):
    files = [*photos, large_jpeg]
    expected = np.stack([np.asarray(_pil(p).resize((256, 256), Image.Resampling.BICUBIC)) for p in files])
    resized = _prepared(files, "resize256", 256)
    np.testing.assert_array_equal(resized, expected)
    assert not np.array_equal(resized, _prepared(files, "crop256", 256))  # the photos are not square


def test_zoo_decodes_large_jpegs_at_reduced_scale(large_jpeg):
    """zoo at 256 and crop256 share their geometry; on a large JPEG only the decode differs, and only a little."""
    zoo, crop = _prepared([large_jpeg], "zoo", 256), _prepared([large_jpeg], "crop256", 256)
    difference = np.abs(zoo.astype(float) - crop.astype(float))
    assert 0 < difference.mean() < 3  # a DCT-scaled decode, then resizing: a few levels of 255 at most
    assert zoo.shape == crop.shape == (1, 256, 256, 3)


def test_protocols_are_named_and_recorded():
    assert list(PROTOCOLS) == ["zoo", "crop256", "resize256"]
    assert get_protocol("zoo").side(128) == 128 and get_protocol("crop256").side(128) == 256
    with pytest.raises(ValueError, match="unknown scoring protocol 'crop224': expected one of zoo, crop256, resize256"):
        get_protocol("crop224")
    record = get_protocol("resize256").record(256)
    assert record["protocol"] == "resize256" and record["image_size"] == 256
    assert "no crop" in record["preprocess"] and "DDColor" in record["compares_with"]
    assert "centre 256x256 crop" in get_protocol("crop256").record(256)["preprocess"]
