"""zoo.data on real photos and on bad files made from them: sources, scanning, decoding, split, sampler, loader."""

from __future__ import annotations

import hashlib
import math
import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import photos_path
import torch
from PIL import Image, ImageFile, ImageOps

from zoo import data
from zoo.data import (
    EXTRA_DIR,
    HELDOUT_LIST,
    MIN_CHROMA,
    NEAR_COPIES_LIST,
    SAMPLE_DIR,
    BadImageError,
    ColorizationDataset,
    EmptyDatasetError,
    EpochSampler,
    SourceError,
    load_rgb,
    make_loader,
    mean_chroma,
    resolve_source,
    scan_images,
    split_paths,
)

PHOTOS = photos_path()
GRAY_PHOTO = "gnome-control-center-data--guitar2.jpg"
DOG = "darknet--dog.jpg"  # 427x320 colour photo
GIRAFFE = "darknet--giraffe.jpg"  # 320x320 colour photo



def rgb_array(name: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTOS / name).convert("RGB"))


def write_png16(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one)."""
    height, width, _ = rgb16.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


# ---------------------------------------------------------------------------------------------------- bad files

EXPECTED = {  # file -> (skip category or None, fixes)
    "good.jpg": (None, ()),
    "truncated.jpg": ("corrupt", ()),
    "text.jpg": ("not an image", ()),
    "cmyk.jpg": (None, ("converted",)),
    "gray16.png": ("grayscale", ()),
    "rgb16.png": (None, ("converted",)),
    "palette.png": (None, ("converted",)),
    "palette-transparent.png": (None, ("converted", "alpha dropped")),
    "rgba.png": (None, ("alpha dropped",)),
    "gray-alpha.png": ("grayscale", ()),
    "rotated.jpg": (None, ("rotated",)),
    "tiny.png": (None, ("upscaled",)),
    "bomb.png": ("too large", ()),
    GRAY_PHOTO: ("grayscale", ()),
}
BOMB_LIMIT = 500_000  # max_pixels for the scan: bomb.png has 600,000 pixels, every other file fewer than 140,000


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    dog = Image.open(PHOTOS / DOG).convert("RGB")
    raw = (PHOTOS / DOG).read_bytes()
    (d / "good.jpg").write_bytes(raw)
    (d / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (d / "text.jpg").write_text("this is not a JPEG\n")
    dog.convert("CMYK").save(d / "cmyk.jpg", quality=95)
    Image.fromarray(np.asarray(dog.convert("L")).astype(np.uint16) * 257).save(d / "gray16.png")
    write_png16(d / "rgb16.png", np.asarray(dog).astype(np.uint16) * 257)
    palette = dog.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.save(d / "palette.png")
    palette.save(d / "palette-transparent.png", transparency=int(np.asarray(palette)[0, 0]))
    rgba = dog.convert("RGBA")
    alpha = np.full((dog.height, dog.width), 255, np.uint8)
    alpha[:, : dog.width // 2] = 0  # left half fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(d / "rgba.png")
    dog.convert("LA").save(d / "gray-alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    dog.save(d / "rotated.jpg", exif=exif, quality=95)
    dog.resize((20, 20)).save(d / "tiny.png")
    dog.resize((1000, 600)).save(d / "bomb.png")
    (d / GRAY_PHOTO).write_bytes((PHOTOS / GRAY_PHOTO).read_bytes())
    return d


@pytest.fixture(scope="module")
def bad_scan(bad_dir: Path) -> tuple[data.ScanReport, list[str]]:
    """The scan of bad_dir, and the files whose pixels it decoded."""
    decoded: list[str] = []
    real_load = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile):  # noqa: ANN202
        decoded.append(Path(self.filename).name)
        return real_load(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ImageFile.ImageFile, "load", spy)
        report = scan_images(resolve_source(str(bad_dir)), image_size=64, max_pixels=BOMB_LIMIT, source=str(bad_dir))
    return report, decoded


def test_scan_classifies_each_bad_kind(bad_scan, bad_dir):
    report, _ = bad_scan
    skipped = {p.name: reason.partition(":")[0] for p, reason in report.skipped}
    fixes = {p.name: () for p in report.ok}
    for fix, paths in report.fixed.items():
        for p in paths:
            fixes[p.name] += (fix,)
    assert skipped == {name: skip for name, (skip, _) in EXPECTED.items() if skip}
    assert {name: tuple(sorted(f)) for name, f in fixes.items()} == {
        name: tuple(sorted(f)) for name, (skip, f) in EXPECTED.items() if skip is None
    }
    assert report.ok == sorted(bad_dir / name for name, (skip, _) in EXPECTED.items() if skip is None)


def test_scan_counts_and_summary(bad_scan):
    report, _ = bad_scan
    assert report.counts == {
        "grayscale": 3, "corrupt": 1, "not an image": 1, "too large": 1,
        "converted": 4, "alpha dropped": 2, "rotated": 1, "upscaled": 1,
    }
    first = report.summary().splitlines()[0]
    assert first == "skipped 6 of 14: 3 grayscale, 1 too large, 1 not an image, 1 corrupt"
    assert "adjusted at load: " in report.summary()


def test_scan_reasons_say_what_is_wrong(bad_scan):
    reasons = {p.name: reason for p, reason in bad_scan[0].skipped}
    assert reasons["truncated.jpg"].startswith("corrupt: image file is truncated")
    assert reasons["text.jpg"] == "not an image"
    assert reasons["gray16.png"] == "grayscale: single-channel mode I;16"
    assert reasons["gray-alpha.png"] == "grayscale: single-channel mode LA"
    assert reasons["bomb.png"] == "too large: 1000x600 = 600,000 pixels > 500,000 (decompression bomb guard)"
    chroma = float(reasons[GRAY_PHOTO].split()[3])
    assert 0.5 < chroma < MIN_CHROMA


def test_decompression_bomb_is_never_decoded(bad_scan):
    _, decoded = bad_scan
    assert "bomb.png" not in decoded
    assert "good.jpg" in decoded  # the spy does see decodes


def test_bad_image_error_is_one_line_naming_the_file(bad_dir):
    with pytest.raises(BadImageError) as info:
        load_rgb(bad_dir / "truncated.jpg")
    assert info.value.category == "corrupt"
    assert str(info.value).startswith(f"{bad_dir / 'truncated.jpg'}: corrupt: ")
    assert "\n" not in str(info.value)
    with pytest.raises(BadImageError, match="too large"):
        load_rgb(bad_dir / "bomb.png", max_pixels=BOMB_LIMIT)
    with pytest.raises(BadImageError, match="missing"):
        load_rgb(bad_dir / "no-such-file.jpg")


def test_load_cmyk_is_close_to_the_rgb_original(bad_dir):
    loaded = np.asarray(load_rgb(bad_dir / "cmyk.jpg")).astype(int)
    assert loaded.shape == rgb_array(DOG).shape
    assert np.abs(loaded - rgb_array(DOG)).mean() < 6


def test_load_16_bit_scales_instead_of_clipping(bad_dir):
    dog = rgb_array(DOG)
    assert np.array_equal(np.asarray(load_rgb(bad_dir / "rgb16.png")), dog)  # v * 257 -> v exactly
    gray = np.asarray(load_rgb(bad_dir / "gray16.png"))
    expected = np.asarray(Image.open(PHOTOS / DOG).convert("RGB").convert("L"))
    assert np.array_equal(gray[..., 0], expected) and np.array_equal(gray[..., 2], expected)


def test_load_palette_and_transparency(bad_dir):
    palette = Image.open(bad_dir / "palette.png")
    assert np.array_equal(np.asarray(load_rgb(bad_dir / "palette.png")), np.asarray(palette.convert("RGB")))
    transparent = np.asarray(load_rgb(bad_dir / "palette-transparent.png"))
    is_key = np.asarray(palette) == np.asarray(palette)[0, 0]
    assert (transparent[is_key] == 255).all()
    assert np.array_equal(transparent[~is_key], np.asarray(palette.convert("RGB"))[~is_key])


def test_load_rgba_composites_on_white(bad_dir):
    loaded = np.asarray(load_rgb(bad_dir / "rgba.png"))
    half = loaded.shape[1] // 2
    assert (loaded[:, :half] == 255).all()
    assert np.array_equal(loaded[:, half:], rgb_array(DOG)[:, half:])


def test_load_applies_exif_orientation(bad_dir):
    loaded = load_rgb(bad_dir / "rotated.jpg")
    assert loaded.size == (320, 427)  # stored 427x320
    got = np.asarray(loaded).astype(int)
    clockwise = np.rot90(rgb_array(DOG), k=-1).astype(int)
    assert np.abs(got - clockwise).mean() < 3
    assert np.abs(got - np.rot90(rgb_array(DOG), k=1)).mean() > 20  # the other way round is far off


def test_load_reduced_scale_keeps_short_side(bad_dir):
    reduced = load_rgb(bad_dir / "good.jpg", min_short_side=100)
    assert reduced.size == (214, 160)  # JPEG draft at 1/2 scale: the largest reduction keeping >= 100
    assert load_rgb(bad_dir / "good.jpg").size == (427, 320)


def test_tiny_image_is_upscaled_by_the_dataset(bad_dir):
    item = ColorizationDataset([bad_dir / "tiny.png"], 64, train=True)[(0, 5)]
    assert item.shape == (3, 64, 64) and item.dtype == torch.uint8


# ---------------------------------------------------------------------------------------------------- grayscale


def test_mean_chroma_matches_skimage_and_is_next_to_zero_for_gray():
    from skimage.color import rgb2lab

    thumb = np.asarray(Image.open(PHOTOS / DOG).convert("RGB").resize((64, 48)))
    lab = rgb2lab(thumb)
    assert mean_chroma(thumb) == pytest.approx(np.hypot(lab[..., 1], lab[..., 2]).mean(), abs=1e-6)
    grays = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    gray_lab = rgb2lab(grays[None])
    assert mean_chroma(grays) == pytest.approx(np.hypot(gray_lab[..., 1], gray_lab[..., 2]).mean(), abs=1e-6)
    # skimage's D65 white (0.95047, 1, 1.08883) is not exactly the row sums of its sRGB matrix, so neutral gray
    # has a chroma of up to 0.005 there (and in zoo.color, which matches it): far below the threshold.
    assert mean_chroma(grays) < 0.01 * MIN_CHROMA


def test_threshold_separates_the_gray_photo_from_all_colour_photos():
    report = scan_images(resolve_source(str(PHOTOS)))
    assert [(p.name, r.partition(":")[0]) for p, r in report.skipped] == [(GRAY_PHOTO, "grayscale")]
    assert len(report.ok) == 119


def test_sample_is_the_310_colour_photos_with_attribution():
    paths = resolve_source("sample")
    assert len(paths) == 310 and paths == sorted(paths)
    first = [p for p in paths if p.parent == SAMPLE_DIR]
    extra = resolve_source("sample-extra")
    assert len(first) == 119 and extra == [p for p in paths if p.parent == EXTRA_DIR] and len(extra) == 191
    assert all(p.suffix == ".jpg" for p in paths)
    rows = (SAMPLE_DIR / "ATTRIBUTION.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["file", "debian_package", "original_path", "license"]
    assert sorted(row.split("\t")[0] for row in rows[1:]) == [p.name for p in first]
    manifest = [row.split("\t") for row in (EXTRA_DIR / "MANIFEST.tsv").read_text().splitlines()]
    assert manifest[0][:8] == ["file", "package", "package_version", "original_path", "original_width",
                               "original_height", "licence", "author_or_copyright"]
    assert sorted(row[0] for row in manifest[1:]) == [p.name for p in extra]
    assert all(row[6] and row[7] for row in manifest[1:])  # every photo has a licence and an author
    report = scan_images(paths, image_size=256)
    assert len(report.ok) == 310 and not report.skipped
    assert report.counts == {"upscaled": 24}  # 20 icons of 96 px, 3 of 254 px, 1 of 194 px


def heldout_draw() -> list[str]:
    """The 30 photos of extra/ that heldout.txt's header says were drawn: each package's share of 30 by largest
    remainder (ties by name), then random.Random(20261206).sample of its sorted names, packages in name order."""
    rows = [row.split("\t") for row in (EXTRA_DIR / "MANIFEST.tsv").read_text().splitlines()[1:]]
    packages: dict[str, list[str]] = {}
    for row in rows:
        packages.setdefault(row[1], []).append(row[0])
    share = {name: 30 * len(files) / len(rows) for name, files in packages.items()}
    count = {name: math.floor(value) for name, value in share.items()}
    for name in sorted(share, key=lambda n: (count[n] - share[n], n))[:30 - sum(count.values())]:
        count[name] += 1
    rng = random.Random(20261206)
    return [name for package in sorted(packages) for name in rng.sample(sorted(packages[package]), count[package])]


def test_heldout_is_the_first_20_and_30_drawn_from_every_package_of_the_second_set():
    lines = [line for line in HELDOUT_LIST.read_text().splitlines() if line and not line.startswith("#")]
    first, drawn = lines[:20], lines[20:]
    assert all("/" not in line for line in first) and drawn == [f"extra/{name}" for name in heldout_draw()]
    assert resolve_source("heldout") == sorted(SAMPLE_DIR / line for line in lines) and len(lines) == 50


def gradient_signature(path: Path) -> np.ndarray:
    """The standardised finite differences of a 48 x 48 centre crop (gray, bilinear): frames of one scene
    correlate, photos that merely share a sky and a horizon do not."""
    image = Image.open(path).convert("L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    pixels = np.asarray(image.crop((left, top, left + side, top + side)).resize((48, 48), Image.BILINEAR), float)
    signature = np.concatenate([np.diff(pixels, axis=1)[:-1].ravel(), np.diff(pixels, axis=0)[:, :-1].ravel()])
    return (signature - signature.mean()) / signature.std()


def test_no_training_photo_is_a_near_copy_of_a_held_out_one():
    """The labelme frames beside held-out 00000101 and 00000103 correlate 0.65 to 0.74 with them; every other pair
    of the sample at most 0.31. near-copies.txt keeps those frames out of every training source."""
    held, train = resolve_source("heldout"), resolve_source("sample-train")
    near = [SAMPLE_DIR / line for line in NEAR_COPIES_LIST.read_text().splitlines() if line and line[0] != "#"]
    signatures = {p: gradient_signature(p) for p in [*held, *train, *near]}
    closest = max(float(signatures[h] @ signatures[t]) / signatures[h].size for h in held for t in train)
    assert closest < 0.5
    copies = [max(float(signatures[n] @ signatures[h]) / signatures[h].size for h in held) for n in near]
    assert min(copies) > 0.6 and not set(near) & set(train) and set(near) < set(resolve_source("sample"))


# SHA-256 of the sorted file names (each + "\n") of the fold lists the model cards' fold figures are made with.
CARD_FOLDS = {
    0: "86be8f5201162d03731747cc1843a88277909c4c3446e16411e164385acbfd3b",
    1: "028ed8441c91de0877d463bd56a10c9ef0ec7f86dcd17858d1489004362dbb75",
    2: "0153460c4f456d502402e4024ec8ddcfe7107fac172b7537775e5fad0ea0abad",
}


def test_sample_folds_partition_sample_train_as_the_model_cards_use_them():
    train, held = resolve_source("sample-train"), set(resolve_source("heldout"))
    assert len(train) == 257 and not held & set(train)
    folds = [resolve_source(f"sample-fold{i}") for i in range(3)]
    assert [len(f) for f in folds] == [86, 86, 85] and sorted(p for f in folds for p in f) == train
    for i, fold in enumerate(folds):
        rest = resolve_source(f"sample-fold{i}-train")
        assert rest == sorted(set(train) - set(fold)) and len(rest) == 257 - len(fold)
        names = "".join(sorted(p.relative_to(SAMPLE_DIR).as_posix() + "\n" for p in fold))
        assert hashlib.sha256(names.encode()).hexdigest() == CARD_FOLDS[i]
    with pytest.raises(SourceError, match=r"unknown image source 'sample-fold3'.*sample-fold0 \.\. sample-fold2"):
        resolve_source("sample-fold3")


# ---------------------------------------------------------------------------------------------------- sources


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ["a.jpg", "sub/B.JPG", "sub/deeper/c.png", "sub/d.webp", "notes.txt", "sub/e.jpg.bak"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


def test_folder_source_is_recursive_and_case_insensitive(tree):
    expected = sorted(tree / r for r in ["a.jpg", "sub/B.JPG", "sub/deeper/c.png", "sub/d.webp"])
    assert resolve_source(str(tree)) == expected


def test_glob_source(tree):
    assert resolve_source(str(tree / "**" / "*.png")) == [tree / "sub/deeper/c.png"]
    assert resolve_source(str(tree / "sub" / "*")) == [tree / "sub/B.JPG", tree / "sub/d.webp"]


def test_list_file_source(tree):
    listing = tree / "sub" / "list.txt"
    listing.write_text(f"# training photos\n\nd.webp\n  deeper/c.png  \n{tree / 'a.jpg'}\n# ../a.jpg\n")
    assert resolve_source(str(listing)) == sorted([tree / "sub/d.webp", tree / "sub/deeper/c.png", tree / "a.jpg"])


def test_unknown_source_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError) as info:
        resolve_source(str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "nowhere" in message and "a folder, a glob, a list file or a dataset name" in message
    assert "coco-10k" in message and "\n" not in message


def test_empty_sources_raise_before_training(tmp_path, bad_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyDatasetError, match=r"^no usable images in 'empty/': no image files found$"):
        scan_images(resolve_source(str(tmp_path / "empty")), source="empty/")
    bad_only = [bad_dir / "truncated.jpg", bad_dir / "text.jpg", bad_dir / GRAY_PHOTO, bad_dir / "gray16.png"]
    with pytest.raises(EmptyDatasetError) as info:
        scan_images(bad_only, source="x/")
    assert str(info.value) == "no usable images in 'x/': 2 grayscale, 1 corrupt, 1 not an image"


# ---------------------------------------------------------------------------------------------------- scan cache


def test_scan_cache_skips_unchanged_files(tmp_path, bad_dir, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ["good.jpg", "text.jpg", "cmyk.jpg"]:
        (photos / name).write_bytes((bad_dir / name).read_bytes())
    cache = tmp_path / "cache"
    first = scan_images(resolve_source(str(photos)), cache_dir=cache)
    assert (cache / data.SCAN_CACHE).exists()

    judged: list[str] = []
    real_judge = data._judge
    monkeypatch.setattr(data, "_judge", lambda p, *a: judged.append(p.name) or real_judge(p, *a))
    again = scan_images(resolve_source(str(photos)), cache_dir=cache)
    assert judged == [] and again == first

    (photos / "text.jpg").write_bytes((bad_dir / "good.jpg").read_bytes())  # size and mtime change
    changed = scan_images(resolve_source(str(photos)), cache_dir=cache)
    assert judged == ["text.jpg"] and len(changed.ok) == 3

    scan_images(resolve_source(str(photos)), cache_dir=cache, min_chroma=2.0)  # other thresholds: a fresh scan
    assert sorted(judged[1:]) == ["cmyk.jpg", "good.jpg", "text.jpg"]


# ---------------------------------------------------------------------------------------------------- split


def test_split_is_seeded_and_ignores_input_order():
    paths = [Path(f"p/{i:03d}.jpg") for i in range(119)]
    train, val = split_paths(paths, 0.1, seed=0)
    shuffled = paths[:]
    random.Random(1).shuffle(shuffled)
    assert split_paths(shuffled, 0.1, seed=0) == (train, val)
    assert len(val) == 12 and len(train) == 107
    assert sorted(train + val) == paths and not set(train) & set(val)
    assert split_paths(paths, 0.1, seed=1)[1] != val
    assert [len(v) for _, v in (split_paths(paths[:n], 0.1) for n in (1, 2, 3))] == [0, 1, 1]
    assert split_paths(paths[:2], 0.0) == (paths[:2], [])


# ---------------------------------------------------------------------------------------------------- sampler


def test_sampler_is_a_seeded_permutation_per_epoch():
    epoch0 = list(EpochSampler(50, seed=7, epoch=0))
    assert epoch0 == list(EpochSampler(50, seed=7, epoch=0))
    assert sorted(i for i, _ in epoch0) == list(range(50))
    assert [i for i, _ in epoch0] != list(range(50))
    epoch1 = list(EpochSampler(50, seed=7, epoch=1))
    assert [i for i, _ in epoch1] != [i for i, _ in epoch0]
    assert len({s for _, s in epoch0} | {s for _, s in epoch1}) == 100  # item seeds differ across positions and epochs
    moved = EpochSampler(50, seed=7, epoch=0)
    moved.set_epoch(1)
    assert list(moved) == epoch1
    assert [i for i, _ in EpochSampler(5, seed=7, shuffle=False)] == [0, 1, 2, 3, 4]


def test_sampler_shards_like_distributed_sampler():
    ranks = [list(EpochSampler(7, seed=3, epoch=2, rank=r, world_size=2)) for r in range(2)]
    assert [len(r) for r in ranks] == [4, 4]  # padded to equal length
    assert not {s for _, s in ranks[0]} & {s for _, s in ranks[1]}  # disjoint positions
    assert {i for r in ranks for i, _ in r} == set(range(7))  # covering
    single = list(EpochSampler(7, seed=3, epoch=2))
    interleaved = [pair for pairs in zip(*ranks) for pair in pairs]
    assert interleaved[:7] == single  # same order and item seeds whatever the world size
    assert interleaved[7][0] == single[0][0]  # padding wraps round


def test_sampler_start_skips_consumed_samples():
    full = list(EpochSampler(20, seed=1, epoch=4, rank=1, world_size=3))
    resumed = EpochSampler(20, seed=1, epoch=4, start=5, rank=1, world_size=3)
    assert len(resumed) == len(full) - 5 and list(resumed) == full[5:]
    assert list(EpochSampler(20, seed=1, start=99)) == []


# ---------------------------------------------------------------------------------------------------- dataset


def test_val_items_are_the_deterministic_centre_crop():
    dataset = ColorizationDataset([PHOTOS / DOG], 128, train=False)
    item = dataset[(0, 1)]
    assert item.dtype == torch.uint8 and item.shape == (3, 128, 128)
    assert torch.equal(item, dataset[(0, 2)]) and torch.equal(item, dataset[0])
    got = item.permute(1, 2, 0).numpy().astype(int)
    photo = Image.open(PHOTOS / DOG).convert("RGB")

    def distance(x_centring: float) -> float:
        fitted = ImageOps.fit(photo, (128, 128), Image.Resampling.BICUBIC, centering=(x_centring, 0.5))
        return float(np.abs(got - np.asarray(fitted)).mean())

    assert distance(0.5) < 5  # the centre window (independently resampled, so not bit-equal)
    assert min(distance(0.45), distance(0.55)) > 2.5 * distance(0.5)  # windows 5% off centre are far worse


def test_train_items_are_reproducible_random_crops_and_flips():
    size = 64
    load = round(size * 286 / 256)  # 72
    square = [PHOTOS / GIRAFFE]  # 320x320: the val view at the load size is the whole resized image
    whole = ColorizationDataset(square, load, train=False)[0].numpy()
    train = ColorizationDataset(square, size, train=True)
    windows = set()
    for seed in range(12):
        item = train[(0, seed)]
        assert item.dtype == torch.uint8 and item.shape == (3, size, size)
        assert torch.equal(item, ColorizationDataset(square, size, train=True)[(0, seed)])  # any process, same key
        crop = item.numpy()
        windows_of_whole = {
            (x, y, flip): window[:, :, ::-1] if flip else window
            for y in range(load - size + 1)
            for x in range(load - size + 1)
            for flip in (False, True)
            for window in [whole[:, y : y + size, x : x + size]]
        }
        matches = [key for key, window in windows_of_whole.items() if np.array_equal(crop, window)]
        assert matches, f"seed {seed}: not a window of the resized image"
        windows.add(matches[0])
    assert len({(x, y) for x, y, _ in windows}) >= 6
    assert {flip for _, _, flip in windows} == {False, True}


def test_random_resized_boxes_follow_torchvisions_rule():
    """Area fraction within the scale, aspect ratio within [3/4, 4/3], inside the image, seeded."""
    generator = torch.Generator().manual_seed(0)
    areas, ratios = [], []
    for _ in range(400):
        left, top, right, bottom = data.random_resized_box((427, 320), (0.25, 1.0), generator)
        assert 0 <= left < right <= 427 and 0 <= top < bottom <= 320
        w, h = right - left, bottom - top
        areas.append(w * h / (427 * 320))
        ratios.append(w / h)
    # rounding to whole pixels moves a fraction by at most (w + h + 1) / area
    assert 0.25 - 0.01 <= min(areas) and max(areas) <= 1.0
    assert 3 / 4 - 0.02 <= min(ratios) and max(ratios) <= 4 / 3 + 0.02
    assert np.std(areas) > 0.15  # spread over the range, not stuck at one size
    again = torch.Generator().manual_seed(0)
    assert data.random_resized_box((427, 320), (0.25, 1.0), again) == data.random_resized_box(
        (427, 320), (0.25, 1.0), torch.Generator().manual_seed(0))
    # a box that cannot fit (a 10:1 strip at full area) falls back to the centred largest box of an allowed ratio
    assert data.random_resized_box((1000, 100), (1.0, 1.0), generator) == (433, 0, 566, 100)


def test_random_resized_crops_are_the_box_resized(tmp_path):
    """The item equals PIL's crop of the drawn box, resized to S (bicubic), flipped when drawn so."""
    size, scale = 48, (0.3, 0.9)
    path = PHOTOS / DOG
    dataset = ColorizationDataset([path], size, train=True, crop_scale=scale)
    assert dataset.load_size == math.ceil(size / math.sqrt(0.3))  # 88: the smallest box keeps 48 px a side
    image = data.load_rgb(path, min_short_side=dataset.load_size)
    flips = set()
    for seed in range(8):
        generator = torch.Generator().manual_seed(seed)
        box = data.random_resized_box(image.size, scale, generator)
        flip = bool(torch.rand(1, generator=generator) < 0.5)
        expected = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
        if flip:
            expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        assert np.array_equal(dataset[(0, seed)].permute(1, 2, 0).numpy(), np.asarray(expected))
        flips.add(flip)
    assert flips == {False, True}
    with pytest.raises(ValueError, match="crop_scale"):
        ColorizationDataset([path], size, train=True, crop_scale=(0.5, 0.2))


