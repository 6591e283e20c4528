"""Generator and discriminator architectures: contract, exact sizes, errors, initialisation and encoder weights."""

from __future__ import annotations

import pickle

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import zoo
from zoo.factory import input_channels
from zoo.models.patchgan import receptive_field
from zoo.models.pix2pix import Pix2PixUNet
from zoo.models.weight_init import init_weights
from zoo.registry import DISCRIMINATORS, GENERATORS, list_architectures
from zoo.spec import adapt_to_image_size, get_spec

# Settings that keep forward/backward cheap at 64 px; other architectures run with their defaults.
SMALL = {"pix2pix-unet": {"ngf": 8, "num_downs": 6}, "guided-unet": {"encoder": "tu-mobilenetv3_small_050"},
         "ensemble": {"members": [{"arch": "simple-cnn", "width": 8}, {"arch": "pix2pix-unet", "ngf": 8, "num_downs": 6}]}}
FROM_SCRATCH = {"simple-cnn": GENERATORS, "pix2pix-unet": GENERATORS, "patchgan": DISCRIMINATORS}


def assert_finite_grads(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def unet_256() -> nn.Module:
    """The full pix2pix ``unet_256`` at 1 -> 2 channels (built once: 54M parameters)."""
    torch.manual_seed(0)
    return GENERATORS.create("pix2pix-unet")


@pytest.mark.parametrize("name", list_architectures("generator"))
def test_generator_maps_l_to_bounded_ab(name: str) -> None:
    torch.manual_seed(0)
    model = GENERATORS.create(name, **SMALL.get(name, {}))
    extra = input_channels(name) - 1  # a generator that takes hints gets a random few
    hints = (torch.rand(2, extra, 64, 64) < 0.01).float() * (torch.rand(2, extra, 64, 64) * 2 - 1)
    out = model(torch.cat([torch.rand(2, 1, 64, 64) * 2 - 1, hints], dim=1))
    assert out.shape == (2, 2, 64, 64)
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    (out * torch.randn_like(out)).sum().backward()
    assert_finite_grads(model)


@pytest.mark.parametrize("name", list_architectures("discriminator"))
def test_discriminator_gives_a_patch_logit_map(name: str) -> None:
    torch.manual_seed(0)
    model = DISCRIMINATORS.create(name)
    out = model(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.dim() == 4 and out.shape[:2] == (2, 1) and min(out.shape[2:]) >= 1
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert_finite_grads(model)


@pytest.mark.parametrize("name", list_architectures("generator") + list_architectures("discriminator"))
def test_unknown_setting_is_a_type_error(name: str) -> None:
    registry = GENERATORS if name in list_architectures("generator") else DISCRIMINATORS
    with pytest.raises(TypeError):
        registry.create(name, no_such_setting=1)


@pytest.mark.parametrize(("name", "settings", "strict"), [("simple-cnn", {"width": 4, "depth": 3}, True),
                                                        ("pix2pix-unet", {"ngf": 2, "num_downs": 5}, True),
                                                        ("smp-unet", {"encoder": "resnet18"}, False)])
def test_declared_geometry_is_what_the_architecture_takes(name: str, settings: dict, strict: bool) -> None:
    """The declared multiple runs (at its multiple and at 2x3 multiples); where it is a hard limit, 1.5 times it
    does not fit (smp's U-Net resizes misaligned skips, so its 32 is where they align, not a limit)."""
    multiple = GENERATORS.geometry(name).size_multiple(GENERATORS.full_settings(name, settings))
    model = GENERATORS.create(name, **settings).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, multiple, multiple)).shape == (1, 2, multiple, multiple)
        assert model(torch.zeros(1, 1, 2 * multiple, 3 * multiple)).shape == (1, 2, 2 * multiple, 3 * multiple)
        if strict:
            with pytest.raises(ValueError, match="divisible by"):
                model(torch.zeros(1, 1, multiple + multiple // 2, multiple))


def test_geometry_fits_pix2pix_depth_to_the_image_size() -> None:
    spec = get_spec("pix2pix-unet-gan").with_overrides(generator={"ngf": 2})
    for size, depth in ((256, 8), (128, 7), (64, 6), (96, 5)):
        fitted, note = adapt_to_image_size(spec, size)
        assert fitted.generator.settings["num_downs"] == depth
        assert note == (None if depth == 8 else f"num_downs 8 -> {depth} for {size} px")
        assert GENERATORS.geometry("pix2pix-unet").size_multiple(fitted.generator.settings) == 2**depth


def test_exact_parameter_counts(unet_256: nn.Module) -> None:
    assert param_count(unet_256) == 54_409_858
    assert param_count(DISCRIMINATORS.create("patchgan")) == 2_765_633


@pytest.mark.parametrize("encoder", ["resnet18", "tu-resnet18"])
def test_smp_unet_resnet18_parameter_count(encoder: str) -> None:
    assert param_count(GENERATORS.create("smp-unet", encoder=encoder)) == 14_322_082


def test_smp_unet_decoder_channels_setting() -> None:
    model = GENERATORS.create("smp-unet", decoder_channels=(64, 32, 16, 16, 8))
    assert model.segmentation_head[0].in_channels == 8
    assert param_count(model) < 14_322_082
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 2, 64, 64)


@pytest.mark.parametrize(("n_layers", "side"), [(0, 256), (1, 126), (2, 62), (3, 30)])
def test_patchgan_map_size_at_256(n_layers: int, side: int) -> None:
    out = DISCRIMINATORS.create("patchgan", n_layers=n_layers)(torch.randn(2, 3, 256, 256))
    assert out.shape == (2, 1, side, side)


@pytest.mark.parametrize(("n_layers", "published"), [(0, 1), (1, 16), (2, 34), (3, 70)])
def test_receptive_field_matches_published_and_gradient_support(n_layers: int, published: int) -> None:
    assert receptive_field(n_layers) == published
    torch.manual_seed(0)
    model = DISCRIMINATORS.create("patchgan", ndf=4, n_layers=n_layers).eval()  # eval: no batch coupling
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows, cols = (x.grad[0].abs().sum(0) > 0).nonzero(as_tuple=True)
    assert rows.max() - rows.min() + 1 == published
    assert cols.max() - cols.min() + 1 == published


def test_pix2pix_rejects_images_too_small_for_its_depth() -> None:
    message = (
        "pix2pix-unet with num_downs=8 needs height and width divisible by 256, got 64x64; "
        "use num_downs <= 6 for 64 px"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        Pix2PixUNet(ngf=2)(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="num_downs >= 5"):
        Pix2PixUNet(num_downs=4)


def test_simple_cnn_rejects_sizes_not_divisible_by_its_depth() -> None:
    model = GENERATORS.create("simple-cnn", width=4, depth=4)
    with pytest.raises(ValueError, match="^simple-cnn with depth=4 needs height and width divisible by 16, got 64x40$"):
        model(torch.randn(1, 1, 64, 40))


def test_pix2pix_dropout_sits_in_the_three_inner_decoder_levels(unet_256: nn.Module) -> None:
    levels = []  # outermost skip level first, innermost last
    level = unet_256.net[1]
    while not isinstance(level, nn.Identity):
        levels.append(level)
        level = level.inner
    assert len(levels) == 7  # num_downs - 1: the outermost level is the bare net
    with_dropout = [i for i, lvl in enumerate(levels) if any(isinstance(m, nn.Dropout) for m in lvl.up)]
    assert with_dropout == [3, 4, 5]  # the ngf*8 levels next to the innermost (6)
    dropouts = [m for m in unet_256.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(m.p == 0.5 for m in dropouts)
    assert not any(isinstance(m, nn.Dropout) for m in Pix2PixUNet(ngf=2, dropout=0.0).modules())


@pytest.mark.parametrize("name", sorted(FROM_SCRATCH))
def test_from_scratch_models_use_the_pix2pix_init(name: str, unet_256: nn.Module) -> None:
    torch.manual_seed(0)
    model = unet_256 if name == "pix2pix-unet" else FROM_SCRATCH[name].create(name)
    biggest = max((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))),
                  key=lambda m: m.weight.numel())
    assert biggest.weight.numel() >= 1_000_000
    assert biggest.weight.std().item() == pytest.approx(0.02, rel=0.01)  # torch's default would be ~0.006
    assert abs(biggest.weight.mean().item()) < 1e-3
    norms = torch.cat([m.weight.detach() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert norms.mean().item() == pytest.approx(1.0, abs=0.005)
    assert norms.std().item() == pytest.approx(0.02, rel=0.1)
    assert all(m.bias is None or not m.bias.any() for m in model.modules() if hasattr(m, "bias"))


def test_init_weights_covers_linear_layers_and_returns_the_module() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1000, 1000), nn.BatchNorm2d(8))
    assert init_weights(model, std=0.1) is model
    assert model[0].weight.std().item() == pytest.approx(0.1, rel=0.01)
    assert not model[0].bias.any() and not model[1].bias.any()
    assert 0.5 < model[1].weight.mean().item() < 1.5 and model[1].weight.std().item() > 0


# Encoder weights from local files: a randomly initialised timm model stands in for a downloaded checkpoint.
LOCAL_ENCODERS = [
    ("resnet18", "resnet18", "conv1.weight", "conv1.weight"),
    ("tu-resnet18", "resnet18", "model.conv1.weight", "conv1.weight"),
    ("tu-convnext_atto", "convnext_atto", "model.stem_0.weight", "stem.0.weight"),  # timm flattens stages.0
]


@pytest.mark.parametrize(("encoder", "timm_name", "stem", "source_stem"), LOCAL_ENCODERS)
def test_smp_unet_loads_a_local_timm_state_dict(encoder, timm_name, stem, source_stem, tmp_path) -> None:
    torch.manual_seed(0)
    source = timm.create_model(timm_name, pretrained=False).eval()
    path = tmp_path / "encoder.safetensors"
    save_file(source.state_dict(), path)
    model = GENERATORS.create("smp-unet", encoder=encoder, encoder_weights=str(path)).eval()
    weights = model.encoder.state_dict()
    assert torch.equal(weights[stem], source.state_dict()[source_stem].sum(1, keepdim=True))
    # Every encoder tensor came from the file: a gray image sees what the RGB model sees on R = G = B.
    gray = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        expected = source.forward_features(gray.expand(-1, 3, -1, -1))
        assert torch.allclose(model.encoder(gray)[-1], expected, rtol=1e-4, atol=1e-5)


def test_smp_unet_reads_pth_files_without_unpickling_code(tmp_path) -> None:
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, tmp_path / "encoder.pth")
    model = GENERATORS.create("smp-unet", encoder_weights=str(tmp_path / "encoder.pth"))
    assert torch.equal(model.encoder.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    torch.save({"conv1.weight": state["conv1.weight"], "payload": nn.ReLU()}, tmp_path / "code.pth")
    with pytest.raises(pickle.UnpicklingError):
        GENERATORS.create("smp-unet", encoder_weights=str(tmp_path / "code.pth"))


def test_smp_unet_reports_unmatched_encoder_keys(tmp_path) -> None:
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.")} | {"extra.weight": torch.ones(1)}
    save_file(partial, tmp_path / "partial.safetensors")
    with pytest.warns(UserWarning, match=r"kept initial: layer4\.0\.conv1\.weight.*; unused: extra\.weight$"):
        GENERATORS.create("smp-unet", encoder_weights=str(tmp_path / "partial.safetensors"))
    save_file({"foo.weight": torch.ones(2)}, tmp_path / "unrelated.safetensors")
    with pytest.raises(ValueError, match="no key of .* matches the encoder"):
        GENERATORS.create("smp-unet", encoder_weights=str(tmp_path / "unrelated.safetensors"))


@pytest.mark.parametrize("weights", ["imagenet21k", "weights.bin"])
def test_smp_unet_rejects_unknown_encoder_weights(weights: str) -> None:
    with pytest.raises(ValueError, match="encoder_weights must be None, 'imagenet' or a path"):
        GENERATORS.create("smp-unet", encoder_weights=weights)


@pytest.mark.parametrize("encoder", ["resnet18", "tu-resnet18", "tu-convnext_atto"])
def test_smp_unet_imagenet_offline_says_so_and_starts_from_random(encoder, tmp_path, monkeypatch) -> None:
    """No ImageNet weights to be had (the zoo's download for ResNet18, the Hugging Face hub for the others): one
    warning line naming the encoder, and a working U-Net with a random encoder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no torchvision file cached either
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # any request fails, at once
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # and nothing is cached
    with pytest.warns(UserWarning, match=f"no ImageNet weights for encoder '{encoder}' .*random initialisation") as caught:
        model = GENERATORS.create("smp-unet", encoder=encoder, encoder_weights="imagenet")
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_unet_resnet18_takes_imagenet_weights_from_torchs_cache(tmp_path, monkeypatch) -> None:
    """Where torchvision already downloaded resnet18-f37072fd.pth, that file is the ImageNet encoder (here a
    locally made stand-in with torchvision's names)."""
    torch.manual_seed(0)
    stand_in = timm.create_model("resnet18", pretrained=False).state_dict()  # torchvision's key names
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(stand_in, hub / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    encoder = zoo.create_generator("unet-resnet18").encoder.state_dict()
    assert torch.equal(encoder["conv1.weight"], stand_in["conv1.weight"].sum(1, keepdim=True))  # RGB summed
    assert torch.equal(encoder["layer4.1.bn2.running_var"], stand_in["layer4.1.bn2.running_var"])
