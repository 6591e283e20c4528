"""Size and cost of a module: parameter counts and FLOPs per forward."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (2 per multiply-add) of one forward of ``module`` on a zero input of ``input_shape``, in eval mode."""
    was_training = module.training
    module.eval()
    try:
        param = next(module.parameters(), None)
        x = torch.zeros(input_shape, device=param.device if param is not None else "cpu")
        with FlopCounterMode(display=False) as counter:
            module(x)
        return counter.get_total_flops()
    finally:
        module.train(was_training)
