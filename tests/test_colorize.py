"""`zoo colorize` and zoo.colorize on real photos turned into every input kind: gray, RGB, RGBA, 16-bit,
EXIF-rotated, JPEG/PNG/WebP/TIFF, folders and globs, corrupt files, existing outputs, a 24-megapixel photo,
missing and wrong checkpoints."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from zoo.checkpoint import CheckpointError
from zoo.cli.inference import colorize as colorize_command
from zoo.color import rgb_to_lab
from zoo.colorizer import (
    AbResizer,
    Colorizer,
    NoCheckpointError,
    colorize,
    missing_checkpoint_message,
    working_shape,
)
from zoo.spec import get_spec, size_multiple
from zoo.train import TrainOptions, train

DOG = "darknet--dog.jpg"  # 427x320
GIRAFFE = "darknet--giraffe.jpg"  # 320x320


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simple-cnn checkpoint trained two steps at 64 px (working size 64, multiple 16)."""
    run = tmp_path_factory.mktemp("colorize-run") / "run"
    options = TrainOptions(out=run, max_steps=2, image_size=64, batch_size=4, workers=0, progress=False)
    train("simple-cnn", options, echo=lambda s: None)
    return run / "generator.safetensors"


@pytest.fixture(scope="module")
def colorizer(trained: Path) -> Colorizer:
    return Colorizer.from_checkpoint(trained, "simple-cnn", device="cpu")


