"""Hugging Face Hub folders, offline: a shipped model exported and loaded back colorizes bit for bit as the shipped
file does, from the folder and through an ``hf:`` name resolved from huggingface_hub's own cache; loading is
strict and safetensors-only; an ``hf:`` name not in the cache with HF_HUB_OFFLINE=1 is one line; uploading needs a
token."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from zoo import hub
from zoo.checkpoint import CheckpointError
from zoo.cli import main
from zoo.colorizer import Colorizer
from zoo.data import resolve_source
from zoo.spec import weights_path

SHIPPED = "unet-effnet-lite0-ciede"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scores = [{"model": SHIPPED, "psnr": 21.5, "ssim": 0.9256, "ciede2000": 12.14, "dcf": 20.15, "images": 50},
              {"model": "gray", "psnr": 20.82, "ssim": 0.9246, "ciede2000": 12.63, "dcf": 42.8, "images": 50}]
    return hub.export_folder(weights_path(SHIPPED), tmp_path_factory.mktemp("hub") / "lite0", scores)


def test_the_folder_holds_every_tensor_the_spec_and_a_hub_card(folder):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "colorization-zoo" and config["model"] == SHIPPED
    assert config["spec"] == Colorizer.from_checkpoint(model=SHIPPED, device="cpu").spec.to_dict()
    tensors = load_file(folder / "model.safetensors")
    expected = Colorizer.from_checkpoint(model=SHIPPED, device="cpu").predictor.state_dict()
    assert tensors.keys() == expected.keys() and all(torch.equal(tensors[k], expected[k]) for k in tensors)
    card = (folder / "README.md").read_text()
    front, _, body = card.removeprefix("---\n").partition("\n---\n")
    assert "library_name: colorization-zoo" in front and "license: other" in front and "model-index:" in front
    assert "{type: ciede2000, value: 12.14, name: CIEDE2000}" in front
    assert f"| {SHIPPED} | 21.5 | 0.9256 | 12.14 | 20.15 |" in body and "| gray | 20.82 | 0.9246 | 12.63 | 42.8 |" in body


def test_loaded_from_the_folder_it_colorizes_bit_for_bit_as_the_shipped_file(folder):
    photo = resolve_source("heldout")[4]
    shipped = np.asarray(Colorizer.from_checkpoint(model=SHIPPED, device="cpu")(photo))
    from_folder = np.asarray(Colorizer.from_checkpoint(folder, device="cpu")(photo))
    assert np.array_equal(shipped, from_folder)


def hub_cache(root: Path, repo: str, folder: Path, revision: str = "main") -> Path:
    """huggingface_hub's cache layout holding ``folder`` as ``repo`` at a made-up commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    owner, name = repo.split("/")
    model = root / f"models--{owner}--{name}"
    (model / "refs").mkdir(parents=True)
    (model / "refs" / revision).write_text(commit)
    shutil.copytree(folder, model / "snapshots" / commit)
    return root


