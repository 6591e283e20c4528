"""An ``ensemble`` generator is the mean of its members' outputs; ``zoo ensemble`` puts members trained apart
together (checked against the registry's member tables), and the packed file leaves every member's frozen
encoder to its source."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from zoo import checkpoint
from zoo.cli import main
from zoo.colorizer import normalized_lightness
from zoo.data import resolve_source
from zoo.factory import create_generator, run_otherwise
from zoo.models.ensemble import assemble
from zoo.spec import SpecError, get_spec, size_multiple, spec_from_dict, weights_path

PAIR = "effnet-lite-pair-color"
MEMBERS = ("unet-effnet-lite0-ciede", "unet-effnet-lite2-color")  # shipped models fitting its member tables, in order
PLAIN = {"flip_average": False, "chroma_knee": 0.0, "chroma_scale": 1.0}  # the raw generator's mean, no decoding


def lightness(size: tuple[int, int] = (160, 128)) -> torch.Tensor:
    """Normalised L (1, 1, H, W) of a real held-out photo, resized to ``size`` (width, height)."""
    from PIL import Image

    image = Image.open(resolve_source("heldout")[3]).convert("L").resize(size, Image.BICUBIC)
    return normalized_lightness(np.asarray(image))[None].float()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_ensemble_of_members_trained_apart_predicts_the_mean_of_their_predictions(tmp_path):
    members = [weights_path(m) for m in MEMBERS]
    out = tmp_path / "pair.safetensors"
    result = CliRunner().invoke(main, ["ensemble", PAIR, *map(str, members), "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec, pair = checkpoint.load_generator(out, model=PAIR)
    assert spec.name == PAIR and spec.generator.arch == "ensemble"
    _, pair = run_otherwise(spec, pair, PLAIN)
    L = lightness()
    with torch.inference_mode():
        each = []
        for path in members:
            member_spec, member = checkpoint.load_generator(path)
            _, member = run_otherwise(member_spec, member, PLAIN)
            each.append(member(L).numpy().astype(np.float64))
        got = pair(L).numpy()
    # Oracle: each member run alone as its own model, their mean taken in float64.
    expected = (each[0] + each[1]) / 2
    assert np.abs(got - expected).max() < 1e-5
    assert np.abs(each[0] - each[1]).mean() > 0.01  # the members disagree: the mean is neither of them
    # the members' own decoding (chroma knee and scale) is not the ensemble's: it reads its settings from its spec
    assert spec.ab_settings == get_spec(PAIR).ab_settings


def test_zoo_ensemble_refuses_members_that_do_not_fit_and_never_writes_over_one(tmp_path):
    lite0, lite2 = (weights_path(m) for m in MEMBERS)
    before = sha(lite0)
    swapped = CliRunner().invoke(main, ["ensemble", PAIR, str(lite2), str(lite0), "--out", str(tmp_path / "x.st")])
    assert swapped.exit_code == 1
    assert f"{lite2}: holds a smp-unet generator" in swapped.output and "not member 0" in swapped.output
    assert len(swapped.output.strip().splitlines()) == 1 and not (tmp_path / "x.st").exists()
    one = CliRunner().invoke(main, ["ensemble", PAIR, str(lite0), "--out", str(tmp_path / "x.st")])
    assert one.exit_code == 1 and "has 2 members; got 1 checkpoints" in one.output
    onto = CliRunner().invoke(main, ["ensemble", PAIR, str(lite0), str(lite2), "--out", str(lite0), "--overwrite"])
    assert onto.exit_code == 1 and "is an input of this command" in onto.output and sha(lite0) == before
    with pytest.raises(checkpoint.CheckpointError, match="is not an ensemble"):
        assemble(MEMBERS[0], [lite0, lite2], tmp_path / "y.st")


def test_the_packed_ensemble_leaves_every_members_frozen_encoder_to_its_source(tmp_path):
    assembled, packed = tmp_path / "pair.safetensors", tmp_path / "packed.safetensors"
    assemble(PAIR, [weights_path(m) for m in MEMBERS], assembled)
    done = checkpoint.pack(assembled, packed)
    generator = create_generator(PAIR, encoder_weights=None)
    encoders = {f"generator.members.{i}.encoder.{n}" for i, member in enumerate(generator.members)
                for n, _ in member.encoder.named_parameters()}
    assert set(checkpoint.read_meta(packed)["rebuilt"]["tensors"]) == encoders and done.rebuilt == len(encoders)
    assert packed.stat().st_size < 12 * 2**20  # a shipped file's limit (the two members' files are 4.6 + 4.8 MB)
    _, whole = checkpoint.load_generator(assembled)
    _, rebuilt = checkpoint.load_generator(packed)
    L = lightness()
    with torch.inference_mode():  # the members' weights were float16 already: packing changes nothing
        assert torch.equal(whole(L), rebuilt(L))


def raw(members: list[dict], **settings) -> dict:
    return {"description": "d", "generator": {"arch": "ensemble", "members": members, **settings},
            "stages": [{"name": "s", "loss": {"l1": 1}, "epochs": 1}]}


def test_ensemble_members_are_checked_where_they_are_named():
    lite0 = {"arch": "smp-unet", "encoder": "tu-tf_efficientnet_lite0"}
    with pytest.raises(SpecError, match=r"members: an ensemble needs at least two member tables, got 1"):
        size_multiple(spec_from_dict("m", raw([lite0])))
    with pytest.raises(SpecError, match=r"members\[1\]\.encoder_weights: set by the ensemble's encoder_weights"):
        size_multiple(spec_from_dict("m", raw([lite0, {**lite0, "encoder_weights": "imagenet"}])))
    unknown = r"members\[1\]\.arch: unknown generator architecture 'smp-unt'; did you mean smp-unet"
    with pytest.raises(SpecError, match=unknown):
        size_multiple(spec_from_dict("m", raw([lite0, {"arch": "smp-unt"}])))
    with pytest.raises(SpecError, match=r"members\[0\]\.widht: 'simple-cnn' has no setting 'widht'"):
        size_multiple(spec_from_dict("m", raw([{"arch": "simple-cnn", "widht": 8}, lite0])))
    # inputs must suit every member: the least common multiple of their declared sides (2^5 = 32 and 2^6 = 64)
    cnn = {"arch": "simple-cnn", "depth": 6, "width": 8}
    assert size_multiple(spec_from_dict("m", raw([lite0, cnn]))) == 64
    with pytest.raises(ValueError, match=r"member 1 \(simple-cnn\) takes no pretrained weights"):
        create_generator("effnet-lite-pair-color", members=[lite0, cnn])
