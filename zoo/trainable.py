"""A model's parts on a device, ready to optimise, and one optimiser step: what the training loop repeats and
what the harness times.

A :class:`Trainable` holds the generator, the discriminator (if the model has one), the objectives and the
decoder of a :class:`zoo.spec.ModelSpec`, placed and wrapped for the runtime (channels_last, torch.compile,
DDP). :meth:`Trainable.step` is one step: the generator's output, the objectives' own steps (the
discriminator's), then the weighted objectives' backward and the generator's optimiser step. It knows no
particular loss: a stage's :class:`zoo.objectives.StageLoss` holds them. A generator that takes colour hints is
given hints simulated from the batch's true colours (:func:`zoo.hints.random_hint_channels`, from the global RNG
that checkpoints keep) in training, and none when it predicts (validation, sample grids): its automatic path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from zoo import checkpoint
from zoo.factory import create_models, create_objectives, decoder_of, inferred_ab
from zoo.hints import HINT_CHANNELS, random_hint_channels
from zoo.registry import GENERATORS
from zoo.objectives import Batch, Critic, StageLoss
from zoo.runtime import Runtime, unwrap
from zoo.spec import ModelSpec, OptimizerSpec, StageSpec

Optimizers = tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]  # the generator's, the discriminator's


def adam(parameters: nn.Module | list[nn.Parameter], spec: OptimizerSpec) -> torch.optim.Optimizer:
    """Adam with ``spec``'s settings over a module's parameters (or a list of them)."""
    params = parameters.parameters() if isinstance(parameters, nn.Module) else parameters
    return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


class Trainable:
    """The parts of ``spec`` on ``runtime``'s device (see the module docstring)."""

    def __init__(self, spec: ModelSpec, runtime: Runtime, channels_last: bool = False, compile: bool = False) -> None:  # noqa: A002
        self.spec, self.rt = spec, runtime
        self.channels_last, self.compile = channels_last, compile
        generator, discriminator = create_models(spec)
        self.objectives = create_objectives(spec).to(runtime.device)
        self.decode = decoder_of(spec, self.objectives).to(runtime.device)
        self.generator = self._place(generator)
        self.discriminator = self._place(discriminator) if discriminator is not None else None
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
        self.guided = GENERATORS.takes_hints(spec.generator.arch)

    def _place(self, module: nn.Module) -> nn.Module:
        module = module.to(self.rt.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.rt.distributed and self.rt.device.type == "cuda":  # SyncBatchNorm refuses non-CUDA modules
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if self.compile:
            module = torch.compile(module)
        if self.rt.distributed:  # outermost, so that objectives see DDP (no_sync) whether compiled or not
            ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)
        return module

    def optimizers(self, stage: StageSpec) -> Optimizers:
        """Fresh Adam optimisers of G (but the submodules the stage freezes) and of D in stages whose
        objectives train against it."""
        generator = unwrap(self.generator)
        names = dict(generator.named_modules())
        missing = [name for name in stage.frozen if name not in names]
        if missing:
            raise ValueError(f"stage {stage.name!r} freezes {missing[0]!r}, which {self.spec.generator.arch} does not"
                             f" have (its submodules: {', '.join(n for n, _ in generator.named_children())})")
        for name, parameter in generator.named_parameters():
            parameter.requires_grad_(not any(name == f or name.startswith(f + ".") for f in stage.frozen))
        trained = [p for p in generator.parameters() if p.requires_grad]
        opt_d = adam(self.discriminator, stage.discriminator_optimizer) if stage.uses_discriminator else None
        return adam(trained, stage.optimizer), opt_d

    def stage_loss(self, stage: StageSpec) -> StageLoss:
        return StageLoss(self.objectives, stage.loss)

    def step(self, stage_loss: StageLoss, L: torch.Tensor, ab: torch.Tensor, optimizers: Optimizers) -> dict[str, float]:
        """One optimiser step of the generator, after the objectives' own steps; returns the logged values."""
        opt_g, opt_d = optimizers
        critic = None if opt_d is None else Critic(self.discriminator, opt_d, self.scaler, self.rt.autocast)
        x = torch.cat([L, random_hint_channels(ab)], dim=1) if self.guided else L
        with self.rt.autocast():
            output = self.generator(x)
        batch = Batch(L, ab, output, self.decode)
        logs = stage_loss.update(batch, critic)
        loss, terms = stage_loss(batch, critic)
        opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt_g)
        self.scaler.update()
        return logs | terms

    def predict(self, L: torch.Tensor) -> torch.Tensor:
        """Normalised ab (float32) for normalised L, in the generator's current mode, under the autocast dtype,
        with the model's inference settings (as :class:`zoo.factory.Predictor` colours)."""

        def predict(x: torch.Tensor) -> torch.Tensor:
            with self.rt.autocast():
                output = self.generator(x)
            return self.decode(output).float()

        x = torch.cat([L, L.new_zeros(L.shape[0], HINT_CHANNELS, *L.shape[2:])], dim=1) if self.guided else L
        return inferred_ab(predict, x, **self.spec.ab_settings)

    def inference_tensors(self) -> dict[str, torch.Tensor]:
        """Predictor (generator + decoder) and objective state: what inference and resume both need."""
        return (checkpoint.prefixed("generator.", unwrap(self.generator).state_dict())
                | checkpoint.prefixed("decoder.", self.decode.state_dict())
                | checkpoint.prefixed("objective.", self.objectives.state_dict()))
