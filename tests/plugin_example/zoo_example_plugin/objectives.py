"""An objective a third party adds: the Huber (smooth L1) distance of ab."""

import torch
import torch.nn.functional as F

from zoo.objectives import Batch, Critic, Objective


class Huber(Objective):
    """Quadratic within ``delta`` of the true ab (normalised units), linear beyond: L1 that is smooth at zero."""

    def __init__(self, delta: float = 0.1) -> None:
        super().__init__()
        if delta <= 0:
            raise ValueError(f"example-huber needs delta > 0, got {delta}")
        self.delta = delta

    def forward(self, batch: Batch, critic: Critic | None = None) -> torch.Tensor:
        return F.huber_loss(batch.ab_pred, batch.ab.float(), delta=self.delta)
