"""Image files in and out: decoding (EXIF orientation, every PIL mode, 16-bit data) and writing outputs.

One path in for training and scoring, :func:`load_rgb` (upright 8-bit RGB); one for colorizing,
:func:`read_source` (upright, keeping gray, alpha and 16 bits); every failure to open or decode is a
:class:`BadImageError` naming the file. Outputs are written atomically in the input's format family
(:func:`write_image`; :func:`write_png16` for 16-bit RGB, row strips at a time), sample grids (gray | model |
truth) by :func:`write_sample_grid`.
"""

from __future__ import annotations

import contextlib
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.color import lab_normalized_to_rgb
from zoo.errors import ZooError, one_line
from zoo.files import atomic_write

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
# image types a folder may hold that the zoo does not read: listed as skipped, not passed over in silence
UNREAD_IMAGE_EXTENSIONS = frozenset({".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ico", ".svg", ".psd",
                                     ".xcf", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts",
                              ".wmv", ".flv", ".ogv", ".3gp"})  # colorized by zoo.video, frame by frame
MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb limit
ORIENTATION = 0x0112  # the EXIF orientation tag
SWAPS_AXES = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image a quarter
SINGLE_CHANNEL_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
SIXTEEN_BIT_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE = (255, 255, 255, 255)
_FORMAT_FAMILY = {"MPO": "JPEG"}  # multi-picture JPEGs from cameras are written as plain JPEG
_EXIF_FORMATS = {"JPEG", "PNG", "WEBP"}  # EXIF as a block of its own (a TIFF's tags describe its own pixels)
_SAVE_OPTIONS = {
    "JPEG": {"quality": 95},
    "WEBP": {"quality": 95},
    "TIFF": {"compression": "tiff_deflate"},
}
GRID_PADDING = 2  # pixels between and around the panels of a sample grid


class BadImageError(ZooError, ValueError):
    """A file that cannot be used as a photo; ``reason`` is ``"category"`` or ``"category: detail"``."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    @property
    def category(self) -> str:
        """The kind of problem: corrupt, not an image, missing or too large."""
        return self.reason.partition(":")[0]


def is_image_name(path: Path) -> bool:
    """Whether ``path`` has one of the :data:`IMAGE_EXTENSIONS` (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_video_name(path: Path) -> bool:
    """Whether ``path`` has one of the :data:`VIDEO_EXTENSIONS` (any case)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


@contextlib.contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` as a context; any failure inside the block is a ``BadImageError`` naming the file.

    PIL's decompression-bomb warning is silenced: callers apply their own pixel limit.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            yield image
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "missing") from None
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image") from None
    except Image.DecompressionBombError as err:
        raise BadImageError(path, f"too large: {err}") from None
    except Exception as err:  # noqa: BLE001 - on bad data PIL raises OSError, SyntaxError, ValueError, ...
        raise BadImageError(path, f"corrupt: {one_line(err)}") from None


# ---------------------------------------------------------------------------------------------------- 8-bit RGB


@dataclass(frozen=True)
class Decoded:
    """An image decoded for training or scanning."""

    image: Image.Image  # RGB, upright; possibly at reduced scale
    size: tuple[int, int]  # full-scale (width, height), upright
    mode: str  # the file's own mode
    fixes: tuple[str, ...]  # what was adjusted: "converted", "alpha dropped", "rotated"


def load_rgb(path: Path | str, *, min_short_side: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file to an upright 8-bit RGB PIL image.

    EXIF orientation is applied; CMYK, palette, YCbCr and gray modes are converted; 16-bit data is scaled to 8
    bits (high byte) rather than clipped; transparency is composited on white. With ``min_short_side``, a JPEG
    is decoded at a reduced DCT scale whose short side is still at least that. Raises ``BadImageError`` for
    missing, non-image, corrupt or truncated files and for more than ``max_pixels`` pixels (never decoded).
    """
    return decode_rgb(Path(path), min_short_side, max_pixels).image


def decode_rgb(path: Path, min_short_side: int | None = None, max_pixels: int = MAX_PIXELS) -> Decoded:
    """:func:`load_rgb` with what the file was and what decoding adjusted."""
    with open_image(path) as image:
        width, height = image.size
        if width * height > max_pixels:
            pixels = f"{width}x{height} = {width * height:,} pixels > {max_pixels:,}"
            raise BadImageError(path, f"too large: {pixels} (decompression bomb guard)")
        mode = image.mode
        deep = any(";16" in str(tile.args) for tile in image.tile)  # 16 bits a sample, e.g. raw mode "RGB;16B"
        if min_short_side and image.format == "JPEG":
            image.draft("RGB", short_side_size((width, height), min_short_side))
        image.load()
        orientation = image.getexif().get(ORIENTATION, 1)
        ImageOps.exif_transpose(image, in_place=True)
        rgb, fixes = _to_rgb(image, deep)  # always a new image: ``image`` is closed on leaving the block
    if orientation in SWAPS_AXES:
        width, height = height, width
    if orientation not in (0, 1):
        fixes = (*fixes, "rotated")
    return Decoded(rgb, (width, height), mode, fixes)


def sixteen_to_eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit gray image as 8-bit gray by its high byte (PIL's own conversion to L clips at 255)."""
    gray = np.asarray(image).astype(np.int64).clip(0, 65535) >> 8
    return Image.fromarray(gray.astype(np.uint8))


def _to_rgb(image: Image.Image, deep: bool) -> tuple[Image.Image, tuple[str, ...]]:
    """``image`` (decoded from ``deep``, 16-bit, data or not) as 8-bit RGB with alpha composited on white, and
    what that took."""
    fixes: list[str] = []
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        image = sixteen_to_eight_bits(image)
    if deep or image.mode not in ("RGB", "RGBA"):
        fixes.append("converted")
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, _WHITE), image.convert("RGBA"))
        fixes.append("alpha dropped")
    return image.convert("RGB"), tuple(fixes)


