"""The training loop: a model's recipe stages, in order, with checkpoints, resume, progress and DDP.

One path through it::

    train(model, options)
      resolve_spec -> setup_runtime -> scan and split the photos -> run.json, split.json
      Trainer(spec).fit(train, val)
        objectives.prepare(training batches)             # data-dependent state (a colour prior), fresh runs only
        for each stage:  fit_stage (once, or once per branch from the stage's starting weights, then their mean)
          for each epoch:  train_epoch
            for each batch:  Trainable.step              # objectives' own steps, then the generator's
          validate (val L1 of decoded ab, sample grid), checkpoint
        generator.safetensors

The loop knows no loss: a stage's :class:`zoo.objectives.StageLoss` (from ``loss = { l1 = 100, gan = 1 }``)
holds them, and :class:`zoo.trainable.Trainable` takes the step. The run folder is described in :mod:`zoo.runs`; ``checkpoints/last.safetensors`` holds everything
needed to resume bit for bit: weights, objective state, optimisers, scaler and RNG state, the position in the
epoch.

Before anything is written, the run folder passes :func:`zoo.outputs.run_folder` (a new run never goes into a
folder holding another; resuming cleans the temporaries a killed run left), the model is built and the photos
are scanned, so that a bad setting or source leaves no half-made run behind. A resumed run keeps what it
trains (its model, data, lengths and settings): asking for another value of those is a :class:`ResumeError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from zoo import checkpoint, outputs, runs
from zoo.color import rgb_uint8_to_lab_normalized
from zoo.data import (
    ColorizationDataset,
    EmptyDatasetError,
    EpochSampler,
    make_loader,
    resolve_source,
    scan_images,
    split_paths,
)
from zoo.downloads import cache_root
from zoo.errors import ZooError
from zoo.images import write_sample_grid
from zoo.runtime import (
    AmpMode,
    Runtime,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_runtime,
    unwrap,
    use_channels_last,
)
from zoo.spec import ModelSpec, SpecError, StageSpec, adapt_to_image_size, building, get_spec, spec_from_dict
from zoo.trainable import Optimizers, Trainable

CPU_DEFAULT_BUDGET = 10 * 60.0  # seconds: what a CPU run without --epochs/--max-steps/--max-time gets
RESUMABLE = frozenset({"max_time", "progress", "workers", "device"})  # options a resumed run may change: how, not what


class Stop(str, enum.Enum):
    """Why a stage (or a branch of one) stopped, the least cut first: its recipe's whole length, --max-steps, or
    its share of --max-time."""

    DONE = "done"
    MAX_STEPS = "max_steps"
    MAX_TIME = "max_time"


@dataclass
class StageSummary:
    """One stage of a run: its steps (a soup's: its branches' together, each in ``branch_steps``), why it
    stopped (a soup: the most cutting reason of any branch) and its validation L1 (None without validation)."""

    stage: str
    steps: int
    stopped: Stop
    val_l1: float | None
    branch_steps: list[int] | None = None


@dataclass
class TrainSummary:
    """What a run did: its stages, its steps in all, the last validation L1, the best one and its step (with
    --keep-best), the inference checkpoint and the run folder. Written to the run folder as ``summary.json``
    (:func:`read_summary`), which the leaderboard reads."""

    stages: list[StageSummary]
    steps: int
    val_l1: float | None
    best: tuple[float, int] | None
    generator: Path
    run_dir: Path

    def to_json(self) -> dict[str, Any]:
        return {"stages": [dataclasses.asdict(stage) | {"stopped": stage.stopped.value} for stage in self.stages],
                "steps": self.steps, "val_l1": self.val_l1, "best": None if self.best is None else list(self.best),
                "generator": str(self.generator), "run_dir": str(self.run_dir)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainSummary:
        stages = [StageSummary(**(stage | {"stopped": Stop(stage["stopped"])})) for stage in data["stages"]]
        best = None if data["best"] is None else (data["best"][0], data["best"][1])
        return cls(stages, data["steps"], data["val_l1"], best, Path(data["generator"]), Path(data["run_dir"]))


def read_summary(run_dir: Path) -> TrainSummary:
    """The :class:`TrainSummary` a finished run wrote; a RunError naming the file otherwise."""
    data = runs.read_json(run_dir, runs.SUMMARY_FILE, keys=("stages", "steps", "val_l1", "best", "generator"))
    try:
        return TrainSummary.from_json(data | {"run_dir": str(run_dir)})
    except (KeyError, TypeError, ValueError) as err:
        raise runs.RunError(f"{run_dir / runs.SUMMARY_FILE}: not a run summary ({err})") from None


class ResumeError(ZooError, ValueError):
    """A resumed run asked to change what it trains; the message names the run and the options."""


@dataclass
class TrainOptions:
    """What ``zoo train`` can change; ``None`` keeps the recipe's value."""

    data: str = "sample-train"  # the embedded sample without the held-out photos
    out: Path | None = None
    epochs: int | None = None
    max_steps: int | None = None  # optimiser steps per stage
    max_time: float | None = None  # seconds for the whole run
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    device: str = "auto"
    amp: AmpMode = "auto"
    channels_last: bool | None = None  # None: on for CPU (zoo.runtime.use_channels_last)
    compile: bool = False
    seed: int = 0
    val_fraction: float | None = None  # photos held out for validation; None: the model's (0.1 unless it says)
    workers: int | None = None
    checkpoint_every: int = 200  # steps
    validate_every: int = 100  # steps: validation (and its checkpoint) at the first epoch end this many steps on
    log_every: int = 10  # steps
    init: Path | None = None  # start the generator from this checkpoint's weights (fine-tuning)
    keep_best: bool = False  # generator.safetensors holds the weights of the best validation L1, not the last
    progress: bool = True
    generator: dict[str, Any] = field(default_factory=dict)  # generator setting overrides

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def resolve_spec(name: str, options: TrainOptions, device_type: str = "cpu",
                 echo: Callable[[str], None] = print) -> ModelSpec:
    """The model's recipe for ``device_type`` with the options' overrides applied to every stage, its generator
    fitted to the image size."""
    stage = {k: getattr(options, k) for k in ("epochs", "batch_size", "lr", "image_size") if getattr(options, k)}
    spec = get_spec(name).for_device(device_type).with_overrides(generator=options.generator, **stage)
    spec, note = adapt_to_image_size(spec, min(s.image_size for s in spec.stages))
    if note:
        echo(f"{spec.name}: {note}")
    return spec


