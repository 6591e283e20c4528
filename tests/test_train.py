"""Training: every registry model a few steps on the embedded sample, checkpoints, resume after SIGKILL,
time budgets, DDP on gloo, and (slow) a GAN recipe that learns."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo import checkpoint
from zoo.data import EmptyDatasetError, resolve_source
from zoo.runtime import setup_runtime
from zoo.train import StageSummary, Stop, TrainOptions, _cpu_budget, read_summary, resume, train

FAST = {"image_size": 64, "batch_size": 4, "workers": 0, "progress": False, "log_every": 1}


def options(tmp_path: Path, model: str, **kw) -> TrainOptions:
    return TrainOptions(out=tmp_path / model, **(FAST | kw))


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("model", zoo.list_models())
def test_every_model_trains_a_few_steps_on_the_sample(tmp_path, model):
    said = []
    summary = train(model, options(tmp_path, model, max_steps=2), echo=said.append)
    run_dir = Path(summary.run_dir)
    assert read_summary(run_dir) == summary  # what the leaderboard reads of a finished run
    spec = zoo.get_spec(model)
    assert [s.stage for s in summary.stages] == [s.name for s in spec.stages]
    assert all(set(s.branch_steps or [s.steps]) == {2} and s.stopped == "max_steps" for s in summary.stages)
    logged = [r for r in records(run_dir) if r["kind"] == "train"]
    assert logged and all(math.isfinite(v) for r in logged for k, v in r.items() if k.startswith(("g_", "d_")))
    if spec.discriminator is not None:
        assert {"g_l1", "g_gan", "d_real", "d_fake"} <= set(logged[-1])
    if spec.generator.arch == "pix2pix-unet":  # a 64 px image cannot go 8 levels down: the depth adapts, and says so
        assert f"{model}: num_downs 8 -> 6 for 64 px" in said
        assert json.loads((run_dir / "run.json").read_text())["spec"]["generator"]["num_downs"] == 6
    split = json.loads((run_dir / "split.json").read_text())
    # The default data is the sample without the 50 held-out photos (and their near-copies): none is trained on.
    assert len(split["train"]) + len(split["val"]) == 257 and not set(split["train"]) & set(split["val"])
    assert not {Path(p).name for p in split["train"] + split["val"]} & {p.name for p in resolve_source("heldout")}
    assert list((run_dir / "samples").glob("*.png"))  # of validation photos, else of training photos
    if spec.val_fraction > 0:
        assert math.isfinite(summary.val_l1) and 0 < summary.val_l1 < 2
    else:  # a recipe chosen by cross-validation trains on every photo and validates nothing
        assert summary.val_l1 is None and split["val"] == []
    # The inference checkpoint re-reads into a predictor (generator + decoder) holding exactly the trained weights.
    loaded_spec, predictor = checkpoint.load_generator(run_dir / "generator.safetensors")
    assert loaded_spec.name == model
    trained = load_file(run_dir / "generator.safetensors")
    assert all(torch.equal(trained[k], v) for k, v in predictor.state_dict().items())
    assert any(k.startswith("generator.") for k in predictor.state_dict())


def test_plugin_model_trains_like_any_other(tmp_path, example_plugin):
    summary = train("example-residual-gan", TrainOptions(out=tmp_path / "plugin", max_steps=3, **FAST), echo=lambda s: None)
    assert summary.steps == 3 and math.isfinite(summary.val_l1)


def test_plugin_objective_trains_a_model(tmp_path, example_plugin):
    """The example plugin's Huber objective (one file and an entry point) trains a model, logged as g_<name>."""
    import torch.nn.functional as F

    summary = train("example-residual-huber", TrainOptions(out=tmp_path / "huber", max_steps=3, **FAST),
                    echo=lambda s: None)
    logged = [r for r in records(Path(summary.run_dir)) if r["kind"] == "train"]
    assert [r["step"] for r in logged] == [1, 2, 3] and all(0 < r["g_example-huber"] < 0.05 for r in logged)
    # What it logs is the Huber loss: recompute step 1's from the same seed's first batch and initial weights.
    spec = zoo.get_spec("example-residual-huber")
    assert spec.objectives == {"example-huber": {"delta": 0.05}}
    huber = zoo.registry.OBJECTIVES.create("example-huber", delta=0.05)
    ab_pred, ab = torch.tensor([[0.0, 0.2]]), torch.tensor([[0.03, 0.0]])
    expected = float(F.huber_loss(ab_pred, ab, delta=0.05))
    assert expected == pytest.approx((0.5 * 0.03**2 + 0.05 * (0.2 - 0.025)) / 2)
    from zoo.objectives import Batch

    assert float(huber(Batch(ab[:, :1, None, None], ab[..., None, None], ab_pred[..., None, None]))) == pytest.approx(expected)