def short_side_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """``size`` scaled so that its shorter side is ``short_side``."""
    width, height = size
    if width <= height:
        return short_side, max(short_side, round(height * short_side / width))
    return max(short_side, round(width * short_side / height)), short_side


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """``image`` resized (bicubic) so that its shorter side is ``short_side``; itself if it already is."""
    size = short_side_size(image.size, short_side)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


# ---------------------------------------------------------------------------------------------------- to colorize


@dataclass
class Source:
    """A decoded, upright image ready to colorize."""

    image: Image.Image  # mode L, LA, RGB, RGBA or I;16
    format: str  # the file's PIL format (JPEG, PNG, WEBP, TIFF, ...), "PNG" for in-memory images
    exif: Image.Exif | None = None  # without the orientation tag

    @property
    def sixteen_bit(self) -> bool:
        return self.image.mode == "I;16"

    @property
    def has_alpha(self) -> bool:
        return self.image.mode in ("LA", "RGBA")


def _working_mode(image: Image.Image) -> Image.Image:
    """``image`` in one of the modes a :class:`Source` holds, itself if it is in one already (no copy).

    16-bit gray stays 16-bit (clipped to [0, 65535]); transparency becomes an alpha channel.
    """
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        return image if image.mode == "I;16" else Image.fromarray(np.asarray(image).clip(0, 65535).astype(np.uint16))
    gray = image.mode in ("1", "L", "LA", "La")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        mode = "LA" if gray else "RGBA"
    else:
        mode = "L" if gray else "RGB"
    return image if image.mode == mode else image.convert(mode)


def as_source(image: Image.Image) -> Source:
    """An in-memory PIL image as a :class:`Source` (EXIF orientation applied)."""
    upright = ImageOps.exif_transpose(image)
    return Source(_working_mode(upright), image.format or "PNG")


def read_source(path: Path) -> Source:
    """Decode ``path`` upright; raises ``BadImageError`` (missing, not an image, corrupt) naming the file."""
    with open_image(path) as image:  # leaving the block closes the file, not the decoded pixels
        image.load()
        file_format = _FORMAT_FAMILY.get(image.format, image.format) or "PNG"
        ImageOps.exif_transpose(image, in_place=True)
        exif = image.getexif() if file_format in _EXIF_FORMATS else Image.Exif()
        working = _working_mode(image)
    exif.pop(ORIENTATION, None)
    return Source(working, file_format, exif if len(exif) else None)


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of ``path`` once EXIF-rotated, from its header alone."""
    with open_image(path) as image:
        width, height = image.size
        orientation = image.getexif().get(ORIENTATION, 1)
    return (height, width) if orientation in SWAPS_AXES else (width, height)


# ---------------------------------------------------------------------------------------------------- writing


def write_image(path: Path, image: Image.Image, file_format: str, exif: Image.Exif | None = None) -> None:
    """Write ``image`` to ``path`` in ``file_format`` (the zoo's quality settings, ``exif`` kept), atomically.

    Raises ``OSError`` for formats PIL reads but cannot write (XPM, PSD, ...), before touching ``path``.
    """
    if file_format not in Image.SAVE:
        Image.init()  # PIL registers its writers lazily
    if file_format not in Image.SAVE:
        raise OSError(f"PIL cannot write {file_format} files")
    options = dict(_SAVE_OPTIONS.get(file_format, {}))
    if exif is not None:
        options["exif"] = exif
    with atomic_write(path) as tmp:
        image.save(tmp, format=file_format, **options)


def write_png16(path: Path, size: tuple[int, int], strips: Iterable[np.ndarray]) -> None:
    """Write a 16-bit RGB PNG atomically from uint16 (rows, W, 3) strips, compressing each as it comes (no
    full-size buffer)."""
    width, height = size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(6)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)))
        for rows in strips:
            big_endian = rows.astype(">u2").reshape(rows.shape[0], -1).view(np.uint8)
            filtered = np.concatenate([np.zeros((rows.shape[0], 1), np.uint8), big_endian], axis=1)  # filter 0
            f.write(chunk(b"IDAT", compressor.compress(filtered.tobytes())))
        f.write(chunk(b"IDAT", compressor.flush()) + chunk(b"IEND", b""))


def write_grid(path: Path, rows: Iterable[Iterable[np.ndarray]]) -> Path:
    """A PNG of equally sized uint8 RGB (H, W, 3) panels, one list of panels per row, on a black background
    with :data:`GRID_PADDING` pixels between and around them (the layout of torchvision's ``make_grid``)."""
    rows = [list(row) for row in rows]
    h, w = rows[0][0].shape[:2]
    columns = max(len(row) for row in rows)
    pad = GRID_PADDING
    canvas = np.zeros((pad + len(rows) * (h + pad), pad + columns * (w + pad), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[top:top + h, left:left + w] = panel
    write_image(Path(path), Image.fromarray(canvas), "PNG")
    return Path(path)


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """sRGB in [0, 1], (3, H, W), as rounded uint8 (H, W, 3)."""
    return (rgb.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def write_sample_grid(path: Path, L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> Path:
    """A PNG with one row per image of normalised (L, ab) batches: gray (ab = 0) | predicted | truth."""
    L = L.float()
    panels = [lab_normalized_to_rgb(L, ab) for ab in (torch.zeros_like(ab_true), ab_pred.float(), ab_true.float())]
    return write_grid(path, ([to_uint8(p[i]) for p in panels] for i in range(L.shape[0])))
