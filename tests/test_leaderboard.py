"""`zoo leaderboard`: every model trained for one wall-clock budget on one split, scored on held-out photos."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import reset_discovery

from zoo import leaderboard
from zoo.cli.harness import leaderboard as leaderboard_command
from zoo.data import resolve_source

REGISTRY = """
[defaults]
image_size = 32
batch_size = 4

[models.tiny-cnn]
generator = { arch = "simple-cnn", width = 8, depth = 2 }
[[models.tiny-cnn.stages]]
name = "regress"
loss = { mse = 1 }
epochs = 1000

[models.tiny-gan]
generator = { arch = "simple-cnn", width = 8, depth = 2 }
discriminator = { arch = "patchgan", ndf = 8, n_layers = 1 }
[[models.tiny-gan.stages]]
name = "gan"
loss = { l1 = 10, gan = 1 }
epochs = 1000
"""


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY)
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    reset_discovery()
    yield path
    monkeypatch.undo()
    reset_discovery()


def test_every_model_gets_the_same_budget_and_the_references(tiny_registry, tmp_path, monkeypatch):
    train_list, score_list = tmp_path / "train.txt", tmp_path / "score.txt"
    train_list.write_text("\n".join(str(p) for p in resolve_source("sample-train")[:12]))
    score_list.write_text("\n".join(str(p) for p in resolve_source("heldout")[:4]))
    out = tmp_path / "lb"
    args = ["--budget", "3s", "--data", str(train_list), "--score-data", str(score_list), "--image-size", "32",
            "--device", "cpu", "--out", str(out)]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(leaderboard_command, args)
    assert result.exit_code == 0, result.output
    [path] = out.glob("leaderboard-*.json")
    doc = json.loads(path.read_text())
    rows = {row["model"]: row for row in doc["rows"]}
    assert list(rows) == ["tiny-cnn@3s", "tiny-gan@3s", "gray", "truth"]
    for name in ("tiny-cnn@3s", "tiny-gan@3s"):
        row = rows[name]
        assert row["error"] is None and row["budget_s"] == 3.0 and row["steps"] >= 1 and row["psnr"] > 0
        run = json.loads((out / "runs" / name.replace("@", "-") / "run.json").read_text())
        assert run["options"]["max_time"] == 3.0 and run["options"]["seed"] == 0
        assert (out / doc["samples"][name]).is_file()
    splits = [json.loads((out / "runs" / n / "split.json").read_text()) for n in ("tiny-cnn-3s", "tiny-gan-3s")]
    assert splits[0] == splits[1]  # one split for every model
    assert rows["gray"]["images"] == 4 and rows["truth"]["ssim"] == pytest.approx(1.0)
    assert (out / "plots" / f"{path.stem}-quality-vs-budget.png").is_file()
    assert doc["settings"]["budgets_s"] == [3.0] and doc["protocol"]["images"] == 4

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(leaderboard, "train", no_training)
    again = CliRunner(env={"COLUMNS": "250"}).invoke(leaderboard_command, args)
    assert again.exit_code == 0 and "using the finished run" in again.output