def test_max_time_stops_cleanly_with_a_checkpoint(tmp_path):
    summary = train("unet-resnet18-gan", options(tmp_path, "unet-resnet18-gan", max_time=2.0), echo=lambda s: None)
    assert [s.stopped for s in summary.stages] == ["max_time", "max_time"]
    meta = checkpoint.read_meta(Path(summary.run_dir) / "checkpoints" / "last.safetensors")
    assert meta["position"]["stage"] == 2 and meta["position"]["step"] == summary.steps


def test_cpu_without_a_length_gets_a_budget_and_is_told_the_cost():
    said = []
    opts = _cpu_budget(zoo.get_spec("unet-resnet18-gan"), TrainOptions(device="cpu"), setup_runtime("cpu"), said.append)
    assert opts.max_time == 600.0
    assert "pretrain: 20 epochs of batch 16 at 256 px, gan: 20 epochs" in said[0] and "--max-time" in said[0]
    opts = _cpu_budget(zoo.get_spec("simple-cnn"), TrainOptions(device="cpu", epochs=1), setup_runtime("cpu"), said.append)
    assert opts.max_time is None and len(said) == 1


def test_dataset_without_usable_images_fails_before_training(tmp_path, photos_dir):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "notes.jpg").write_text("not an image")
    (data / "cut.jpg").write_bytes((photos_dir / "darknet--dog.jpg").read_bytes()[:2000])
    with pytest.raises(EmptyDatasetError, match="no usable images"):
        train("simple-cnn", options(tmp_path, "simple-cnn", data=str(data), max_steps=1), echo=lambda s: None)
    (data / "dog.jpg").write_bytes((photos_dir / "darknet--dog.jpg").read_bytes())
    with pytest.raises(EmptyDatasetError, match="gives 1 training and 0 validation images"):
        train("simple-cnn", options(tmp_path, "simple-cnn", data=str(data), max_steps=1), echo=lambda s: None)
    assert not (tmp_path / "simple-cnn" / "checkpoints").exists()


def _zoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo.cli", *args]


@pytest.mark.parametrize(("model", "settings"), [
    ("pix2pix-unet-gan", {"ngf": 16}),  # dropout: the RNG state must be restored too
    ("unet-effnet-lite0-guided", {"decoder_channels": [32, 16, 16, 8, 8]}),  # hints drawn from it every step
])
def test_killed_run_resumes_to_the_same_weights(tmp_path, model, settings):
    """SIGKILL mid-stage, resume, and end with exactly the weights of an uninterrupted run of the same seed."""
    common = ["--image-size", "64", "--batch-size", "4", "--max-steps", "6", "--workers", "0", "--no-progress",
              "--checkpoint-every", "2", "--seed", "3", *(f"--set={k}={v}" for k, v in settings.items())]
    reference = train(model, TrainOptions(out=tmp_path / "reference", max_steps=6, seed=3, checkpoint_every=2,
                                          generator=settings, **FAST), echo=lambda s: None)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_zoo("train", model, "--out", str(killed), *common), stdout=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if last.exists() and checkpoint.read_meta(last)["position"]["step"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = checkpoint.read_meta(last)["position"]["step"]
    assert 2 <= step_at_kill < 6
    resumed = resume(killed, echo=lambda s: None, progress=False)
    assert resumed.steps == reference.steps
    ours = load_file(killed / "generator.safetensors")
    theirs = load_file(Path(reference.run_dir) / "generator.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    d_ours = checkpoint.load(killed / "checkpoints" / "last.safetensors", "discriminator.")
    d_theirs = checkpoint.load(Path(reference.run_dir) / "checkpoints" / "last.safetensors", "discriminator.")
    assert all(torch.equal(d_ours[k], d_theirs[k]) for k in d_ours)


def test_torchrun_two_processes_on_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun's log folder stays behind
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533", "-m", "zoo.cli",
           "train", "unet-resnet18-gan", "--out", str(out), "--image-size", "64", "--batch-size", "4", "--max-steps", "3",
           "--workers", "0", "--no-progress"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("training unet-resnet18-gan") == 1  # rank 0 speaks
    assert "x2" in result.stdout
    logged = [r for r in records(out) if r["kind"] == "train"]
    assert [r["step"] for r in logged] == [1, 4]  # the first step of each stage, logged once (by rank 0)
    assert checkpoint.read_meta(out / "checkpoints" / "last.safetensors")["position"]["step"] == 6


@pytest.mark.slow
def test_gan_recipe_learns(tmp_path):
    """Longer run on 8 photos (7 train, one batch an epoch): G's L1 falls well below where the zero-initialised
    head starts it (at gray, ab = 0); the GAN stage trains D alone for its 100 warm-up steps, then G too, and G
    keeps its L1; D learns to tell real from fake (does not collapse to a constant)."""
    photos = tmp_path / "photos.txt"
    photos.write_text("\n".join(str(p) for p in resolve_source("sample-train")[:8]))
    summary = train("unet-resnet18-gan", options(tmp_path, "unet-resnet18-gan", data=str(photos), epochs=160,
                                                 max_steps=160, batch_size=8), echo=lambda s: None)
    logged = [r for r in records(Path(summary.run_dir)) if r["kind"] == "train"]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in logged))
    pre = [r["g_l1"] for r in logged if r["stage"] == "pretrain"]
    gan = [r for r in logged if r["stage"] == "gan"]
    assert len(pre) == len(gan) == 160
    assert mean(pre[-20:]) < 0.7 * mean(pre[:20])  # measured: 0.039 vs 0.081
    assert mean([r["g_l1"] for r in gan[-20:]]) < 0.7 * mean(pre[:20])
    assert all(r["g_gan"] == 0.0 for r in gan[:100]) and all(r["g_gan"] != 0.0 for r in gan[100:])
    d_loss = [(r["d_real"] + r["d_fake"]) / 2 for r in gan[-40:]]
    assert mean(d_loss) < 1.0  # hinge: a D that outputs 0 everywhere (chance) scores 1
    assert len({round(v, 4) for v in d_loss}) > 10  # not a constant