def test_an_hf_name_loads_from_the_cache_offline(folder, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = hub_cache(tmp_path / "hf", "someone/lite0", folder)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    photo = resolve_source("heldout")[4]
    got = Colorizer.from_checkpoint(hub.fetch("hf:someone/lite0"), device="cpu")(photo)
    assert np.array_equal(np.asarray(got), np.asarray(Colorizer.from_checkpoint(model=SHIPPED, device="cpu")(photo)))
    result = CliRunner().invoke(main, ["score", "hf:someone/lite0", "--data", str(photo), "--image-size", "64",
                                       "--results", str(tmp_path / "results"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    rows = json.loads(next((tmp_path / "results").glob("score-*.json")).read_text())["rows"]
    assert rows[0]["model"] == "hf:someone/lite0" and rows[0]["error"] is None
    for model, written in (("hf:someone/lite0", "hub"), (SHIPPED, "shipped")):
        result = CliRunner().invoke(main, ["colorize", str(photo), "--model", model, "--out", str(tmp_path / written),
                                           "--no-progress"])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "hub" / photo.name).read_bytes() == (tmp_path / "shipped" / photo.name).read_bytes()
    with pytest.raises(hub.HubError, match=r"^hf:someone/missing: not in the Hugging Face cache"):
        hub.fetch("hf:someone/missing")
    with pytest.raises(hub.HubError, match=r"hf:nobody: not a Hub model name"):
        hub.fetch("hf:nobody")


def test_zoo_export_writes_the_folder_with_the_held_out_scores_of_zoo_score(tmp_path):
    out = tmp_path / "hub"
    result = CliRunner().invoke(main, ["export", SHIPPED, "--format", "hub", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = CliRunner().invoke(main, ["score", SHIPPED, "--results", str(tmp_path / "r"), "--workers", "0"])
    assert scored.exit_code == 0, scored.output
    rows = {r["model"]: r for r in json.loads(next((tmp_path / "r").glob("score-*.json")).read_text())["rows"]}
    card = (out / "README.md").read_text()
    for name in (SHIPPED, "gray"):
        row = rows[name]
        assert f"| {name} | {row['psnr']:.4g} | {row['ssim']:.4g} | {row['ciede2000']:.4g} | {row['dcf']:.4g} |" in card
    photo = resolve_source("heldout")[7]
    for args, written in ((["--checkpoint", str(out)], "from-folder"), (["--model", SHIPPED], "shipped")):
        colour = CliRunner().invoke(main, ["colorize", str(photo), *args, "--out", str(tmp_path / written),
                                           "--no-progress"])
        assert colour.exit_code == 0, colour.output
    assert (tmp_path / "from-folder" / photo.name).read_bytes() == (tmp_path / "shipped" / photo.name).read_bytes()


def test_zoo_export_to_the_hub_refuses_settings_it_cannot_carry(tmp_path):
    out = tmp_path / "hub"
    result = CliRunner().invoke(main, ["export", SHIPPED, "--format", "hub", "--out", str(out), "--set",
                                       "chroma_scale=1.3"])
    assert result.exit_code == 1 and not out.exists()
    assert result.output.startswith("Error: --set does not travel in a Hub folder") and result.output.count("\n") == 1


def test_loading_is_strict_and_never_unpickles(folder, tmp_path):
    missing = shutil.copytree(folder, tmp_path / "missing")
    tensors = load_file(folder / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        metadata = f.metadata()
    save_file({k: v for k, v in tensors.items() if not k.endswith("head.0.bias")}, missing / "model.safetensors",
              metadata=metadata)
    with pytest.raises(CheckpointError, match=r"missing/model.safetensors: does not fit the model"):
        Colorizer.from_checkpoint(missing)
    other = shutil.copytree(folder, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["spec"]["chroma_scale"] = 0.5
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"other/config.json: does not describe"):
        Colorizer.from_checkpoint(other)
    pickled = shutil.copytree(folder, tmp_path / "pickled")
    torch.save(tensors, pickled / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"pickled/model.safetensors: not a safetensors checkpoint"):
        Colorizer.from_checkpoint(pickled)
    (pickled / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"pickled: no model.safetensors"):
        Colorizer.from_checkpoint(pickled)


def test_pushing_needs_a_token_and_a_loadable_folder(folder, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))  # no stored token
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "home" / "token"))
    result = CliRunner().invoke(main, ["push", str(folder), "--repo", "me/lite0"])
    assert result.exit_code == 1 and "me/lite0: no Hugging Face token" in result.output
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    result = CliRunner().invoke(main, ["push", str(folder), "--repo", "me/lite0"])  # HF_HUB_OFFLINE=1 in the tests
    assert result.exit_code == 1 and "me/lite0: upload failed" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["push", str(empty), "--repo", "me/lite0"])
    assert result.exit_code == 1 and "no model.safetensors" in result.output
