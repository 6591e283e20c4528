"""Prediction files paired with their photos (zoo.harness.predictions): by relative path and stem, any image format,
with clashes, strays and sizes reported; on real photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from zoo.data import resolve_source
from zoo.harness.predictions import PredictionsError, check_sizes, match_predictions
from zoo.harness.protocols import PROTOCOLS


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    """Four real photos, two of them with the same name in different folders."""
    sources = resolve_source("heldout")[:3]
    placed = [tmp_path / "photos" / "a" / sources[0].name, tmp_path / "photos" / "b" / sources[0].name,
              tmp_path / "photos" / "b" / sources[1].name, tmp_path / "photos" / "b" / "c" / sources[2].name]
    for source, target in zip([sources[0], *sources], placed):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return sorted(placed)


def _write(path: Path, like: Path, size: tuple[int, int] | None = None) -> Path:
    """A prediction file at ``path`` (its format from the extension): ``like`` itself, resized to ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(like) as image:
        (image.resize(size) if size else image).convert("RGB").save(path)
    return path


def test_files_pair_by_relative_path_and_stem_in_any_format(photos, tmp_path):
    out = tmp_path / "out"
    formats = (".png", ".webp", ".tif", ".bmp")
    relative = [p.relative_to(tmp_path / "photos") for p in photos]
    written = [_write(out / r.with_suffix(ext), p) for r, p, ext in zip(relative, photos, formats)]
    pairing = match_predictions(photos, out)
    assert pairing.pairs == list(zip(photos, written))  # the same name in two folders goes to each its own
    assert pairing.missing == [] and pairing.extra == [] and pairing.summary(out) == []
    check_sizes(pairing.pairs, PROTOCOLS["crop256"])


def test_missing_and_extra_files_are_told_apart(photos, tmp_path):
    out = tmp_path / "out"
    root = tmp_path / "photos"
    _write(out / photos[0].relative_to(root).with_suffix(".png"), photos[0])
    _write(out / photos[2].relative_to(root).with_suffix(".png"), photos[2])
    stray = _write(out / "a" / "unrelated.png", photos[0])
    flat = _write(out / photos[3].with_suffix(".png").name, photos[3])  # b/c/x.jpg's prediction, but not in c/
    pairing = match_predictions(photos, out)
    assert [truth for truth, _ in pairing.pairs] == [photos[0], photos[2]]
    assert pairing.missing == [photos[1], photos[3]] and pairing.extra == sorted([stray, flat])
    assert pairing.summary(out) == [
        f"2 of 4 photos have no prediction in {out}, scored without them: {photos[1].name}, {photos[3].name}",
        f"2 files in {out} match no photo, not scored: {stray.name}, {flat.name}",  # a/unrelated.png sorts first
    ]


def test_two_predictions_of_one_photo_and_no_match_at_all_are_refused(photos, tmp_path):
    out = tmp_path / "out"
    key = photos[0].relative_to(tmp_path / "photos")
    _write(out / key.with_suffix(".png"), photos[0])
    _write(out / key.with_suffix(".jpg"), photos[0])
    with pytest.raises(PredictionsError, match=f"1 photos have more than one prediction in {out}: .*jpg and .*png"):
        match_predictions(photos, out)
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "colour.png", photos[0])
    with pytest.raises(PredictionsError, match="no file in .* matches a photo by relative path and stem .*'colour'"):
        match_predictions(photos, elsewhere)


def test_sizes_must_match_unless_the_protocol_resizes(photos, tmp_path):
    out = tmp_path / "out"
    root = tmp_path / "photos"
    pairs = [(p, _write(out / p.relative_to(root).with_suffix(".png"), p, (64, 48))) for p in photos]
    with pytest.raises(PredictionsError) as caught:
        check_sizes(pairs, PROTOCOLS["zoo"])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("4 predictions differ in size from their photos")
    with Image.open(photos[0]) as image:
        assert f"{pairs[0][1].name} 64x48 for {photos[0].name} {image.width}x{image.height}" in message
    assert "protocol zoo crops" in message and "--protocol resize256" in message
    check_sizes(pairs, PROTOCOLS["resize256"])