def set_lr(stage: StageSpec, epoch: int, optimizers: Optimizers) -> None:
    """The stage's learning rates for ``epoch``: derived from the epoch, so a resumed run needs no scheduler state."""
    factor = stage.lr_factor(epoch)
    for opt, spec in zip(optimizers, (stage.optimizer, stage.discriminator_optimizer)):
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = spec.lr * factor


@dataclass
class Position:
    """Where a run is: stage, epoch, batches done in that epoch, optimiser steps in the stage and overall."""

    stage: int = 0
    branch: int = 0  # in a stage with branches, the one training (each starts at epoch 0 and stage_step 0)
    epoch: int = 0
    batch: int = 0
    stage_step: int = 0
    step: int = 0
    elapsed: float = 0.0  # training seconds before this process (for --max-time across resumes)
    ended: list[list[Any]] = field(default_factory=list)  # this stage's finished branches: [steps, why they stopped]


@dataclass
class StageData:
    """The loaders of one stage and the batch arithmetic they imply."""

    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None  # None: no validation photos (val_fraction 0)
    preview_loader: torch.utils.data.DataLoader | None  # without validation photos: 4 training photos for the grids
    sampler: EpochSampler
    batch_size: int
    steps_per_epoch: int


class Trainer:
    """Runs a model's recipe stages on a dataset; see the module docstring for the loop."""

    def __init__(self, spec: ModelSpec, options: TrainOptions, run_dir: Path, runtime: Runtime,
                 echo: Callable[[str], None] = print) -> None:
        self.spec, self.options, self.run_dir, self.rt, self.echo = spec, options, run_dir, runtime, echo
        seed_everything(options.seed)
        self.channels_last = use_channels_last(options.channels_last, runtime.device)
        with building(spec):
            self.model = Trainable(spec, runtime, channels_last=self.channels_last, compile=options.compile)
        self.position = Position()
        self.started = time.monotonic()
        self.log = runs.RunLog(run_dir, runtime.is_main)
        self.validated_at = 0  # the step of the last validation (or where this process started)
        self.best: tuple[float, int] = (math.inf, 0)  # the best validation L1 so far and its step

    # -- checkpoints

    def save(self, optimizers: Optimizers | None = None) -> None:
        """Write ``checkpoints/last.safetensors`` (rank 0; others wait); without optimisers, none are stored."""
        if self.rt.is_main:
            tensors = self.model.inference_tensors()
            meta: dict[str, Any] = {
                "model": self.spec.name,
                "spec": self.spec.to_dict(),
                "position": dataclasses.asdict(self.position) | {"elapsed": self.elapsed()},
                "best": list(self.best),
                "scaler": self.model.scaler.state_dict(),
            }
            for name, opt in zip(("generator", "discriminator"), optimizers or (None, None)):
                if opt is not None:
                    opt_tensors, meta[f"optim.{name}"] = checkpoint.pack_optimizer(opt)
                    tensors |= checkpoint.prefixed(f"optim.{name}.", opt_tensors)
            if self.model.discriminator is not None:
                tensors |= checkpoint.prefixed("discriminator.", unwrap(self.model.discriminator).state_dict())
            tensors |= checkpoint.prefixed("rng.", rng_state())
            checkpoint.save(self.run_dir / runs.LAST_CHECKPOINT, tensors, meta)
        if self.rt.distributed:
            dist.barrier()

    def save_generator(self, path: Path | None = None) -> Path:
        """Write an inference checkpoint (predictor, objective state and spec), ``generator.safetensors`` by
        default; with ``keep_best``, the end of the run copies the best validation's to it instead."""
        best = self.run_dir / runs.BEST_FILE
        target = path or self.run_dir / runs.GENERATOR_FILE
        if self.rt.is_main:
            meta = {"model": self.spec.name, "spec": self.spec.to_dict(), "step": self.position.step}
            if path is None and self.options.keep_best and best.exists():
                checkpoint.save(target, checkpoint.load(best), checkpoint.read_meta(best))
            else:
                checkpoint.save(target, self.model.inference_tensors(), meta)
        return target

    def restore(self, path: Path) -> dict[str, Any]:
        """Load weights, objective state, RNG state and position from ``path``; returns the header."""
        meta = checkpoint.read_meta(path)
        try:
            position = Position(**meta["position"])
            scaler = dict(meta["scaler"])
        except (KeyError, TypeError, ValueError):
            raise checkpoint.CheckpointError(f"{path}: not a training checkpoint (no position or scaler state)") from None
        self.load_inference(path)
        if self.model.discriminator is not None:
            checkpoint.load_module(unwrap(self.model.discriminator), path, "discriminator.")
        self.model.scaler.load_state_dict(scaler)
        set_rng_state(checkpoint.load(path, "rng."))
        self.position = position
        self.best = tuple(meta.get("best", (math.inf, 0)))
        return meta

    def restore_optimizers(self, path: Path, meta: dict[str, Any], optimizers: Optimizers) -> None:
        for name, opt in zip(("generator", "discriminator"), optimizers):
            if opt is not None and f"optim.{name}" in meta:
                tensors = checkpoint.load(path, f"optim.{name}.", device=self.rt.device)
                checkpoint.unpack_optimizer(opt, tensors, meta[f"optim.{name}"])

    # -- the loop

    def elapsed(self) -> float:
        return self.position.elapsed + time.monotonic() - self.started

    def fit(self, train_paths: list[Path], val_paths: list[Path], resume: Path | None = None) -> TrainSummary:
        """Run every remaining stage; returns what the run did (per-stage steps, val L1 and why it stopped)."""
        meta = self.restore(resume) if resume is not None else None
        self.validated_at = self.position.step
        if resume is None:
            self.prepare_objectives(train_paths)
        stages: list[StageSummary] = []
        for index in range(self.position.stage, len(self.spec.stages)):
            stage = self.spec.stages[index]
            if stage.branches > 1 and self.position.branch == 0 and self.position.stage_step == 0:
                self.save_generator(runs.branch_file(self.run_dir, index, stage.name, "start"))
            while True:
                optimizers = self.model.optimizers(stage)
                if meta is not None:
                    self.restore_optimizers(resume, meta, optimizers)
                    meta = None
                result = self.fit_stage(index, stage, train_paths, val_paths, optimizers)
                if stage.branches == 1:
                    break
                self.save_generator(runs.branch_file(self.run_dir, index, stage.name, self.position.branch))
                self.position.ended.append([result.steps, result.stopped.value])
                if self.position.branch + 1 == stage.branches:
                    result.val_l1 = self.average_branches(index, stage, train_paths, val_paths)
                    break
                self.load_inference(runs.branch_file(self.run_dir, index, stage.name, "start"))
                self.begin(index, self.position.branch + 1)
            if stage.branches > 1:
                result = branched(result, self.position.ended)
            stages.append(result)
            self.begin(index + 1)
        best = self.best if self.options.keep_best else None
        return TrainSummary(stages, self.position.step, stages[-1].val_l1 if stages else None, best,
                            self.save_generator(), self.run_dir)

    def begin(self, stage: int, branch: int = 0) -> None:
        """Move to the start of a stage (or of a branch of one: the stage's finished branches are kept) and
        checkpoint there without optimiser state: it starts with fresh optimisers."""
        ended = self.position.ended if branch > 0 else []
        self.position = Position(stage=stage, branch=branch, step=self.position.step, elapsed=self.elapsed(),
                                 ended=ended)
        self.started = time.monotonic()
        self.save()

    def average_branches(self, index: int, stage: StageSpec, train_paths: list[Path],
                         val_paths: list[Path]) -> float | None:
        """Load the mean of the stage's branches' weights (integer buffers from the first branch), kept as the
        stage's ``soup`` file, and validate it; returns its validation L1 (None without validation)."""
        paths = [runs.branch_file(self.run_dir, index, stage.name, b) for b in range(stage.branches)]
        soup = runs.branch_file(self.run_dir, index, stage.name, "soup")
        if self.rt.is_main:
            branches = [checkpoint.load(path) for path in paths]
            mean = {key: torch.stack([b[key] for b in branches]).mean(0) if value.is_floating_point() else value
                    for key, value in branches[0].items()}
            checkpoint.save(soup, mean, checkpoint.read_meta(paths[0]))
        if self.rt.distributed:
            dist.barrier()
        self.load_inference(soup)
        data = self.stage_data(index, stage, train_paths, val_paths)
        grid = self.run_dir / "samples" / f"{index}-{stage.name}-soup.png"
        return self.validate_and_record(data, grid, {"stage": stage.name, "branch": "soup"})

    def load_inference(self, path: Path) -> None:
        """Load the generator, decoder and objective state of ``path``, a checkpoint this run wrote (its training
        checkpoint, or a branch's inference checkpoint)."""
        checkpoint.load_module(unwrap(self.model.generator), path, "generator.")
        checkpoint.load_module(self.model.decode, path, "decoder.")
        checkpoint.load_module(self.model.objectives, path, "objective.")

    def start_from(self, path: Path) -> None:
        """Load the generator (and decoder) weights of checkpoint ``path``: fine-tuning a trained model. A model
        whose output objective grows a plain-ab head (``choices``) starts from a plain-ab model's generator, its
        head grown by the objective (:meth:`zoo.objectives.choices.Choices.grow`)."""
        meta = checkpoint.read_meta(path)
        init_spec = spec_from_dict(meta["model"], meta["spec"])
        output = self.spec.output_objective
        grow = getattr(self.model.objectives[output], "grow", None) if output else None
        grows = grow is not None and init_spec.output_objective is None
        if init_spec.generator.arch != self.spec.generator.arch or (
                init_spec.output_channels != self.spec.output_channels and not grows):
            raise checkpoint.CheckpointError(
                f"{path}: holds a {init_spec.generator.arch} generator of {init_spec.output_channels} outputs;"
                f" {self.spec.name} needs a {self.spec.generator.arch} of {self.spec.output_channels}")
        generator = unwrap(self.model.generator)

        def grown(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            """The head's tensors (those whose output dimension is ab's and the model's is more) grown."""
            own = generator.state_dict()
            return {key: grow(tensor.float()) if key in own and tensor.shape[:1] == (2,) and own[key].shape[0] > 2
                    else tensor for key, tensor in tensors.items()}

        checkpoint.load_module(generator, path, "generator.", adapt=grown if grows else None)
        checkpoint.load_module(self.model.decode, path, "decoder.")

    def prepare_objectives(self, train_paths: list[Path]) -> None:
        """Let objectives fit data-dependent state on the training photos (centre crops of the first stage)."""
        size = self.spec.stages[0].image_size

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            dataset = ColorizationDataset(train_paths, size, train=False)
            sampler = EpochSampler(len(dataset), 0, shuffle=False)
            loader = make_loader(dataset, 16, sampler=sampler, workers=self.options.workers, device_type=self.rt.device.type)
            yield from self.batches(loader)

        for objective in self.model.objectives.values():
            objective.prepare(batches())

    def fit_stage(self, index: int, stage: StageSpec, train_paths: list[Path], val_paths: list[Path],
                  optimizers: Optimizers) -> StageSummary:
        """Train one stage from the current position until its epochs, ``max_steps`` or its time share end."""
        data = self.stage_data(index, stage, train_paths, val_paths)
        length = stage.epochs * data.steps_per_epoch  # the recipe's steps for this stage (or branch)
        limit = length if self.options.max_steps is None else min(length, self.options.max_steps)
        deadline = self.stage_deadline(index)
        stop, val_l1 = None, None
        with self.progress(stage, limit) as advance:
            while self.position.epoch < stage.epochs and self.position.stage_step < limit:
                epoch = self.position.epoch
                stop = self.train_epoch(stage, data, optimizers, limit, deadline, advance)
                last = stop is not None or self.position.epoch >= stage.epochs
                if last or self.position.step - self.validated_at >= self.options.validate_every:
                    val_l1 = self.end_epoch(index, stage, epoch, data, optimizers)
                if stop is not None:
                    break
        if stop == "limit":
            stop = Stop.DONE if limit == length else Stop.MAX_STEPS
        stop = Stop(stop or Stop.DONE)
        where = {"stage": stage.name} | ({"branch": self.position.branch} if stage.branches > 1 else {})
        self.write_log({"kind": "end", **where, "step": self.position.step, "steps": self.position.stage_step,
                        "of": length, "stopped": stop.value})
        if stop is Stop.MAX_TIME and self.rt.is_main:
            branch = f" branch {self.position.branch + 1} of {stage.branches}" if stage.branches > 1 else ""
            self.echo(f"{stage.name}{branch}: its share of --max-time is spent: stopped at {self.position.stage_step}"
                      f" of {length} steps")
        return StageSummary(stage.name, self.position.stage_step, stop, val_l1)

    def stage_data(self, index: int, stage: StageSpec, train_paths: list[Path], val_paths: list[Path]) -> StageData:
        """Loaders of the stage's image and batch size; the batch shrinks to fit a small training set."""
        train_set = ColorizationDataset(train_paths, stage.image_size, train=True, crop_scale=stage.crop_scale)
        per_rank = math.ceil(len(train_set) / self.rt.world_size)
        batch_size = max(1, min(stage.batch_size, per_rank))
        shard = {"rank": self.rt.rank, "world_size": self.rt.world_size}
        loader_args = {"workers": self.options.workers, "device_type": self.rt.device.type}
        # each stage (and each branch of one) draws its own data order and crops
        sampler = EpochSampler(len(train_set), self.options.seed + 1000 * index + 100_000 * self.position.branch, **shard)
        val_loader = preview_loader = None
        if val_paths:
            val_set = ColorizationDataset(val_paths, stage.image_size, train=False)
            val_sampler = EpochSampler(len(val_set), 0, 0, shuffle=False, **shard)
            val_loader = make_loader(val_set, batch_size, sampler=val_sampler, **loader_args)
        else:  # the sample grids show centre crops of the first training photos instead
            preview_set = ColorizationDataset(train_paths[:4], stage.image_size, train=False)
            preview_loader = make_loader(preview_set, 4, sampler=EpochSampler(len(preview_set), 0, 0, shuffle=False),
                                         **loader_args)
        return StageData(
            train_loader=make_loader(train_set, batch_size, sampler=sampler, drop_last=True, **loader_args),
            val_loader=val_loader,
            preview_loader=preview_loader,
            sampler=sampler,
            batch_size=batch_size,
            steps_per_epoch=max(1, per_rank // batch_size),
        )

    def train_epoch(self, stage: StageSpec, data: StageData, optimizers: Optimizers, limit: int,
                    deadline: float | None, advance: Callable[[dict[str, float], float], None]) -> str | None:
        """Train from the current position to the end of the epoch; returns why it stopped early, if it did
        (``limit``: the stage's step limit, ``max_time``: its time share), else None."""
        epoch = self.position.epoch
        data.sampler.set_epoch(epoch, start=self.position.batch * data.batch_size)
        set_lr(stage, epoch, optimizers)
        stage_loss = self.model.stage_loss(stage)
        tick, seen, stop = time.perf_counter(), 0, None
        for L, ab in self.batches(data.train_loader):
            logs = self.model.step(stage_loss, L, ab, optimizers)
            if not all(math.isfinite(v) for v in logs.values()):
                raise FloatingPointError(f"{stage.name} step {self.position.step + 1}: loss not finite: {logs}")
            self.position.batch += 1
            self.position.stage_step += 1
            self.position.step += 1
            seen += L.shape[0] * self.rt.world_size
            rate = seen / (time.perf_counter() - tick)
            advance(logs, rate)
            if self.position.step % self.options.log_every == 0 or self.position.stage_step == 1:
                self.write_log({"kind": "train", "stage": stage.name, "epoch": epoch, "step": self.position.step,
                                **logs, "img_per_s": rate, "lr": optimizers[0].param_groups[0]["lr"]})
            if self.position.stage_step >= limit:
                stop = "limit"
                break
            if deadline is not None and self.agree(self.elapsed() >= deadline):
                stop = "max_time"
                break
            if self.position.step % self.options.checkpoint_every == 0:
                self.save(optimizers)
        if self.position.batch >= data.steps_per_epoch:
            self.position.epoch += 1
            self.position.batch = 0
        return stop

    def end_epoch(self, index: int, stage: StageSpec, epoch: int, data: StageData,
                  optimizers: Optimizers) -> float | None:
        """Validate (with a sample grid), log and checkpoint; returns the validation L1 (None: no val photos)."""
        branch = f"-branch{self.position.branch}" if stage.branches > 1 else ""
        grid = self.run_dir / "samples" / f"{index}-{stage.name}{branch}-epoch{epoch:03d}.png"
        val_l1 = self.validate_and_record(data, grid, {"stage": stage.name, "epoch": epoch})
        self.validated_at = self.position.step
        self.save(optimizers)
        return val_l1

    def validate_and_record(self, data: StageData, grid: Path, record: dict[str, Any]) -> float | None:
        """Validate, log the val L1 with ``record`` and keep track of the best (and, with ``keep_best``, its
        weights); with no validation photos (``val_fraction`` 0), only the sample grid, of training photos, and
        None (their L1 would be no validation)."""
        if data.val_loader is None:
            self.val_l1(data.preview_loader, grid)
            return None
        val_l1 = self.val_l1(data.val_loader, grid)
        self.write_log({"kind": "val", **record, "step": self.position.step, "val_l1": val_l1})
        if val_l1 < self.best[0]:
            self.best = (val_l1, self.position.step)
            if self.options.keep_best:
                self.save_generator(self.run_dir / runs.BEST_FILE)
        return val_l1

    def batches(self, loader: torch.utils.data.DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(L, ab) normalised batches on the device: the colour conversion runs here, batched."""
        for rgb in loader:
            L, ab = rgb_uint8_to_lab_normalized(rgb.to(self.rt.device, non_blocking=True))
            if self.channels_last:
                L, ab = L.contiguous(memory_format=torch.channels_last), ab.contiguous(memory_format=torch.channels_last)
            yield L, ab

    @torch.no_grad()
    def val_l1(self, loader: torch.utils.data.DataLoader, grid_path: Path | None) -> float:
        """Mean L1 of predicted vs true ab (normalised units) over the validation set; writes a sample grid."""
        self.model.generator.eval()
        total, count, shown = torch.zeros((), device=self.rt.device), 0, None
        for L, ab in self.batches(loader):
            ab_pred = self.model.predict(L)
            total += (ab_pred - ab).abs().mean(dim=(1, 2, 3)).sum()
            count += L.shape[0]
            if shown is None:
                shown = (L[:4], ab_pred[:4], ab[:4])
        self.model.generator.train()
        if self.rt.distributed:
            stats = torch.stack([total, torch.tensor(float(count), device=self.rt.device)])
            dist.all_reduce(stats)
            total, count = stats[0], int(stats[1].item())
        if grid_path is not None and shown is not None and self.rt.is_main:
            write_sample_grid(grid_path, *shown)
        return total.item() / max(count, 1)

    def write_log(self, record: dict[str, Any]) -> None:
        self.log.write({"time": round(self.elapsed(), 3), **record})

    def agree(self, flag: bool) -> bool:
        """``flag`` made the same on every rank (true if any rank says so), so that all stop together."""
        if not self.rt.distributed:
            return flag
        box = torch.tensor([float(flag)], device=self.rt.device)
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        return bool(box.item())

    def stage_deadline(self, index: int) -> float | None:
        """Training-seconds mark at which this stage (or its current branch) stops: the remaining budget split
        over the remaining stages in proportion to their ``time_share``, a stage's share evenly over its branches."""
        if self.options.max_time is None:
            return None
        remaining = self.options.max_time - self.elapsed()
        stage = self.spec.stages[index]
        share = stage.time_share / stage.branches
        left = share * (stage.branches - self.position.branch) + sum(s.time_share for s in self.spec.stages[index + 1:])
        return self.elapsed() + remaining * share / left

    @contextlib.contextmanager
    def progress(self, stage: StageSpec, total: int) -> Iterator[Callable[[dict[str, float], float], None]]:
        """A live bar (rank 0, when enabled) with the losses, img/s and ETA; yields ``advance(logs, rate)``."""
        if not (self.options.progress and self.rt.is_main):
            yield lambda logs, rate: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
        with Progress(*columns) as bar:
            task = bar.add_task(stage.name, total=total, completed=self.position.stage_step, losses="", rate="")

            def advance(logs: dict[str, float], rate: float) -> None:
                text = " ".join(f"{k} {v:.3f}" for k, v in logs.items())
                bar.update(task, advance=1, losses=text, rate=f"{rate:.1f} img/s")

            yield advance


# ------------------------------------------------------------------------------------------- entry points


def branched(last: StageSummary, ended: list[list[Any]]) -> StageSummary:
    """A soup stage's summary from its branches' [steps, why they stopped]: every branch's steps, their total, and
    the most cutting reason any of them stopped for (a cut branch is never hidden behind a whole last one)."""
    order = list(Stop)
    return StageSummary(last.stage, sum(steps for steps, _ in ended), max((Stop(why) for _, why in ended),
                                                                           key=order.index),
                        last.val_l1, [steps for steps, _ in ended])


def _broadcast(value: Any, runtime: Runtime) -> Any:
    if not runtime.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _prepare_data(
    spec: ModelSpec, options: TrainOptions, runtime: Runtime, echo: Callable[[str], None]
) -> tuple[list[Path], list[Path], Any]:
    """Resolve and scan the data source (rank 0), report what was skipped, split train/val."""
    report = None
    if runtime.is_main:
        cache = cache_root()
        paths = resolve_source(options.data, cache_dir=cache)
        smallest = min(s.image_size for s in spec.stages)
        report = scan_images(paths, image_size=smallest, cache_dir=cache, source=options.data)
    report = _broadcast(report, runtime)
    if (report.skipped or report.fixed) and runtime.is_main:
        echo(report.summary())
    train_paths, val_paths = split_paths(report.ok, options.val_fraction, options.seed)
    if not train_paths or (not val_paths and options.val_fraction > 0):
        raise EmptyDatasetError(
            f"{options.data!r} gives {len(train_paths)} training and {len(val_paths)} validation images"
            f" (val_fraction {options.val_fraction}): training needs at least one of each"
        )
    return train_paths, val_paths, report


def _cpu_budget(spec: ModelSpec, options: TrainOptions, runtime: Runtime, echo: Callable[[str], None]) -> TrainOptions:
    """On CPU with no length given, train for :data:`CPU_DEFAULT_BUDGET` and say what the full recipe is."""
    if runtime.device.type != "cpu" or any(v is not None for v in (options.epochs, options.max_steps, options.max_time)):
        return options
    recipe = ", ".join(f"{s.name}: {s.epochs} epochs of batch {s.batch_size} at {s.image_size} px" for s in spec.stages)
    echo(f"no --epochs, --max-steps or --max-time on a CPU: training the recipe ({recipe}) for at most "
         f"{CPU_DEFAULT_BUDGET / 60:.0f} minutes, split over the stages (a full recipe can take hours on a CPU). "
         "Choose with --max-time 1h, --epochs 2, --max-steps 100 or --image-size 128.")
    return dataclasses.replace(options, max_time=CPU_DEFAULT_BUDGET)


def train(model: str, options: TrainOptions, echo: Callable[[str], None] = print) -> TrainSummary:
    """Train ``model`` from scratch into ``options.out`` (a new or empty folder; by default a new
    ``runs/<model>-<date>-<time>``); returns the run summary."""
    runtime = setup_runtime(options.device, options.amp)
    spec = resolve_spec(model, options, runtime.device.type, echo)
    options = _cpu_budget(spec, options, runtime, echo)
    if options.val_fraction is None:
        options = dataclasses.replace(options, val_fraction=spec.val_fraction)
    if options.keep_best and options.val_fraction == 0:
        raise EmptyDatasetError(f"{spec.name}: --keep-best needs validation photos, and val_fraction is 0")
    run_dir = _broadcast(Path(options.out or runs.default_run_dir(spec.name)), runtime)
    if runtime.is_main:
        outputs.run_folder(run_dir, inputs=[Path(options.data).expanduser()])
    trainer = Trainer(spec, options, run_dir, runtime, echo)  # a setting the model cannot be built with fails here
    if options.init is not None:
        trainer.start_from(Path(options.init))  # and so does a checkpoint that cannot start it
    train_paths, val_paths, report = _prepare_data(spec, options, runtime, echo)
    if runtime.is_main:
        runs.write_run(run_dir, spec.name, spec.to_dict(), options.to_json())
        runs.write_split(run_dir, options.seed, options.val_fraction, train_paths, val_paths, report.skipped)
    return _run(trainer, train_paths, val_paths, None, echo)


def resume(run_dir: Path, echo: Callable[[str], None] = print, model: str | None = None,
           **overrides: Any) -> TrainSummary:
    """Continue the run in ``run_dir`` from its last checkpoint, with its own spec, options and split.

    ``overrides`` (:class:`TrainOptions` fields) may change how, not what, is trained: those in
    :data:`RESUMABLE` apply; any other, and a ``model`` other than the run's, must equal the run's own or the
    run is refused with a :class:`ResumeError` naming them.
    """
    run_dir = Path(run_dir)
    outputs.run_folder(run_dir, resume=True)
    last = run_dir / runs.LAST_CHECKPOINT
    if not last.exists():
        raise checkpoint.CheckpointError(f"{last}: no checkpoint to resume from")
    run = runs.read_json(run_dir, runs.RUN_FILE, keys=("model", "spec", "options"))
    try:
        spec = spec_from_dict(run["model"], run["spec"])
        options = TrainOptions(**run["options"])
    except (SpecError, TypeError) as err:
        raise runs.RunError(f"{run_dir / runs.RUN_FILE}: cannot be resumed ({err})") from None
    conflicts = [] if model in (None, run["model"]) else [f"model {model!r} (the run trains {run['model']!r})"]
    for key, value in overrides.items():
        if key not in RESUMABLE and dataclasses.replace(options, **{key: value}).to_json() != options.to_json():
            conflicts.append(f"{key} {value!r} (the run's: {getattr(options, key)!r})")
    if conflicts:
        raise ResumeError(f"{run_dir}: a resumed run keeps what it trains, so not {'; '.join(conflicts)}; it can"
                          f" change only {', '.join(sorted(RESUMABLE))} (start a new run for the rest)")
    options = dataclasses.replace(options, **{k: v for k, v in overrides.items() if k in RESUMABLE})
    split = runs.read_json(run_dir, runs.SPLIT_FILE, keys=("train", "val"))
    runtime = setup_runtime(options.device, options.amp)
    trainer = Trainer(spec, options, run_dir, runtime, echo)
    return _run(trainer, [Path(p) for p in split["train"]], [Path(p) for p in split["val"]], last, echo)


def _run(trainer: Trainer, train_paths: list[Path], val_paths: list[Path], last: Path | None,
         echo: Callable[[str], None]) -> TrainSummary:
    spec, run_dir, runtime = trainer.spec, trainer.run_dir, trainer.rt
    if runtime.is_main:
        echo(f"{'resuming' if last else 'training'} {spec.name} on {len(train_paths)} train / {len(val_paths)} val "
             f"images, {runtime.device}{f' x{runtime.world_size}' if runtime.distributed else ''}, "
             f"amp {runtime.amp_dtype or 'off'}, run folder {run_dir}")
    try:
        summary = trainer.fit(train_paths, val_paths, resume=last)
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()
    if runtime.is_main:
        runs.write_summary(run_dir, summary.to_json())
    return summary