@pytest.mark.parametrize(
    ("model", "speedups"),
    [("simple-cnn", {"amp": "bf16", "channels_last": True, "compile": True}), ("unet-resnet18-gan", {"amp": "fp16"})],
    ids=["bf16-channels_last-compile", "fp16-gradscaler-gan"],
)
def test_gpu_speed_paths_run_on_cpu(tmp_path, model, speedups):
    """The AMP, channels_last and torch.compile paths, exercised where they have a CPU meaning."""
    opts = options(tmp_path, model, image_size=32, batch_size=2, max_steps=2, **speedups)
    summary = train(model, opts, echo=lambda s: None)
    assert summary.steps == 2 * len(zoo.get_spec(model).stages) and math.isfinite(summary.val_l1)
    last = Path(summary.run_dir) / "checkpoints" / "last.safetensors"
    meta = checkpoint.read_meta(last)
    keys = load_file(last).keys()
    assert not any("_orig_mod" in k or k.startswith("generator.module.") for k in keys)  # plain module names
    if speedups["amp"] == "fp16":
        assert meta["scaler"]["scale"] > 0  # the GradScaler is on and its state is checkpointed
    _, generator = checkpoint.load_generator(Path(summary.generator))
    assert generator(torch.zeros(1, 1, 32, 32)).dtype == torch.float32


def test_learning_rate_decays_linearly_per_epoch(tmp_path, photos_dir):
    data = tmp_path / "six"
    data.mkdir()
    for photo in sorted(photos_dir.glob("darknet--*.jpg")):
        (data / photo.name).write_bytes(photo.read_bytes())
    opts = options(tmp_path, "pix2pix-unet-gan", data=str(data), epochs=2, generator={"ngf": 8})
    summary = train("pix2pix-unet-gan", opts, echo=lambda s: None)
    logged = [r for r in records(Path(summary.run_dir)) if r["kind"] == "train"]
    assert [r["epoch"] for r in logged] == [0, 1]  # 5 train photos, batch 4: one step an epoch
    assert [r["lr"] for r in logged] == pytest.approx([2e-4 * 2 / 3, 2e-4 / 3])


