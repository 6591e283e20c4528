"""Objectives: the loss terms a recipe stage weights (``loss = { l1 = 100, gan = 1 }`` in ``registry.toml``).

One file per objective, each registered by name (third parties add more through the ``zoo.objectives``
entry-point group). :class:`Objective` says what one must provide; :class:`StageLoss` is a stage's weighted
sum of them, which is all the training loop calls.
"""

from zoo.objectives.base import Batch, Critic, Objective, StageLoss

__all__ = ["Batch", "Critic", "Objective", "StageLoss"]