def lightness(rgb: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """CIE L (H, W) of RGB (H, W, 3) integer pixels, in float64."""
    tensor = torch.from_numpy(rgb.astype(np.float64) / scale).permute(2, 0, 1)
    return rgb_to_lab(tensor)[0].numpy()


def gray_lightness(gray: np.ndarray, scale: float) -> np.ndarray:
    return lightness(np.repeat(gray[..., None], 3, axis=-1), scale)


def read_png16(path: Path) -> np.ndarray:
    """The pixels of a 16-bit RGB PNG whose rows use filter 0 (what zoo writes), as uint16 (H, W, 3)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color_type = header[:4]
    assert (depth, color_type) == (16, 2)
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * 6)
    assert not rows[:, 0].any()
    return rows[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(np.uint16)


# ------------------------------------------------------------------------------------------- geometry


def test_size_multiple_is_the_declared_geometry():
    def multiple(model: str, **settings: object) -> int:
        return size_multiple(get_spec(model).with_overrides(generator=settings))

    assert multiple("simple-cnn", width=8) == 16
    assert multiple("simple-cnn", width=8, depth=2) == 4
    assert multiple("pix2pix-unet-gan", ngf=4, num_downs=6) == 64
    assert multiple("unet-resnet18") == 32


def test_working_shape_keeps_aspect_and_rounds_to_the_multiple():
    assert working_shape((6000, 4000), 256, 32) == (384, 256)
    assert working_shape((4000, 6000), 256, 32) == (256, 384)
    assert working_shape((427, 320), 64, 16) == (80, 64)
    assert working_shape((100, 100), 250, 32) == (256, 256)
    assert working_shape((5000, 20), 64, 16) == (16000, 64)


@pytest.mark.parametrize(("small", "full"), [((7, 9), (40, 53)), ((32, 48), (20, 30)), ((16, 16), (16, 16))])
def test_ab_resized_strip_by_strip_equals_one_resize(small, full):
    ab = torch.randn(2, *small, generator=torch.Generator().manual_seed(1))
    resizer = AbResizer(ab, *full)
    strips = [resizer.strip(top, min(top + 3, full[0])) for top in range(0, full[0], 3)]  # three rows a strip
    expected = F.interpolate(ab[None], size=full, mode="bilinear", align_corners=False, antialias=True)[0]
    torch.testing.assert_close(torch.cat(strips, dim=1), expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- input kinds


@pytest.fixture(scope="module")
def inputs(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input kind, made from real photos, in a folder with a subfolder."""
    root = tmp_path_factory.mktemp("inputs") / "in"
    (root / "sub").mkdir(parents=True)
    dog = Image.open(photos_dir / DOG).convert("RGB")
    giraffe = Image.open(photos_dir / GIRAFFE).convert("RGB")
    alpha = Image.linear_gradient("L").resize(dog.size)
    rgba = dog.copy()
    rgba.putalpha(alpha)
    gray16 = (np.asarray(dog.convert("L"), dtype=np.float64) * 257 + np.linspace(0, 200, dog.width)).clip(0, 65535)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "ZooCam"
    paths = {
        "gray_jpeg": root / "gray.jpg",
        "rgb_png": root / "rgb.png",
        "rgba_png": root / "sub" / "rgba.png",
        "rgba_webp": root / "rgba.webp",
        "rgb_tiff": root / "sub" / "rgb.tiff",
        "gray16_png": root / "gray16.png",
        "gray16_tiff": root / "gray16.tif",
        "rotated_jpeg": root / "rotated.jpg",
        "cmyk_jpeg": root / "cmyk.jpeg",
    }
    dog.convert("L").save(paths["gray_jpeg"], quality=95)
    giraffe.save(paths["rgb_png"])
    rgba.save(paths["rgba_png"])
    rgba.save(paths["rgba_webp"], lossless=True)
    giraffe.save(paths["rgb_tiff"])
    Image.fromarray(gray16.astype(np.uint16)).save(paths["gray16_png"])
    Image.fromarray(gray16.astype(np.uint16)).save(paths["gray16_tiff"])
    dog.save(paths["rotated_jpeg"], exif=exif, quality=95)
    dog.convert("CMYK").save(paths["cmyk_jpeg"], quality=95)
    return paths


@pytest.fixture(scope="module")
def outputs(colorizer: Colorizer, inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("outputs")
    root = inputs["rgb_png"].parent
    summary = colorizer.colorize_files([root], out, batch_size=3, echo=pytest.fail)
    assert not summary.failed and not summary.existing
    assert len(summary.written) == len(inputs)
    return {kind: out / path.relative_to(root) for kind, path in inputs.items()}


FORMATS = {
    "gray_jpeg": "JPEG", "rgb_png": "PNG", "rgba_png": "PNG", "rgba_webp": "WEBP", "rgb_tiff": "TIFF",
    "gray16_png": "PNG", "gray16_tiff": "TIFF", "rotated_jpeg": "JPEG", "cmyk_jpeg": "JPEG",
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_output_keeps_size_format_and_lightness(inputs, outputs, kind):
    source, result = Image.open(inputs[kind]), Image.open(outputs[kind])
    assert result.format == FORMATS[kind]
    expected_size = source.size[::-1] if kind == "rotated_jpeg" else source.size
    assert result.size == expected_size
    assert result.mode in ("RGB", "RGBA")
    if kind == "gray16_png":
        return  # checked at 16 bits below
    if kind.startswith("gray16"):
        truth = gray_lightness(np.asarray(source).astype(np.float64), 65535.0)
    elif kind == "rotated_jpeg":
        truth = lightness(np.asarray(source.convert("RGB").transpose(Image.Transpose.ROTATE_270)))
    else:
        truth = lightness(np.asarray(source.convert("RGB")))
    got = np.asarray(result.convert("RGB"))
    visible = np.asarray(source.getchannel("A")) > 0 if "A" in source.getbands() else slice(None)
    error = np.abs(lightness(got) - truth)[visible]  # lossy WebP may drop colour under alpha 0
    lossy = FORMATS[kind] in ("JPEG", "WEBP") or kind == "gray16_tiff"  # re-encoded, or 16 -> 8 bits
    assert error.mean() < (1.0 if lossy else 0.35), error.mean()
    if kind != "gray_jpeg":  # the output has colour: some chroma, not a gray copy
        assert np.abs(got.astype(int) - got.mean(-1, keepdims=True)).max() > 0


def test_alpha_is_kept_exactly(inputs, outputs):
    for kind in ("rgba_png", "rgba_webp"):
        result = Image.open(outputs[kind])
        assert result.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(result.getchannel("A")), np.asarray(Image.open(inputs[kind]).getchannel("A")))


def test_exif_rotated_photo_comes_out_upright_without_orientation_tag(inputs, outputs):
    result = Image.open(outputs["rotated_jpeg"])
    exif = result.getexif()
    assert 0x0112 not in exif
    assert exif.get(0x010F) == "ZooCam"  # the other tags stay


def test_sixteen_bit_gray_png_gives_sixteen_bit_rgb_with_its_full_lightness(inputs, outputs):
    pixels = read_png16(outputs["gray16_png"])
    # An independent decoder (PIL reads 16-bit RGB at 8 bits) sees the same picture.
    np.testing.assert_array_equal(np.asarray(Image.open(outputs["gray16_png"])), (pixels >> 8).astype(np.uint8))
    gray = np.asarray(Image.open(inputs["gray16_png"])).astype(np.float64)
    truth = gray_lightness(gray, 65535.0)
    got = lightness(pixels, 65535.0)
    mid = (truth > 15) & (truth < 85)  # away from black and white, where out-of-gamut colours clip
    assert mid.mean() > 0.5
    # 16-bit output keeps L to ~0.01; 8-bit output would be off by up to ~0.2.
    assert np.abs(got - truth)[mid].max() < 0.03
    assert np.abs(gray_lightness(np.round(gray / 257), 255.0) - truth)[mid].max() > 0.1


def test_files_equal_the_python_api_and_do_not_depend_on_batching(colorizer, inputs, outputs, tmp_path):
    for kind in ("rgb_png", "rgba_png"):
        np.testing.assert_array_equal(np.asarray(Image.open(outputs[kind])), np.asarray(colorizer(inputs[kind])))
    alone = colorizer.colorize_files([inputs["rgb_png"]], tmp_path, batch_size=1, echo=pytest.fail)
    assert alone.written == [(inputs["rgb_png"], tmp_path / "rgb.png")]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), np.asarray(Image.open(outputs["rgb_png"])))


