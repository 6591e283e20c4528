"""``gan``: pix2pix's conditional GAN term; the discriminator sees cat(L, ab) and this objective steps it.

Per training step: D minimises 0.5 (loss(D(L, G(L)), fake) + loss(D(L, ab), real)) (its two backward passes
all-reduced once under DDP), then G's term is loss(D(L, G(L)), real) with D frozen. ``mode`` is the loss on
patch logits: ``vanilla`` (BCE with logits, pix2pix's default), ``lsgan`` (MSE) or ``hinge`` (SPADE's: D
minimises relu(1 - D(real)) + relu(1 + D(fake)), G minimises -D(fake)). With ``warmup_steps`` the first that
many steps train D alone (G's term is 0), so that G's first adversarial gradients come from a discriminator
that already tells real from fake (DeOldify's critic pre-training, in short).
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from zoo.objectives.base import Batch, Critic, Objective
from zoo.registry import register_objective
from zoo.runtime import unwrap

GanMode = Literal["vanilla", "lsgan", "hinge"]
MODES = ("vanilla", "lsgan", "hinge")


def gan_loss(logits: Tensor, real: bool, mode: GanMode, for_discriminator: bool = True) -> Tensor:
    """The GAN loss of patch ``logits`` against the label ``real``, in float32 (the hinge loss differs for D
    and G: G's is -mean(logits))."""
    logits = logits.float()
    if mode == "hinge":
        if not for_discriminator:
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(logits, target)


@register_objective("gan")
class ConditionalGAN(Objective):
    """The conditional GAN term of pix2pix (Isola et al. 2017)."""

    needs_discriminator = True

    def __init__(self, mode: GanMode = "vanilla", warmup_steps: int = 0) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"gan mode must be one of {', '.join(MODES)}, got {mode!r}")
        if warmup_steps < 0:
            raise ValueError(f"gan warmup_steps must be >= 0, got {warmup_steps}")
        self.mode, self.warmup_steps = mode, warmup_steps
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # D steps so far (resumes with the run)

    def update(self, batch: Batch, critic: Critic | None) -> dict[str, float]:
        """One step of the discriminator on the batch's fake and real pairs."""
        d = _required(critic)
        d.module.requires_grad_(True)
        d.optimizer.zero_grad(set_to_none=True)
        # Two backward passes, gradients all-reduced once (on the second) under DDP.
        sync_later = d.module.no_sync() if isinstance(d.module, DistributedDataParallel) else contextlib.nullcontext()
        with sync_later:
            with d.autocast():
                fake = gan_loss(d.module(torch.cat([batch.L, batch.ab_pred.detach()], 1)), False, self.mode)
            d.scaler.scale(0.5 * fake).backward()
        with d.autocast():
            real = gan_loss(d.module(torch.cat([batch.L, batch.ab], 1)), True, self.mode)
        d.scaler.scale(0.5 * real).backward()
        d.scaler.step(d.optimizer)
        d.module.requires_grad_(False)
        self.steps += 1
        return {"d_real": real.item(), "d_fake": fake.item()}

    def forward(self, batch: Batch, critic: Critic | None) -> Tensor:
        """G's term: the frozen discriminator's loss of calling the fake pair real (0 during the warm-up)."""
        d = _required(critic)
        if int(self.steps) <= self.warmup_steps:
            return batch.ab_pred.new_zeros(())
        with d.autocast():  # D's weights are frozen here: bypass DDP, nothing of D to reduce
            logits = unwrap(d.module)(torch.cat([batch.L, batch.ab_pred], 1))
        return gan_loss(logits, True, self.mode, for_discriminator=False)


def _required(critic: Critic | None) -> Critic:
    if critic is None:
        raise ValueError("the gan objective needs the model's discriminator")
    return critic
