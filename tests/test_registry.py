"""The registry: registry.toml specs, architecture discovery, entry-point plugins and their failures."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from conftest import reset_discovery

import zoo
from zoo.registry import DEFAULT_GEOMETRY, DISCRIMINATORS, GENERATORS, OBJECTIVES, UnknownNameError
from zoo.spec import SpecError, load_registry_file, spec_from_dict

REQUIRED = {"simple-cnn", "pix2pix-unet-gan", "unet-resnet18", "unet-resnet18-gan"}


def test_registry_holds_the_required_models():
    assert REQUIRED <= set(zoo.list_models())
    assert zoo.list_models("*-gan") == sorted(n for n in zoo.list_models() if n.endswith("-gan"))
    assert "simple-cnn" not in zoo.list_models("*gan")


def test_two_stage_recipe_is_resolved_with_defaults():
    spec = zoo.get_spec("unet-resnet18-gan")
    assert spec.generator.arch == "smp-unet" and spec.generator.settings["encoder"] == "resnet18"
    assert spec.discriminator.arch == "patchgan" and spec.discriminator.settings["n_layers"] == 3
    pretrain, gan = spec.stages
    assert (pretrain.loss, pretrain.optimizer.lr, pretrain.uses_discriminator) == ({"l1": 1.0}, 5e-4, False)
    assert (gan.loss, spec.objectives["gan"], gan.uses_discriminator) == (
        {"l1": 100.0, "gan": 1.0}, {"mode": "hinge", "warmup_steps": 100}, True)
    assert list(gan.loss) == ["l1", "gan"]  # the stage's order
    assert (gan.optimizer.lr, gan.optimizer.betas) == (5e-5, (0.5, 0.999))
    assert (gan.discriminator_optimizer.lr, gan.discriminator_optimizer.betas) == (2e-4, (0.0, 0.9))
    assert spec.discriminator.settings["spectral_norm"] is True and (pretrain.time_share, gan.time_share) == (2.0, 1.0)
    assert (gan.image_size, gan.batch_size) == (256, 16)  # from [defaults]
    on_cpu = spec.for_device("cpu").stages
    assert {(s.image_size, s.crop_scale) for s in on_cpu} == {(96, (0.25, 1.0))}  # the CPU recipe


def test_pix2pix_linear_lr_decay_over_the_second_half():
    (stage,) = zoo.get_spec("pix2pix-unet-gan").stages
    assert (stage.epochs, stage.decay_epochs) == (20, 10)
    factors = [stage.lr_factor(e) for e in range(20)]
    assert factors[:10] == [1.0] * 10  # pix2pix: 1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)
    assert factors[10:] == pytest.approx([1 - k / 11 for k in range(1, 11)])
    short = zoo.get_spec("pix2pix-unet-gan").with_overrides(epochs=2).stages[0]
    assert [short.lr_factor(e) for e in range(2)] == pytest.approx([2 / 3, 1 / 3])
    assert zoo.get_spec("unet-resnet18-gan").stages[1].lr_factor(19) == 1.0  # no decay unless asked


def test_the_registry_resolves_every_model_as_before_extends_shortened_it():
    """registry.toml was rewritten with extends, every_stage and named ensemble members: every model still
    resolves to the spec the longhand file gave (tests/data/resolved_specs.json), its description aside."""
    committed = json.loads((Path(__file__).parent / "data" / "resolved_specs.json").read_text())["specs"]
    for name, expected in committed.items():
        got = {k: v for k, v in zoo.get_spec(name).to_dict().items() if k != "description"}
        assert json.loads(json.dumps(got)) == expected, name


def test_descriptions_are_one_line_and_hold_no_figures():
    for name in zoo.list_models():
        text = zoo.get_spec(name).description
        assert 0 < len(text) <= 120 and "\n" not in text, name
        assert not re.search(r"\d+(\.\d+)? ?(minutes?|min|s|seconds?|dB|%|steps|photos)\b|CIEDE2000 \d", text), name


EXTENDED = """
[defaults]
image_size = 64
every_stage = { optimizer = { lr = 1e-3, betas = [0.9, 0.999] } }

[models.base]
description = "a base"
generator = { arch = "simple-cnn", width = 8, depth = 2 }
weights = "weights/base.safetensors"
chroma_knee = 5.0
every_stage = { crop_scale = [0.5, 1.0] }
stages = [
  { name = "first", loss = { l1 = 1, mse = 1 }, epochs = 3 },
  { name = "second", loss = { mse = 1 }, epochs = 4, optimizer = { lr = 2e-4 } },
]

[models.child]
extends = "base"
description = "a child"
generator = { width = 16 }
every_stage = { batch_size = 4 }
stages = [
  { name = "first", loss = { l1 = 1 } },
  { name = "second", drop = true },
  { name = "third", loss = { l1 = 2 }, epochs = 5 },
]