def test_python_api_colorizes_pil_images_and_paths(colorizer, trained, photos_dir):
    photo = Image.open(photos_dir / DOG)
    by_path = colorize(photos_dir / DOG, model="simple-cnn", checkpoint=trained, device="cpu")
    assert isinstance(by_path, Image.Image) and by_path.size == photo.size and by_path.mode == "RGB"
    reused = colorize(photo, model=colorizer)
    np.testing.assert_array_equal(np.asarray(reused), np.asarray(colorizer(photo)))
    gray = colorize(photo.convert("L"), model=colorizer)
    assert gray.mode == "RGB" and gray.size == photo.size
    with pytest.raises(NoCheckpointError, match="zoo train simple-cnn"):
        colorize(photo, model="simple-cnn")


def test_globs_and_explicit_files(colorizer, inputs, tmp_path):
    root = inputs["rgb_png"].parent
    summary = colorizer.colorize_files([str(root / "**" / "*.png"), inputs["gray_jpeg"]], tmp_path, echo=pytest.fail)
    written = sorted(out.name for _, out in summary.written)
    assert written == ["gray.jpg", "gray16.png", "rgb.png", "rgba.png"]


# ------------------------------------------------------------------------------------------- problems


def test_corrupt_files_are_reported_in_one_line_and_the_rest_go_on(trained, photos_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = (photos_dir / DOG).read_bytes()
    (src / "good.jpg").write_bytes(good)
    (src / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (src / "empty.png").write_bytes(b"")
    (src / "notes.webp").write_text("not an image\n")
    xpm = tmp_path / "icon.xpm"  # PIL reads XPM but cannot write it
    xpm.write_text('/* XPM */\nstatic char *icon[] = {\n"2 2 2 1",\n"a c #FF0000",\n"b c #0000FF",\n"ab",\n"ba"\n};\n')
    runner = CliRunner()
    args = [str(src), str(tmp_path / "missing.jpg"), str(xpm), "--model", "simple-cnn", "--checkpoint", str(trained),
            "--out", str(tmp_path / "out"), "--no-progress"]
    result = runner.invoke(colorize_command, args)
    assert result.exit_code == 1, result.output
    assert (tmp_path / "out" / "good.jpg").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.jpg"]  # no half-written files
    problems = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(problems) == 5, result.stderr
    for name, reason in [("truncated.jpg", "corrupt"), ("empty.png", "not an image"), ("notes.webp", "not an image"),
                         ("missing.jpg", "missing"), ("icon.xpm", "cannot write XPM files")]:
        assert any(name in line and reason in line for line in problems), (name, problems)
    assert "colorized 1 image(s)" in result.stdout and "5 failed" in result.stdout


def test_existing_outputs_are_skipped_unless_overwrite(trained, inputs, tmp_path):
    args = [str(inputs["rgb_png"]), str(inputs["gray_jpeg"]), "--checkpoint", str(trained), "--out", str(tmp_path),
            "--no-progress"]
    runner = CliRunner()
    assert runner.invoke(colorize_command, args).exit_code == 0
    (tmp_path / "rgb.png").write_bytes(b"kept")
    again = runner.invoke(colorize_command, args)
    assert again.exit_code == 0
    assert "skipped 2 existing output(s)" in again.stdout and "colorized 0 image(s)" in again.stdout
    assert (tmp_path / "rgb.png").read_bytes() == b"kept"
    forced = runner.invoke(colorize_command, [*args, "--overwrite"])
    assert forced.exit_code == 0 and "colorized 2 image(s)" in forced.stdout
    assert Image.open(tmp_path / "rgb.png").size == Image.open(inputs["rgb_png"]).size


def test_without_checkpoint_the_message_says_to_train_first(inputs, tmp_path):
    result = CliRunner().invoke(colorize_command, [str(inputs["rgb_png"]), "--model", "unet-resnet18", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "zoo train unet-resnet18" in result.output and "--checkpoint" in result.output
    assert not list(tmp_path.iterdir())


def test_without_checkpoint_the_newest_local_run_is_named(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for age, stamp in enumerate(("20261102-100000", "20261101-100000")):
        weights = tmp_path / "runs" / f"simple-cnn-{stamp}" / "generator.safetensors"
        weights.parent.mkdir(parents=True)
        weights.write_bytes(b"")
        os.utime(weights, (1e9 - age, 1e9 - age))
    message = missing_checkpoint_message("simple-cnn")
    assert "zoo train simple-cnn" in message
    assert message.endswith("found runs/simple-cnn-20261102-100000/generator.safetensors")
    assert "found" not in missing_checkpoint_message("unet-resnet18")


def test_checkpoint_of_another_architecture_is_refused_naming_both(trained, inputs, tmp_path):
    result = CliRunner().invoke(
        colorize_command, [str(inputs["rgb_png"]), "--model", "unet-resnet18", "--checkpoint", str(trained), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "simple-cnn" in result.output and "unet-resnet18" in result.output and "smp-unet" in result.output
    with pytest.raises(CheckpointError, match="not one of model 'pix2pix-unet-gan'"):
        colorize(inputs["rgb_png"], model="pix2pix-unet-gan", checkpoint=trained)


def test_working_size_is_the_checkpoints_training_size(colorizer, trained):
    assert get_spec("simple-cnn").stages[-1].image_size == 256
    assert (colorizer.size, colorizer.multiple) == (64, 16)  # the run's own size wins over the registry's
    assert Colorizer.from_checkpoint(trained, size=100, device="cpu").working_shape((427, 320)) == (128, 96)


# ------------------------------------------------------------------------------------------- 24 megapixels

_BIG_RUN = """
import json, sys, time
from pathlib import Path
from zoo.colorizer import Colorizer

def status(key):
    return next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith(key))

colorizer = Colorizer.from_checkpoint(sys.argv[1], device="cpu")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS:")
start = time.perf_counter()
summary = colorizer.colorize_files([sys.argv[2]], Path(sys.argv[3]))
print(json.dumps({"written": len(summary.written), "seconds": round(time.perf_counter() - start, 2),
                  "rss_before_mb": round(before), "peak_rss_mb": round(status("VmHWM:"))}))
"""


def test_24_megapixel_photo_in_bounded_memory(trained, photos_dir, tmp_path):
    big = tmp_path / "big.jpg"
    Image.open(photos_dir / DOG).convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC).save(big, quality=90)
    run = subprocess.run([sys.executable, "-c", _BIG_RUN, str(trained), str(big), str(tmp_path / "out")],
                         capture_output=True, text=True, check=True)
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"24 MP: {facts}")
    assert facts["written"] == 1
    result = Image.open(tmp_path / "out" / "big.jpg")
    assert result.size == (6000, 4000) and result.format == "JPEG"
    # Source and output at 4 bytes a pixel are ~190 MB; one full-size float32 Lab copy alone would add 290 MB.
    assert facts["peak_rss_mb"] - facts["rss_before_mb"] < 450, facts
    center = np.asarray(result.crop((2900, 1900, 3100, 2100)))
    truth = np.asarray(Image.open(big).crop((2900, 1900, 3100, 2100)))
    assert np.abs(lightness(center) - lightness(truth)).mean() < 1.0
