"""The training loop over a model's recipe stages, with checkpoints, resume, progress and DDP.

One loop serves every recipe: ``mse`` and ``l1`` stages train the generator alone; ``l1+gan`` stages add the
discriminator, which sees cat(L, ab) (pix2pix's conditional GAN): D minimises 0.5 (loss(D(L, G(L)), fake) +
loss(D(L, ab), real)), then G minimises loss(D(L, G(L)), real) + lambda_L1 |G(L) - ab|.

A run folder holds ``run.json`` (resolved spec and options), ``split.json``, ``metrics.jsonl``, sample grids
under ``samples/`` and ``checkpoints/last.safetensors`` (everything needed to resume bit for bit: weights,
optimiser, scaler and RNG state, the position in the epoch) plus ``generator.safetensors`` for inference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from zoo import checkpoint
from zoo.color import lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.datasets import cache_root
from zoo.data import ColorizationDataset, EmptyDatasetError, EpochSampler, make_loader, resolve_source, scan_images, split_paths
from zoo.factory import create_models
from zoo.spec import ModelSpec, StageSpec, adapt_to_image_size, get_spec, spec_from_dict

AmpMode = Literal["auto", "no", "bf16", "fp16"]
CPU_DEFAULT_BUDGET = 10 * 60.0  # seconds: what a CPU run without --epochs/--max-steps/--max-time gets


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``1h30m``, ``2.5h``."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 1h30m)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@dataclass
class TrainOptions:
    """What ``zoo train`` can change; ``None`` keeps the recipe's value."""

    data: str = "sample"
    out: Path | None = None
    epochs: int | None = None
    max_steps: int | None = None  # optimiser steps per stage
    max_time: float | None = None  # seconds for the whole run
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    device: str = "auto"
    amp: AmpMode = "auto"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    val_fraction: float = 0.1
    workers: int | None = None
    checkpoint_every: int = 200  # steps
    log_every: int = 10  # steps
    progress: bool = True
    generator: dict[str, Any] = field(default_factory=dict)  # generator setting overrides

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


def resolve_spec(name: str, options: TrainOptions, echo: Callable[[str], None] = print) -> ModelSpec:
    """The model spec with the options' overrides applied to every stage, its generator fitted to the image size."""
    stage = {k: getattr(options, k) for k in ("epochs", "batch_size", "lr", "image_size") if getattr(options, k)}
    spec = get_spec(name).with_overrides(generator=options.generator, **stage)
    spec, note = adapt_to_image_size(spec, min(s.image_size for s in spec.stages))
    if note:
        echo(f"{spec.name}: {note}")
    return spec


# ------------------------------------------------------------------------------------------- runtime


@dataclass
class Runtime:
    """Device, precision and process-group facts of this process."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else Apple MPS, else CPU."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def amp_dtype(mode: AmpMode, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode``: ``auto`` is off on CPU (bf16 is emulated there, ~25x slower per step)
    and bf16 on CUDA GPUs that support it, fp16 on those that do not."""
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def setup_runtime(options: TrainOptions) -> Runtime:
    """Join the process group when started by ``torchrun`` (NCCL on CUDA, gloo on CPU); pick device and AMP."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(options.device)
    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, amp_dtype(options.amp, device), rank, world_size, local_rank)


# ------------------------------------------------------------------------------------------- losses


def gan_loss(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """pix2pix's GAN loss on patch logits: ``vanilla`` (BCE with logits) or ``lsgan`` (MSE), in float32."""
    logits = logits.float()
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(logits, target)