[models.grandchild]
extends = "child"
description = "replaces a stage and the architecture"
generator = { arch = "pix2pix-unet", ngf = 8, num_downs = 5 }
stages = [{ name = "first", replace = true, loss = { mse = 1 }, epochs = 9 }]

[models.pair]
description = "an ensemble naming its members"
generator = { arch = "ensemble", members = ["base", "grandchild"] }
stages = [{ name = "only", loss = { l1 = 1 }, epochs = 1 }]
"""


def test_extends_every_stage_and_named_members_resolve_as_documented(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text(EXTENDED)
    specs = load_registry_file(path)
    base, child, grandchild, pair = (specs[n] for n in ("base", "child", "grandchild", "pair"))
    assert [(s.name, dict(s.loss), s.epochs, s.optimizer.lr, s.crop_scale, s.image_size) for s in base.stages] == [
        ("first", {"l1": 1.0, "mse": 1.0}, 3, 1e-3, (0.5, 1.0), 64), ("second", {"mse": 1.0}, 4, 2e-4, (0.5, 1.0), 64)]
    assert (base.weights, child.weights, child.description, child.chroma_knee) == (
        "weights/base.safetensors", None, "a child", 5.0)  # weights and description are never inherited
    assert child.generator.settings == {"width": 16, "depth": 2}
    # the stage's loss is replaced whole; a dropped stage is gone; a new one comes after
    assert [(s.name, dict(s.loss), s.epochs, s.batch_size, s.crop_scale) for s in child.stages] == [
        ("first", {"l1": 1.0}, 3, 4, (0.5, 1.0)), ("third", {"l1": 2.0}, 5, 4, (0.5, 1.0))]
    assert grandchild.generator.arch == "pix2pix-unet" and "width" not in grandchild.generator.settings
    assert [(s.name, dict(s.loss), s.epochs, s.batch_size) for s in grandchild.stages] == [
        ("first", {"mse": 1.0}, 9, 4), ("third", {"l1": 2.0}, 5, 4)]  # replaced: every_stage still applies
    assert [m["arch"] for m in pair.generator.settings["members"]] == ["simple-cnn", "pix2pix-unet"]
    for bad, message in [
        (EXTENDED.replace('extends = "base"', 'extends = "bsae"'), r"model 'child'.extends: unknown model 'bsae'"),
        (EXTENDED + '[models.base2]\nextends = "loop"\n[models.loop]\nextends = "base2"\n',
         r"base2 -> loop -> base2 goes round in a circle"),
        (EXTENDED.replace('{ name = "second", drop = true }', '{ name = "fourth", drop = true }'),
         r"drops stage 'fourth', which the model it extends does not have"),
        (EXTENDED.replace('["base", "grandchild"]', '["base", "grandkid"]'), r"unknown model 'grandkid'"),
    ]:
        path.write_text(bad)
        with pytest.raises(SpecError, match=message):
            load_registry_file(path)


def test_spec_round_trips_through_a_plain_dict():
    for name in zoo.list_models():
        spec = zoo.get_spec(name)
        assert spec_from_dict(name, spec.to_dict()) == spec


def test_overrides_reach_every_stage_and_the_generator():
    spec = zoo.get_spec("unet-resnet18-gan").with_overrides(generator={"encoder": "tu-resnet18"}, image_size=64, lr=1e-3)
    assert spec.generator.settings["encoder"] == "tu-resnet18"
    assert {s.image_size for s in spec.stages} == {64}
    assert {s.optimizer.lr for s in spec.stages} == {1e-3}
    assert zoo.get_spec("unet-resnet18-gan").stages[0].image_size == 256  # the original is untouched


def test_inference_settings_change_how_weights_run_and_nothing_else():
    """with_inference replaces the spec's inference keys and its output objective's decoding settings, and only
    those: the generator, recipe and the objective's training settings are the original's."""
    spec = zoo.get_spec("unet-effnet-lite0-classify")
    variant = spec.with_inference({"chroma_scale": 0.5, "flip_average": True, "inference_size": 160,
                                   "chroma_knee": 20.0, "temperature": 1.0})
    assert (variant.chroma_scale, variant.flip_average, variant.working_size, variant.chroma_knee) == (0.5, True, 160, 20)
    assert variant.objectives["classification"] == dict(spec.objectives["classification"], temperature=1.0)
    assert (variant.generator, variant.stages) == (spec.generator, spec.stages)
    with pytest.raises(SpecError, match=r"'rebalance' is not an inference setting; those of unet-effnet-lite0-classify:"
                                        r" inference_size, flip_average, chroma_scale, chroma_knee, temperature"):
        spec.with_inference({"rebalance": 1.0})  # a training setting: it changes the weights, not their decoding
    with pytest.raises(SpecError, match=r"chroma_scale"):
        spec.with_inference({"chroma_scale": 0.0})  # validated as the registry's own values are
    with pytest.raises(SpecError, match=r"chroma_knee: expected a value >= 0 and <= 200"):
        spec.with_inference({"chroma_knee": -1.0})


def test_unknown_model_lists_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown model 'unet-resnet18-gn'; did you mean unet-resnet18-gan"):
        zoo.get_spec("unet-resnet18-gn")


def test_create_by_model_name_and_by_architecture_name():
    g = zoo.create_generator("pix2pix-unet-gan", ngf=8, num_downs=6)
    assert g(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    d = zoo.create_discriminator("patchgan", n_layers=1)
    assert d(torch.zeros(1, 3, 64, 64)).shape[:2] == (1, 1)
    with pytest.raises(UnknownNameError, match="did you mean"):
        zoo.create_generator("pix2pix-unett")
    with pytest.raises(ValueError, match="'unet-resnet18' has no discriminator"):
        zoo.create_discriminator("unet-resnet18")


def test_unknown_setting_names_the_model_and_key():
    with pytest.raises(SpecError, match=r"model 'simple-cnn': generator.widht: 'simple-cnn' has no setting 'widht'"):
        zoo.create_generator("simple-cnn", widht=3)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD_MODEL = """