def test_recipes_for_the_hardware_and_time_shares(tmp_path, monkeypatch):
    """A model's `cpu` table replaces its stage settings on a CPU only; under --max-time the stages split the
    budget by their time_share; channels_last is on by default on a CPU."""
    from conftest import reset_discovery

    from zoo.train import Trainer, resolve_spec

    registry = tmp_path / "registry.toml"
    registry.write_text(
        '[models.m]\ngenerator = { arch = "simple-cnn", width = 4, depth = 2 }\n'
        'cpu = { image_size = 48, crop_scale = [0.5, 1.0] }\n'
        '[[models.m.stages]]\nname = "a"\nloss = { l1 = 1 }\nepochs = 1\nimage_size = 256\ntime_share = 3\n'
        '[[models.m.stages]]\nname = "b"\nloss = { mse = 1 }\nepochs = 1\nimage_size = 256\n'
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    reset_discovery()
    try:
        on_cpu = resolve_spec("m", TrainOptions(), "cpu", echo=lambda s: None)
        on_gpu = resolve_spec("m", TrainOptions(), "cuda", echo=lambda s: None)
        assert [(s.image_size, s.crop_scale) for s in on_cpu.stages] == [(48, (0.5, 1.0))] * 2
        assert [(s.image_size, s.crop_scale) for s in on_gpu.stages] == [(256, None)] * 2
        assert resolve_spec("m", TrainOptions(image_size=64), "cpu", echo=lambda s: None).stages[0].image_size == 64
        trainer = Trainer(on_cpu, TrainOptions(max_time=100.0), tmp_path / "run", setup_runtime("cpu"))
        assert trainer.stage_deadline(0) == pytest.approx(75.0, abs=0.5)  # 3 / (3 + 1) of the budget
        assert trainer.channels_last
        conv = trainer.model.generator.encoder[0]
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        monkeypatch.undo()
        reset_discovery()


def test_validation_every_n_steps_on_tiny_epochs_and_fine_tuning_from_a_checkpoint(tmp_path):
    """With 1-step epochs, validation (and its checkpoint) comes at the first epoch end validate_every steps on,
    and at the end; a run started with --init begins from that checkpoint's generator."""
    six = tmp_path / "six.txt"  # 5 training photos, batch 4: one step an epoch
    six.write_text("\n".join(str(p) for p in resolve_source("sample-train")[:6]))
    first = train("simple-cnn", options(tmp_path, "first", data=str(six), max_steps=12, validate_every=5,
                                        generator={"width": 8}), echo=lambda s: None)
    logged = records(first.run_dir)
    assert [r["step"] for r in logged if r["kind"] == "val"] == [5, 10, 12]
    assert [r["epoch"] for r in logged if r["kind"] == "train"][-1] == 11
    init = first.generator
    tuned = train("simple-cnn", options(tmp_path, "tuned", max_steps=1, lr=1e-12, init=init,
                                        generator={"width": 8}), echo=lambda s: None)
    before, after = load_file(init), load_file(tuned.generator)
    convs = [k for k in before if k.endswith(".weight") and before[k].dim() == 4]
    assert convs and all(torch.allclose(before[k], after[k], atol=1e-9) for k in convs)
    with pytest.raises(checkpoint.CheckpointError, match="holds a simple-cnn generator"):
        train("unet-resnet18", options(tmp_path, "wrong", max_steps=1, init=init), echo=lambda s: None)


def test_a_stage_with_branches_averages_them_and_resumes_mid_branch(tmp_path, monkeypatch):
    """A stage with branches = 2 trains twice from the weights it starts with (two Adam steps a branch, so
    every trained weight ends within about 2 lr of the start: a branch chained onto the other would not), ends
    with the numpy mean of the branches, and a run interrupted mid-branch resumes to exactly those weights."""
    from conftest import reset_discovery

    from zoo.train import Trainer

    registry = tmp_path / "registry.toml"
    registry.write_text(
        '[models.m]\ngenerator = { arch = "simple-cnn", width = 4, depth = 2 }\nimage_size = 48\nbatch_size = 4\n'
        '[[models.m.stages]]\nname = "a"\nloss = { l1 = 1 }\nepochs = 2\n'
        '[[models.m.stages]]\nname = "b"\nloss = { l1 = 1 }\nepochs = 1\nbranches = 2\n'
        'optimizer = { lr = 1e-3, betas = [0.9, 0.999] }\n'
    )
    six = tmp_path / "six.txt"  # 5 training photos, batch 4: one step an epoch
    six.write_text("\n".join(str(p) for p in resolve_source("sample-train")[:6]))
    monkeypatch.setenv("ZOO_REGISTRY", str(registry))
    reset_discovery()
    try:
        run = lambda name, **kw: train("m", options(tmp_path, name, data=str(six), image_size=48, **kw), echo=lambda s: None)  # noqa: E731
        summary = run("reference", epochs=2)
        assert dataclasses.replace(summary.stages[1], val_l1=None) == StageSummary("b", 4, Stop.DONE, None, [2, 2])
        ends = [(r["stage"], r.get("branch"), r["steps"], r["of"], r["stopped"])
                for r in records(Path(summary.run_dir)) if r.get("kind") == "end"]
        assert ends == [("a", None, 2, 2, "done"), ("b", 0, 2, 2, "done"), ("b", 1, 2, 2, "done")]
        folder = Path(summary.run_dir) / "branches"
        start, *branches, soup = (load_file(folder / f"1-b-{b}.safetensors") for b in ("start", 0, 1, "soup"))
        trained = [k for k in start if k.startswith("generator.") and k.endswith(".weight")]
        # Adam (betas 0.9, 0.999) moves a weight by at most lr in step 1 and sqrt(2) * sqrt(0.09^2 + 0.1^2) / 0.19
        # = 1.0013 lr in step 2 (Cauchy-Schwarz on the bias-corrected moments)
        for branch in branches:
            assert max((branch[k] - start[k]).abs().max().item() for k in trained) <= 2.0014e-3
        assert not torch.equal(branches[0][trained[0]], branches[1][trained[0]])  # own data orders
        for key, value in soup.items():
            expected = (branches[0][key].double().numpy() + branches[1][key].double().numpy()) / 2
            assert value.dtype == start[key].dtype and np.allclose(value.double().numpy(), expected, rtol=0, atol=1e-7)
        final = load_file(Path(summary.generator))
        assert all(torch.equal(final[k], soup[k]) for k in soup)
        assert [r["val_l1"] for r in records(Path(summary.run_dir)) if r.get("branch") == "soup"] == [summary.val_l1]

        calls = []  # interrupt the second epoch of branch 1: its first epoch's checkpoint is the last one written
        original = Trainer.train_epoch

        def interrupted(self, *args, **kw):
            calls.append(self.position.branch)
            if calls.count(1) == 2:
                raise KeyboardInterrupt
            return original(self, *args, **kw)

        monkeypatch.setattr(Trainer, "train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run("interrupted", epochs=2, validate_every=1)
        monkeypatch.setattr(Trainer, "train_epoch", original)
        assert checkpoint.read_meta(tmp_path / "interrupted" / "checkpoints" / "last.safetensors")["position"]["branch"] == 1
        resumed = resume(tmp_path / "interrupted", echo=lambda s: None, progress=False)
        ours = load_file(Path(resumed.generator))
        assert all(torch.equal(ours[k], final[k]) for k in final)
        assert resumed.stages[-1].branch_steps == [2, 2]  # branch 0 ended before the interruption

        said = []  # a budget spent before any stage starts: every stage and branch stops after its first step
        cut = train("m", options(tmp_path, "cut", data=str(six), image_size=48, epochs=2, max_time=1e-3),
                    echo=said.append)
        assert [(s.steps, s.branch_steps, s.stopped) for s in cut.stages] == [
            (1, None, "max_time"), (2, [1, 1], "max_time")]
        assert [line for line in said if "--max-time" in line] == [
            "a: its share of --max-time is spent: stopped at 1 of 2 steps",
            "b branch 1 of 2: its share of --max-time is spent: stopped at 1 of 2 steps",
            "b branch 2 of 2: its share of --max-time is spent: stopped at 1 of 2 steps"]
    finally:
        monkeypatch.undo()
        reset_discovery()


def test_val_fraction_zero_trains_on_every_photo_without_validation(tmp_path):
    """val_fraction 0 (a model's own, or --val-fraction): all photos train, nothing validates, the run still
    checkpoints, draws sample grids (of training photos) and writes its generator; --keep-best then has nothing
    to keep and is refused before training."""
    six = tmp_path / "six.txt"
    six.write_text("\n".join(str(p) for p in resolve_source("sample-train")[:6]))
    kw = {"data": str(six), "max_steps": 3, "validate_every": 1, "generator": {"width": 8}}
    summary = train("simple-cnn", options(tmp_path, "all", val_fraction=0.0, **kw), echo=lambda s: None)
    run_dir = Path(summary.run_dir)
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]) == 6 and split["val"] == [] and split["val_fraction"] == 0
    assert summary.val_l1 is None and not [r for r in records(run_dir) if r["kind"] == "val"]
    assert checkpoint.read_meta(run_dir / "checkpoints" / "last.safetensors")["position"]["step"] == 3
    assert (run_dir / "generator.safetensors").is_file()
    grids = sorted((run_dir / "samples").glob("*.png"))
    assert [g.name for g in grids] == [f"0-regress-epoch00{e}.png" for e in range(3)]  # 3 one-step epochs, each ends so
    with pytest.raises(EmptyDatasetError, match="--keep-best needs validation photos"):
        train("simple-cnn", options(tmp_path, "best", val_fraction=0.0, keep_best=True, **kw), echo=lambda s: None)
    assert not (tmp_path / "best").exists()
    spec = zoo.get_spec("simple-cnn")
    assert spec.val_fraction == 0.1 and "val_fraction" not in spec.to_dict()
