"""Scoring protocols: how a photo file becomes the S x S image that every candidate is scored on.

One path through it::

    protocol = PROTOCOLS["crop256"]                  # or "zoo" (S = --image-size), "resize256"
    images = ProtocolImages([(truth, *prediction_files) for ...], protocol, protocol.side(image_size))
    images[i] -> uint8 (k, 3, S, S): a truth prepared by the protocol, then its prediction files prepared alike
    protocol.record(side) -> the protocol's entries in the results' protocol block

Published colorization tables use one of two geometries: a short-side resize and a centre crop (CT2 and
others on ImageNet val5k at 256 px), or a direct resize to 256 x 256 with no crop, which changes the aspect
ratio (DDColor and ColorFormer on ImageNet val50k, COCO-Stuff and ADE20K). ``zoo`` is the zoo's own: the
short-side resize and centre crop of ``zoo train``'s validation (``ColorizationDataset(train=False)``: JPEGs
decoded at a reduced DCT scale first), at any side S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from zoo.images import load_rgb, resize_short_side


@dataclass(frozen=True)
class Protocol:
    """One way to prepare photos (and prediction files) for scoring."""

    name: str
    size: int | None  # the side S in px; None: the caller's image size (--image-size)
    crop: bool  # short side to S, then the centre S x S; False: the whole image resized to S x S
    draft: bool  # JPEGs decoded at a reduced DCT scale no smaller than S (zoo train's validation), else in full
    compares_with: str  # which published tables share its geometry

    def side(self, image_size: int | None) -> int:
        """The side S of this protocol's images: its own size, else ``image_size``."""
        side = self.size or image_size
        if side is None:
            raise ValueError(f"protocol {self.name} needs an image size")
        return side

    @property
    def resizes_predictions(self) -> bool:
        """Whether a prediction of another size than its truth still covers the same scene once prepared."""
        return not self.crop

    def prepare(self, path: Path, side: int) -> Image.Image:
        """The S x S RGB image of the file at ``path`` (raises ``zoo.images.BadImageError``)."""
        image = load_rgb(path, min_short_side=side if self.draft else None)
        if not self.crop:
            return image.resize((side, side), Image.Resampling.BICUBIC)
        image = resize_short_side(image, side)
        x, y = (image.width - side) // 2, (image.height - side) // 2
        return image.crop((x, y, x + side, y + side))

    def preprocess(self, side: int) -> str:
        """What :meth:`prepare` does, in words."""
        decode = "JPEGs decoded at a reduced DCT scale no smaller than S (as zoo train's validation)" if self.draft \
            else "decoded in full (EXIF orientation applied, 8-bit RGB)"
        if self.crop:
            return f"{decode}; short side resized to {side} px (PIL bicubic, antialiased), centre {side}x{side} crop"
        return f"{decode}; resized to {side}x{side} px (PIL bicubic, antialiased), no crop: the aspect ratio changes"

    def record(self, side: int) -> dict[str, Any]:
        """This protocol's entries in the results' protocol block."""
        return {"protocol": self.name, "image_size": side, "preprocess": self.preprocess(side),
                "compares_with": self.compares_with}


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("zoo", None, crop=True, draft=True,
             compares_with="the zoo's own results (zoo train's validation crop at --image-size)"),
    Protocol("crop256", 256, crop=True, draft=False,
             compares_with="tables on a short-side resize and centre crop to 256 px (CT2 on ImageNet val5k)"),
    Protocol("resize256", 256, crop=False, draft=False,
             compares_with="tables on a direct resize to 256x256 (DDColor, ColorFormer on ImageNet val50k,"
                           " COCO-Stuff, ADE20K)"),
)}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown scoring protocol {name!r}: expected one of {', '.join(PROTOCOLS)}") from None


class ProtocolImages(Dataset[torch.Tensor]):
    """Groups of files prepared by a protocol: item ``i`` is uint8 (k, 3, S, S), the k files of ``files[i]``
    (a truth, then the prediction files that colour it). A file that no longer decodes raises: a scored set
    never silently changes."""

    def __init__(self, files: Sequence[Sequence[Path]], protocol: Protocol, side: int) -> None:
        self.files, self.protocol, self.side = [tuple(group) for group in files], protocol, side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        images = [np.asarray(self.protocol.prepare(path, self.side)) for path in self.files[index]]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
