"""What an objective is, and a recipe stage's weighted sum of objectives.

One path through a training step::

    output = generator(L)                          # output_channels of the model's output objective (2: ab)
    batch = Batch(L, ab, output, decode)           # batch.ab_pred: output decoded to normalised ab
    logs = stage_loss.update(batch, critic)        # objectives' own steps first (the discriminator's)
    loss, terms = stage_loss(batch, critic)        # sum of weight * objective(batch), each term logged

An objective that defines the generator's output (it overrides :meth:`Objective.output_channels`, e.g. logits
over ab bins) also provides the ``decoder`` that turns that output into ab for colorize, export, scoring and
sample grids; a model has at most one such objective, and without one the generator outputs ab itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

AB_CHANNELS = 2


@dataclass
class Batch:
    """A training batch: the input L, the true ab, the generator's output and (decoded on demand) its ab."""

    L: Tensor  # (B, 1, H, W) normalised lightness
    ab: Tensor  # (B, 2, H, W) true normalised ab
    output: Tensor  # (B, C, H, W) what the generator returned
    decode: Callable[[Tensor], Tensor] = nn.Identity()
    _ab_pred: Tensor | None = field(default=None, repr=False)

    @property
    def ab_pred(self) -> Tensor:
        """The predicted normalised ab (B, 2, H, W) in float32, decoded once."""
        if self._ab_pred is None:
            self._ab_pred = self.decode(self.output).float()
        return self._ab_pred


@dataclass
class Critic:
    """The discriminator and what stepping it takes: handed to the objectives that need one."""

    module: nn.Module  # possibly wrapped by DDP and torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


class Objective(nn.Module):
    """A loss term; subclasses register with ``@zoo.registry.register_objective(name)``.

    Settings come from the model's ``objectives`` table in ``registry.toml`` as constructor keywords. Buffers
    (a colour prior, say) are saved with the checkpoints under ``objective.<name>.``.
    """

    needs_discriminator: ClassVar[bool] = False
    # settings that change only the decoder (how trained output becomes ab), so they may change on trained weights
    decoding_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:  # no settings unless a subclass declares them (registry.toml is checked against it)
        super().__init__()

    @classmethod
    def output_channels(cls, **settings: object) -> int:
        """Channels this objective makes the generator output with ``settings``. Overriding it is what makes an
        objective define the output (with :meth:`decoder`); the base's answer, never asked for, is ab's 2."""
        return AB_CHANNELS

    def decoder(self) -> nn.Module:
        """A module mapping the generator's output to normalised ab (objectives with ``output_channels``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define the generator's output")

    def prepare(self, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Fit state that depends on the training data, from its normalised (L, ab) batches (once per run).

        ``batches`` is lazy: objectives that need no data never iterate it, which costs nothing.
        """

    def update(self, batch: Batch, critic: Critic | None) -> dict[str, float]:
        """Step this objective's own parameters before the generator's step (a discriminator's); logs."""
        return {}

    def forward(self, batch: Batch, critic: Critic | None) -> Tensor:
        """The term's value (a scalar float32 tensor) for the generator's step."""
        raise NotImplementedError


class StageLoss:
    """A recipe stage's objectives with their weights: what the training loop calls, knowing no loss."""

    def __init__(self, objectives: Mapping[str, Objective], weights: Mapping[str, float]) -> None:
        self.terms = [(name, objectives[name], weight) for name, weight in weights.items()]

    @property
    def needs_discriminator(self) -> bool:
        return any(objective.needs_discriminator for _, objective, _ in self.terms)

    def update(self, batch: Batch, critic: Critic | None) -> dict[str, float]:
        """Every objective's own step, in the stage's order; their logs merged."""
        logs: dict[str, float] = {}
        for _, objective, _ in self.terms:
            logs |= objective.update(batch, critic)
        return logs

    def __call__(self, batch: Batch, critic: Critic | None) -> tuple[Tensor, dict[str, float]]:
        """The weighted sum for the generator's step, and each unweighted term as ``g_<name>``."""
        total: Tensor | None = None
        logs: dict[str, float] = {}
        for name, objective, weight in self.terms:
            value = objective(batch, critic)
            logs[f"g_{name}"] = value.item()
            total = weight * value if total is None else total + weight * value
        assert total is not None, "a stage has at least one objective"
        return total, logs