[models.m]
generator = { arch = "simple-cnn" }
[[models.m.stages]]
name = "s"
loss = "l1"
epochs = 1
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.m\n", r"not valid TOML"),
        (GOOD_MODEL.replace('"simple-cnn"', '"simple-cnm"'), r"model 'm'.generator.arch: unknown generator architecture 'simple-cnm'; did you mean simple-cnn"),
        (GOOD_MODEL.replace('epochs = 1', 'epochs = 1\nepoch = 2'), r"model 'm'.stages\[0\]: unknown key 'epoch' \(did you mean 'epochs'\?\)"),
        (GOOD_MODEL.replace('epochs = 1', 'epochs = "one"'), r"model 'm'.stages\[0\].epochs: expected int, got str 'one'"),
        (GOOD_MODEL.replace('loss = "l1"', 'loss = "l2"'), r"model 'm'.stages\[0\].loss: unknown objective 'l2'; did you mean l1"),
        (GOOD_MODEL.replace('loss = "l1"', 'loss = { l2 = 1 }'), r"model 'm'.stages\[0\].loss: unknown objective 'l2'; did you mean l1"),
        (GOOD_MODEL.replace('loss = "l1"', 'loss = { l1 = "a lot" }'), r"model 'm'.stages\[0\].loss.l1: expected float, got str"),
        (GOOD_MODEL.replace('loss = "l1"', 'loss = {}'), r"model 'm'.stages\[0\].loss: expected a non-empty table"),
        (GOOD_MODEL.replace('loss = "l1"', 'loss = "l1+gan"'), r"model 'm': stage 's' uses 'gan', which needs a discriminator, but the model has none"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\nobjectives = { l1 = { sharpness = 2 } }"), r"model 'm'.objectives.l1.sharpness: 'l1' has no setting 'sharpness'"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\nobjectives = { mse = {} }"), r"model 'm'.objectives.mse: no stage uses objective 'mse'"),
        (GOOD_MODEL + 'optimizer = { lr = 1e-3, betas = [0.5] }\n', r"model 'm'.stages\[0\].optimizer.betas: expected a list of 2 numbers"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\ncolour = 1"), r"model 'm': unknown key 'colour'"),
        ("[defaults]\nimage_sise = 3\n" + GOOD_MODEL, r"\[defaults\]: unknown key 'image_sise'"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\nchroma_scale = 0"), r"model 'm'.chroma_scale: expected a value > 0"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\nchroma_scale = \"pale\""), r"model 'm'.chroma_scale: expected float"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\nflip_average = 1"), r"model 'm'.flip_average: expected bool, got int"),
        (GOOD_MODEL.replace("epochs = 1", "epochs = 1\nbranches = 0"), r"model 'm'.stages\[0\].branches: expected a value >= 1"),
        (GOOD_MODEL.replace("[models.m]", "[models.m]\nval_fraction = 1"), r"model 'm'.val_fraction: expected a value >= 0 and < 1"),
    ],
    ids=["bad-toml", "unknown-arch", "unknown-key", "wrong-type", "unknown-objective", "unknown-term", "bad-weight",
         "no-terms", "gan-without-d", "objective-setting", "unused-objective", "betas", "model-key", "defaults",
         "chroma-scale-zero", "chroma-scale-text", "flip-average-int", "no-branches", "val-fraction-one"],
)
def test_malformed_registry_names_model_and_key(tmp_path, text, message):
    with pytest.raises(SpecError, match=message):
        load_registry_file(_write(tmp_path, text))