def regression_loss(stage: StageSpec, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The stage's reconstruction loss: MSE for ``mse`` stages, L1 otherwise (float32)."""
    return F.mse_loss(fake.float(), real) if stage.loss == "mse" else F.l1_loss(fake.float(), real)


def set_lr(stage: StageSpec, epoch: int, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None) -> None:
    """The stage's learning rates for ``epoch``: derived from the epoch, so a resumed run needs no scheduler state."""
    factor = stage.lr_factor(epoch)
    for opt, spec in ((opt_g, stage.optimizer), (opt_d, stage.discriminator_optimizer)):
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = spec.lr * factor


# ------------------------------------------------------------------------------------------- state


@dataclass
class Position:
    """Where a run is: stage, epoch, batches done in that epoch, optimiser steps in the stage and overall."""

    stage: int = 0
    epoch: int = 0
    batch: int = 0
    stage_step: int = 0
    step: int = 0
    elapsed: float = 0.0  # training seconds before this process (for --max-time across resumes)


def rng_state() -> dict[str, torch.Tensor]:
    """Every RNG the loop may draw from, as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(tensors["torch"].cpu())
    cuda = [tensors[f"cuda.{i}"].cpu() for i in range(len([k for k in tensors if k.startswith("cuda.")]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(module, DistributedDataParallel):
            module = module.module
        elif isinstance(module, torch._dynamo.eval_frame.OptimizedModule):
            module = module._orig_mod
        else:
            return module


# ------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Runs a model's recipe stages on a dataset; see the module docstring for the run folder."""

    def __init__(self, spec: ModelSpec, options: TrainOptions, run_dir: Path, runtime: Runtime) -> None:
        self.spec, self.options, self.run_dir, self.rt = spec, options, run_dir, runtime
        seed_everything(options.seed)
        generator, discriminator = create_models(spec)
        self.generator = self._prepare(generator)
        self.discriminator = self._prepare(discriminator) if discriminator is not None else None
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
        self.position = Position()
        self.started = time.monotonic()
        self.log_file = run_dir / "metrics.jsonl"
        self.tensorboard = self._tensorboard()

    # -- set-up

    def _prepare(self, module: nn.Module) -> nn.Module:
        module = module.to(self.rt.device)
        if self.options.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.rt.distributed and self.rt.device.type == "cuda":  # SyncBatchNorm refuses non-CUDA modules
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if self.options.compile:
            module = torch.compile(module)
        if self.rt.distributed:  # outermost, so that train_step sees DDP (no_sync) whether compiled or not
            ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)
        return module

    def _tensorboard(self) -> Any:
        if not self.rt.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def optimizers(self, stage: StageSpec) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """Fresh Adam optimisers of G (and of D in GAN stages) with the stage's settings."""

        def adam(module: nn.Module, o: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(module.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)

        opt_g = adam(self.generator, stage.optimizer)
        opt_d = adam(self.discriminator, stage.discriminator_optimizer) if stage.uses_gan else None
        return opt_g, opt_d

    # -- checkpoints

    def save(self, opt_g: torch.optim.Optimizer | None, opt_d: torch.optim.Optimizer | None) -> None:
        """Write ``checkpoints/last.safetensors`` (rank 0; others wait); optimisers of None are not stored."""
        if self.rt.is_main:
            tensors = checkpoint.prefixed("generator.", unwrap(self.generator).state_dict())
            meta: dict[str, Any] = {
                "model": self.spec.name,
                "spec": self.spec.to_dict(),
                "position": dataclasses.asdict(self.position) | {"elapsed": self.elapsed()},
                "scaler": self.scaler.state_dict(),
            }
            for name, opt in (("generator", opt_g), ("discriminator", opt_d)):
                if opt is not None:
                    opt_tensors, meta[f"optim.{name}"] = checkpoint.pack_optimizer(opt)
                    tensors |= checkpoint.prefixed(f"optim.{name}.", opt_tensors)
            if self.discriminator is not None:
                tensors |= checkpoint.prefixed("discriminator.", unwrap(self.discriminator).state_dict())
            tensors |= checkpoint.prefixed("rng.", rng_state())
            checkpoint.save(self.run_dir / "checkpoints" / "last.safetensors", tensors, meta)
        if self.rt.distributed:
            dist.barrier()

    def save_generator(self) -> Path:
        """Write the inference checkpoint ``generator.safetensors`` (generator weights and spec)."""
        path = self.run_dir / "generator.safetensors"
        if self.rt.is_main:
            state = checkpoint.prefixed("generator.", unwrap(self.generator).state_dict())
            checkpoint.save(path, state, {"model": self.spec.name, "spec": self.spec.to_dict()})
        return path

    def restore(self, path: Path) -> dict[str, Any]:
        """Load weights, RNG state and position from ``path``; returns the header for the optimisers."""
        meta = checkpoint.read_meta(path)
        checkpoint.load_module(unwrap(self.generator), path, "generator.")
        if self.discriminator is not None:
            checkpoint.load_module(unwrap(self.discriminator), path, "discriminator.")
        self.scaler.load_state_dict(meta["scaler"])
        set_rng_state(checkpoint.load(path, "rng."))
        self.position = Position(**meta["position"])
        return meta

    def _restore_optimizers(self, path: Path, meta: dict[str, Any], opt_g: Any, opt_d: Any) -> None:
        for name, opt in (("generator", opt_g), ("discriminator", opt_d)):
            if opt is not None and f"optim.{name}" in meta:
                tensors = checkpoint.load(path, f"optim.{name}.", device=self.rt.device)
                checkpoint.unpack_optimizer(opt, tensors, meta[f"optim.{name}"])

    # -- logging

    def elapsed(self) -> float:
        return self.position.elapsed + time.monotonic() - self.started

    def log(self, record: dict[str, Any]) -> None:
        if not self.rt.is_main:
            return
        record = {"time": round(self.elapsed(), 3), **record}
        with self.log_file.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    self.tensorboard.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    # -- the loop

    def batches(self, loader: torch.utils.data.DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(L, ab) normalised batches on the device: the colour conversion runs here, batched."""
        for rgb in loader:
            L, ab = rgb_uint8_to_lab_normalized(rgb.to(self.rt.device, non_blocking=True))
            if self.options.channels_last:
                L, ab = L.contiguous(memory_format=torch.channels_last), ab.contiguous(memory_format=torch.channels_last)
            yield L, ab

    def train_step(
        self, stage: StageSpec, L: torch.Tensor, ab: torch.Tensor, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None
    ) -> dict[str, float]:
        """One optimiser step of G (and first of D in GAN stages); returns the losses."""
        with self.rt.autocast():
            fake = self.generator(L)
        losses: dict[str, float] = {}
        if opt_d is not None:
            d = self.discriminator
            d.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            # Two backward passes, gradients all-reduced once (on the second) under DDP.
            sync_later = d.no_sync() if isinstance(d, DistributedDataParallel) else contextlib.nullcontext()
            with sync_later:
                with self.rt.autocast():
                    d_fake = gan_loss(d(torch.cat([L, fake.detach()], 1)), False, stage.gan_mode)
                self.scaler.scale(0.5 * d_fake).backward()
            with self.rt.autocast():
                d_real = gan_loss(d(torch.cat([L, ab], 1)), True, stage.gan_mode)
            self.scaler.scale(0.5 * d_real).backward()
            self.scaler.step(opt_d)
            d.requires_grad_(False)
            with self.rt.autocast():  # D's weights are frozen here: bypass DDP, nothing of D to reduce
                g_gan = gan_loss(unwrap(d)(torch.cat([L, fake], 1)), True, stage.gan_mode)
            recon = regression_loss(stage, fake, ab)
            loss_g = g_gan + stage.lambda_l1 * recon
            losses |= {"d_real": d_real.item(), "d_fake": d_fake.item(), "g_gan": g_gan.item()}
        else:
            recon = loss_g = regression_loss(stage, fake, ab)
        opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(opt_g)
        self.scaler.update()
        losses[f"g_{'mse' if stage.loss == 'mse' else 'l1'}"] = recon.item()
        return losses

    @torch.no_grad()
    def validate(self, loader: torch.utils.data.DataLoader, grid_path: Path | None) -> float:
        """Mean L1 of predicted vs true ab (normalised units) over the validation set; writes a sample grid."""
        generator = self.generator
        generator.eval()
        total, count, shown = torch.zeros((), device=self.rt.device), 0, None
        for L, ab in self.batches(loader):
            with self.rt.autocast():
                fake = generator(L).float()
            total += (fake - ab).abs().mean(dim=(1, 2, 3)).sum()
            count += L.shape[0]
            if shown is None:
                shown = (L[:4], fake[:4], ab[:4])
        generator.train()
        if self.rt.distributed:
            stats = torch.stack([total, torch.tensor(float(count), device=self.rt.device)])
            dist.all_reduce(stats)
            total, count = stats[0], int(stats[1].item())
        if grid_path is not None and shown is not None and self.rt.is_main:
            write_grid(grid_path, *shown)
        return total.item() / max(count, 1)

    def agree(self, flag: bool) -> bool:
        """``flag`` made the same on every rank (true if any rank says so), so that all stop together."""
        if not self.rt.distributed:
            return flag
        box = torch.tensor([float(flag)], device=self.rt.device)
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        return bool(box.item())

    def stage_deadline(self, stage_index: int) -> float | None:
        """Training-seconds mark at which this stage stops: the remaining budget split over the remaining stages."""
        if self.options.max_time is None:
            return None
        remaining = self.options.max_time - self.elapsed()
        return self.elapsed() + remaining / (len(self.spec.stages) - stage_index)

    def fit(self, train_paths: list[Path], val_paths: list[Path], resume: Path | None = None) -> dict[str, Any]:
        """Run every remaining stage; returns a summary (per-stage steps, val L1 and why it stopped)."""
        meta = self.restore(resume) if resume is not None else None
        summary: dict[str, Any] = {"stages": []}
        for stage_index in range(self.position.stage, len(self.spec.stages)):
            stage = self.spec.stages[stage_index]
            opt_g, opt_d = self.optimizers(stage)
            if meta is not None:
                self._restore_optimizers(resume, meta, opt_g, opt_d)
                meta = None
            result = self.fit_stage(stage_index, stage, train_paths, val_paths, opt_g, opt_d)
            summary["stages"].append(result)
            self.position = Position(stage=stage_index + 1, step=self.position.step, elapsed=self.elapsed())
            self.started = time.monotonic()
            self.save(None, None)  # a stage boundary: the next stage starts with fresh optimisers
        summary["val_l1"] = summary["stages"][-1]["val_l1"] if summary["stages"] else None
        summary["steps"] = self.position.step
        summary["generator"] = str(self.save_generator())
        return summary

    def fit_stage(
        self, stage_index: int, stage: StageSpec, train_paths: list[Path], val_paths: list[Path],
        opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None,
    ) -> dict[str, Any]:
        """Train one stage from the current position until its epochs, ``max_steps`` or its time share end."""
        train_set = ColorizationDataset(train_paths, stage.image_size, train=True)
        val_set = ColorizationDataset(val_paths, stage.image_size, train=False)
        per_rank = math.ceil(len(train_set) / self.rt.world_size)
        batch_size = max(1, min(stage.batch_size, per_rank))
        steps_per_epoch = max(1, per_rank // batch_size)
        total_steps = stage.epochs * steps_per_epoch
        if self.options.max_steps is not None:
            total_steps = min(total_steps, self.options.max_steps)
        deadline = self.stage_deadline(stage_index)
        loader_args = {"workers": self.options.workers, "device_type": self.rt.device.type}
        val_sampler = EpochSampler(len(val_set), 0, 0, shuffle=False, rank=self.rt.rank, world_size=self.rt.world_size)
        val_loader = make_loader(val_set, batch_size, sampler=val_sampler, **loader_args)
        stop, val_l1 = "done", None
        sampler = EpochSampler(len(train_set), self.options.seed + 1000 * stage_index, rank=self.rt.rank,
                               world_size=self.rt.world_size)
        loader = make_loader(train_set, batch_size, sampler=sampler, drop_last=True, **loader_args)
        with self.progress(stage, total_steps) as advance:
            while self.position.epoch < stage.epochs and self.position.stage_step < total_steps:
                epoch = self.position.epoch
                sampler.set_epoch(epoch, start=self.position.batch * batch_size)
                set_lr(stage, epoch, opt_g, opt_d)
                tick, seen = time.perf_counter(), 0
                for L, ab in self.batches(loader):
                    losses = self.train_step(stage, L, ab, opt_g, opt_d)
                    if not all(math.isfinite(v) for v in losses.values()):
                        raise FloatingPointError(f"{stage.name} step {self.position.step + 1}: loss not finite: {losses}")
                    self.position.batch += 1
                    self.position.stage_step += 1
                    self.position.step += 1
                    seen += L.shape[0] * self.rt.world_size
                    rate = seen / (time.perf_counter() - tick)
                    advance(losses, rate)
                    if self.position.step % self.options.log_every == 0 or self.position.stage_step == 1:
                        record = {"stage": stage.name, "epoch": epoch, "step": self.position.step, **losses}
                        self.log({"kind": "train", **record, "img_per_s": rate, "lr": opt_g.param_groups[0]["lr"]})
                    if self.position.stage_step >= total_steps:
                        stop = "done" if total_steps == stage.epochs * steps_per_epoch else "max_steps"
                        break
                    if deadline is not None and self.agree(self.elapsed() >= deadline):
                        stop = "max_time"
                        break
                    if self.position.step % self.options.checkpoint_every == 0:
                        self.save(opt_g, opt_d)
                if self.position.batch >= steps_per_epoch:
                    self.position.epoch += 1
                    self.position.batch = 0
                grid = self.run_dir / "samples" / f"{stage_index}-{stage.name}-epoch{epoch:03d}.png"
                val_l1 = self.validate(val_loader, grid)
                self.log({"kind": "val", "stage": stage.name, "epoch": epoch, "step": self.position.step, "val_l1": val_l1})
                self.save(opt_g, opt_d)
                if stop != "done":
                    break
        return {"stage": stage.name, "steps": self.position.stage_step, "val_l1": val_l1, "stopped": stop}

    @contextlib.contextmanager
    def progress(self, stage: StageSpec, total: int) -> Iterator[Any]:
        """A live bar (rank 0, when enabled) with the losses, img/s and ETA; yields ``advance(losses, rate)``."""
        if not (self.options.progress and self.rt.is_main):
            yield lambda losses, rate: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[losses]}"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
        with Progress(*columns) as bar:
            task = bar.add_task(stage.name, total=total, completed=self.position.stage_step, losses="", rate="")

            def advance(losses: dict[str, float], rate: float) -> None:
                text = " ".join(f"{k} {v:.3f}" for k, v in losses.items())
                bar.update(task, advance=1, losses=text, rate=f"{rate:.1f} img/s")

            yield advance


def write_grid(path: Path, L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> None:
    """A PNG with one row per image: gray | ours | truth."""
    from torchvision.utils import save_image

    gray = lab_normalized_to_rgb(L.float(), torch.zeros_like(ab_true))
    ours = lab_normalized_to_rgb(L.float(), ab_pred.float())
    truth = lab_normalized_to_rgb(L.float(), ab_true.float())
    rows = torch.stack([gray, ours, truth], 1).flatten(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(rows.cpu(), path, nrow=3, padding=2)


# ------------------------------------------------------------------------------------------- entry point


def _default_run_dir(model: str) -> Path:
    return Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


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
    if not train_paths or not val_paths:
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
    echo(f"no --epochs, --max-steps or --max-time on a CPU: the full recipe ({recipe}) would take hours here; "
         f"training for {CPU_DEFAULT_BUDGET / 60:.0f} minutes instead, split over the stages. "
         "Choose with --max-time 1h, --epochs 2, --max-steps 100 or --image-size 128.")
    return dataclasses.replace(options, max_time=CPU_DEFAULT_BUDGET)


def train(model: str, options: TrainOptions, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``model`` from scratch into ``options.out``; returns the run summary."""
    spec = resolve_spec(model, options, echo)
    runtime = setup_runtime(options)
    options = _cpu_budget(spec, options, runtime, echo)
    run_dir = Path(options.out or _default_run_dir(spec.name))
    train_paths, val_paths, report = _prepare_data(spec, options, runtime, echo)
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        run = {"model": spec.name, "spec": spec.to_dict(), "options": options.to_json()}
        (run_dir / "run.json").write_text(json.dumps(run, indent=2))
        split = {"seed": options.seed, "val_fraction": options.val_fraction, "train": [str(p) for p in train_paths],
                 "val": [str(p) for p in val_paths], "skipped": [[str(p), why] for p, why in report.skipped]}
        (run_dir / "split.json").write_text(json.dumps(split, indent=2))
    return _run(spec, options, run_dir, runtime, train_paths, val_paths, None, echo)


def resume(run_dir: Path, echo: Callable[[str], None] = print, **overrides: Any) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint, with its own spec, options and split.

    ``overrides`` may change how, not what, is trained: ``max_time``, ``progress``, ``workers``, ``device``.
    """
    run_dir = Path(run_dir)
    last = run_dir / "checkpoints" / "last.safetensors"
    if not last.exists():
        raise checkpoint.CheckpointError(f"{last}: no checkpoint to resume from")
    allowed = {"max_time", "progress", "workers", "device"}
    if set(overrides) - allowed:
        raise ValueError(f"a resumed run can only change {', '.join(sorted(allowed))}, not {sorted(set(overrides) - allowed)}")
    run = json.loads((run_dir / "run.json").read_text())
    spec = spec_from_dict(run["model"], run["spec"])
    options = dataclasses.replace(TrainOptions(**run["options"]), **overrides)
    split = json.loads((run_dir / "split.json").read_text())
    runtime = setup_runtime(options)
    return _run(spec, options, run_dir, runtime, [Path(p) for p in split["train"]], [Path(p) for p in split["val"]], last, echo)


def _run(spec: ModelSpec, options: TrainOptions, run_dir: Path, runtime: Runtime, train_paths: list[Path],
         val_paths: list[Path], last: Path | None, echo: Callable[[str], None]) -> dict[str, Any]:
    trainer = Trainer(spec, options, run_dir, runtime)
    if runtime.is_main:
        echo(f"{'resuming' if last else 'training'} {spec.name} on {len(train_paths)} train / {len(val_paths)} val "
             f"images, {runtime.device}{f' x{runtime.world_size}' if runtime.distributed else ''}, "
             f"amp {runtime.amp_dtype or 'off'}, run folder {run_dir}")
    try:
        summary = trainer.fit(train_paths, val_paths, resume=last)
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return summary | {"run_dir": str(run_dir)}
