"""``ensemble``: a generator whose output is the mean of several generators' outputs (a deep ensemble).

One path through it::

    L --member 0 (smp-unet, EfficientNet-Lite0)--> ab_0 --+
    L --member 1 (smp-unet, EfficientNet-Lite2)--> ab_1 --+--mean--> ab --the model's inference settings-->

Members trained apart (each by its own recipe) and then put together by :func:`assemble` (``zoo ensemble``)
err in different places: where they agree the mean keeps their colour, where they disagree it is paler. On the
cross-validation folds the mean was closer to the truth than either member; on the held-out photos it matched
the better member's CIEDE2000 with more colour (the default's card has the measurements). ``zoo train`` can
also train an ensemble's members together, on the loss of their mean.

Members are generator tables (``{ arch = "smp-unet", encoder = "tu-tf_efficientnet_lite0" }``), built as
generators of their own. The ensemble's ``encoder_weights`` is given to every member as that member's
pretrained setting, so that building without pretrained weights (loading a checkpoint), and packing the shipped
form (frozen encoders left to their named source, :func:`zoo.checkpoint.pack`), treat all members alike; a
member table that names its own is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from zoo.registry import GENERATORS, Geometry, register_generator

if TYPE_CHECKING:
    from zoo.spec import ArchSpec

ARCH = "ensemble"


class MeanOfGenerators(nn.Module):
    """The mean of its members' outputs; ``members[i]`` holds member i (state keys ``members.i.*``)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        out = self.members[0](x)
        for member in self.members[1:]:
            out = out + member(x)
        return out / len(self.members)


def member_archs(members: Sequence[Mapping[str, Any]], where: str = "ensemble") -> list[ArchSpec]:
    """Each member table's architecture and settings, checked: a known generator (:func:`zoo.spec.arch_spec`)
    other than an ensemble, with settings it takes (:func:`zoo.spec.check_settings`), and not its pretrained
    setting (the ensemble's)."""
    from zoo.spec import SpecError, arch_spec, check_settings

    if len(members) < 2:
        raise SpecError(f"{where}.members: an ensemble needs at least two member tables, got {len(members)}")
    archs = []
    for i, member in enumerate(members):
        at = f"{where}.members[{i}]"
        arch = arch_spec("generator", member, at)
        if arch.arch == ARCH:
            raise SpecError(f"{at}: an ensemble's member cannot be an ensemble (list its members instead)")
        check_settings("generator", arch.arch, arch.settings, at)
        own = GENERATORS.pretrained_setting(arch.arch)
        if own is not None and own in arch.settings:
            raise SpecError(f"{at}.{own}: set by the ensemble's encoder_weights for every member; leave it out here")
        archs.append(arch)
    return archs


def _multiple(settings: Mapping[str, Any]) -> int:
    """The least side every member takes: the least common multiple of their declared multiples."""
    sides = [GENERATORS.geometry(member.arch).size_multiple(GENERATORS.full_settings(member.arch, member.settings))
             for member in member_archs(settings["members"])]
    return math.lcm(*sides)


@register_generator(ARCH, geometry=Geometry(multiple=_multiple), pretrained_setting="encoder_weights")
def ensemble(
    in_channels: int = 1,
    out_channels: int = 2,
    *,
    members: Sequence[Mapping[str, Any]] = (),
    encoder_weights: str | None = None,
) -> MeanOfGenerators:
    """The mean of the generators that ``members`` describe (at least two), each built with
    ``encoder_weights`` as its pretrained setting (members without one take none; naming weights for them
    is refused)."""
    built = []
    for i, member in enumerate(member_archs(members)):
        settings = dict(member.settings)
        own = GENERATORS.pretrained_setting(member.arch)
        if own is not None:
            settings[own] = encoder_weights
        elif encoder_weights is not None and encoder_weights.lower() != "none":
            raise ValueError(f"ensemble member {i} ({member.arch}) takes no pretrained weights, so encoder_weights"
                             f" {encoder_weights!r} cannot apply to it")
        built.append(GENERATORS.create(member.arch, in_channels=in_channels, out_channels=out_channels, **settings))
    return MeanOfGenerators(built)


def assemble(model: str, checkpoints: Sequence[Path], target: Path) -> None:
    """Write an inference checkpoint of ensemble ``model`` (a registry name) to ``target``: member i's weights
    are the generator of ``checkpoints[i]`` (``RUN/generator.safetensors`` or a shipped file), which must be
    the architecture and settings of the model's member i and output plain ab. The members' own inference
    settings are not used: the ensemble's spec has its own. ``zoo export --format safetensors`` packs it."""
    from zoo import checkpoint
    from zoo.spec import get_spec

    spec = get_spec(model)
    if spec.generator.arch != ARCH:
        raise checkpoint.CheckpointError(f"model {model!r} is not an ensemble (its generator is {spec.generator.arch})")
    wanted = member_archs(spec.generator.settings.get("members", ()), f"model {model!r}: generator")
    if len(checkpoints) != len(wanted):
        raise checkpoint.CheckpointError(f"model {model!r} has {len(wanted)} members; got {len(checkpoints)}"
                                         " checkpoints (one per member, in the registry's order)")
    tensors: dict[str, torch.Tensor] = {}
    for i, (member, path) in enumerate(zip(wanted, checkpoints, strict=True)):
        member_spec, predictor = checkpoint.load_generator(Path(path))
        held = member_spec.generator
        own = GENERATORS.pretrained_setting(held.arch)
        have = {k: v for k, v in held.settings.items() if k != own}
        if held.arch != member.arch or have != member.settings:
            raise checkpoint.CheckpointError(
                f"{path}: holds a {held.arch} generator with settings {have}, not member {i} of {model!r}"
                f" ({member.arch} with settings {member.settings})")
        if member_spec.output_objective is not None:
            raise checkpoint.CheckpointError(f"{path}: its generator outputs {member_spec.output_objective!r}"
                                             " scores, not ab; an ensemble averages ab")
        tensors |= checkpoint.prefixed(f"generator.members.{i}.", predictor.generator.state_dict())
    checkpoint.save(target, tensors, {"model": model, "spec": spec.to_dict(), "step": 0})