def test_first_landing_loss_form_reads_as_weighted_objectives(tmp_path):
    """``loss = "l1+gan"`` with ``lambda_l1`` and ``gan_mode`` (older registries and checkpoints) means the same
    spec as the weighted form."""
    head = '[models.m]\ngenerator = "simple-cnn"\ndiscriminator = "patchgan"\n'
    old = head + '[[models.m.stages]]\nname = "s"\nloss = "l1+gan"\nlambda_l1 = 10.0\ngan_mode = "lsgan"\nepochs = 1\n'
    new = (head + 'objectives = { gan = { mode = "lsgan" } }\n'
           '[[models.m.stages]]\nname = "s"\nloss = { l1 = 10, gan = 1 }\nepochs = 1\n')
    assert load_registry_file(_write(tmp_path, old)) == load_registry_file(_write(tmp_path, new))
    spec = load_registry_file(_write(tmp_path, old))["m"]
    assert spec_from_dict("m", spec.to_dict()) == spec and spec.to_dict()["stages"][0]["loss"] == {"l1": 10.0, "gan": 1.0}


def test_builtin_objectives_are_registered_and_know_what_they_need():
    assert {"l1", "mse", "gan"} <= set(zoo.list_architectures("objective"))
    assert OBJECTIVES.source("l1") == "builtin"
    assert OBJECTIVES.get("gan").needs_discriminator and not OBJECTIVES.get("l1").needs_discriminator
    assert zoo.get_spec("unet-resnet18-gan").output_channels == 2  # no objective defines another output


def test_zoo_registry_env_selects_another_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_REGISTRY", str(_write(tmp_path, GOOD_MODEL)))
    reset_discovery()
    try:
        assert zoo.list_models() == ["m"]
    finally:
        monkeypatch.undo()
        reset_discovery()
    assert REQUIRED <= set(zoo.list_models())


# ------------------------------------------------------------------------------------------- plugins


def test_installed_plugin_is_discovered_lazily_and_creates(example_plugin, monkeypatch):
    monkeypatch.delitem(sys.modules, "zoo_example_plugin.models", raising=False)
    monkeypatch.delitem(sys.modules, "zoo_example_plugin.objectives", raising=False)
    assert "example-residual" in zoo.list_architectures("generator")
    assert "example-critic" in zoo.list_architectures("discriminator")
    assert "example-huber" in zoo.list_architectures("objective")
    assert "zoo_example_plugin.models" not in sys.modules  # listed without importing it
    assert "zoo_example_plugin.objectives" not in sys.modules
    assert GENERATORS.source("example-residual") == "zoo_example_plugin.models:ResidualColorNet"
    assert OBJECTIVES.source("example-huber") == "zoo_example_plugin.objectives:Huber"
    assert GENERATORS.geometry("example-residual").size_multiple({}) == 1  # declared by the plugin
    assert DISCRIMINATORS.geometry("example-critic") == DEFAULT_GEOMETRY  # declares nothing: the default
    assert "example-residual-gan" in zoo.list_models()  # the model the plugin ships in its registry.toml
    g, d = zoo.create_models(zoo.get_spec("example-residual-gan"))
    ab = g(torch.rand(2, 1, 32, 32) * 2 - 1)
    assert ab.shape == (2, 2, 32, 32) and ab.abs().max() <= 1
    assert d(torch.cat([torch.zeros(2, 1, 32, 32), ab], 1)).shape == (2, 1, 1, 1)


def _fake_distribution(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_broken_plugin_warns_and_clash_keeps_the_builtin(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "broken_plugin",
        """
        [zoo.generators]
        broken-net = not_a_module_anywhere.models:Net
        [zoo.discriminators]
        patchgan = not_a_module_anywhere.models:Impostor
        [zoo.registries]
        broken = not_a_module_anywhere
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reset_discovery()
    try:
        assert "broken-net" in zoo.list_architectures("generator")  # listed: nothing imported yet
        with pytest.warns(RuntimeWarning, match=r"generator plugin 'broken-net' \(not_a_module_anywhere.models:Net\) failed to load: ModuleNotFoundError"):
            with pytest.raises(UnknownNameError):
                GENERATORS.get("broken-net")
        reset_discovery()
        with pytest.warns(RuntimeWarning, match=r"clashes with the built-in 'patchgan'; the built-in wins"):
            assert DISCRIMINATORS.source("patchgan") == "builtin"
        with pytest.warns(RuntimeWarning, match=r"model registry plugin 'broken'"):
            assert REQUIRED <= set(zoo.list_models())  # the zoo still works
    finally:
        monkeypatch.undo()
        reset_discovery()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "broken-net" not in zoo.list_architectures("generator")