def test_file_broken_after_scan_is_replaced_by_the_next(tmp_path):
    broken = tmp_path / "broken.jpg"
    raw = (PHOTOS / DOG).read_bytes()
    broken.write_bytes(raw[: len(raw) // 2])
    dataset = ColorizationDataset([PHOTOS / DOG, broken, PHOTOS / GIRAFFE], 32, train=True)
    with pytest.warns(RuntimeWarning, match="broken.jpg: corrupt: .*using the next image"):
        substitute = dataset[(1, 9)]
    assert torch.equal(substitute, dataset[(2, 9)])
    assert dataset.failed == {broken}


def test_loader_batches_match_the_items_in_sampler_order():
    paths = resolve_source("sample")[:10]
    dataset = ColorizationDataset(paths, 48, train=True)
    sampler = EpochSampler(len(paths), seed=5, epoch=1)
    loader = make_loader(dataset, 4, sampler=sampler, workers=2, drop_last=True)
    batches = list(loader)
    assert [b.shape for b in batches] == [(4, 3, 48, 48)] * 2 and batches[0].dtype == torch.uint8
    expected = torch.stack([dataset[key] for key in list(sampler)[:8]])
    assert torch.equal(torch.cat(batches), expected)


def test_loader_defaults():
    dataset = ColorizationDataset([Path("unused.jpg")], 32, train=False)
    loader = make_loader(dataset, 2, sampler=EpochSampler(1, 0))
    assert loader.num_workers == min(4, os.cpu_count() or 1)
    assert loader.persistent_workers and loader.prefetch_factor == 2 and not loader.pin_memory and not loader.drop_last
    cuda = make_loader(dataset, 2, sampler=EpochSampler(1, 0), workers=0, device_type="cuda")
    assert cuda.pin_memory and not cuda.persistent_workers and cuda.num_workers == 0
