"""The typed model specifications: one frozen dataclass per level (as litgpt's ``Config``).

A :class:`ModelSpec` names a generator and an optional discriminator (:class:`ArchSpec`), the settings of its
objectives, its inference settings and a training recipe of :class:`StageSpec` stages, each weighting objectives
by name (``loss = { l1 = 100, gan = 1 }``) with its length and :class:`OptimizerSpec`. Numeric fields carry
their :class:`Bounds` (:func:`bounded`), which :mod:`zoo.spec.validation` checks for every level alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError
from zoo.registry import OBJECTIVES

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 4096  # a side of 4096 px is 16.8 megapixels a square image: beyond every recipe and benchmark
MAX_CHROMA_SCALE = 4.0  # well past useful: ab x 4 takes a pale colour (|ab| 25) to the edge of the +-110 range
MAX_CHROMA_KNEE = 200.0  # Lab chroma units; sRGB's most saturated colours have C about 130


class SpecError(ZooError, ValueError):
    """A malformed model specification; the message names the model and the key."""


@dataclass(frozen=True)
class Bounds:
    """The finite values a number (or each number of a tuple) may take: from ``low`` to ``high``, each end
    excluded when ``open_low``/``open_high``; with ``ordered``, a tuple's numbers do not decrease."""

    low: float
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    ordered: bool = False

    def check(self, value: Any, where: str) -> None:
        numbers = value if isinstance(value, tuple) else (value,)
        for number in numbers:
            below = number < self.low or (self.open_low and number == self.low)
            above = self.high is not None and (number > self.high or (self.open_high and number == self.high))
            if not math.isfinite(number) or below or above:
                raise SpecError(f"{where}: expected {self}, got {value!r}")
        if self.ordered and list(numbers) != sorted(numbers):
            raise SpecError(f"{where}: expected numbers in increasing order, got {value!r}")

    def __str__(self) -> str:
        low = f"{'>' if self.open_low else '>='} {self.low:g}"
        high = "" if self.high is None else f" and {'<' if self.open_high else '<='} {self.high:g}"
        return f"a value {low}{high}"


def bounded(default: Any = dataclasses.MISSING, **bounds: Any) -> Any:
    """A dataclass field whose values :class:`Bounds` limits (checked when a spec is read)."""
    return field(default=default, metadata={"bounds": Bounds(**bounds)})


@dataclass(frozen=True)
class ArchSpec:
    """An architecture name and the settings its factory is called with."""

    arch: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **self.settings}


@dataclass(frozen=True)
class OptimizerSpec:
    """Adam settings (pix2pix's defaults)."""

    lr: float = bounded(2e-4, low=0, open_low=True)
    betas: tuple[float, float] = bounded((0.5, 0.999), low=0, high=1, open_high=True)
    weight_decay: float = bounded(0.0, low=0)


@dataclass(frozen=True)
class StageSpec:
    """One stage of a training recipe: objectives by name with their weights, length and optimiser."""

    name: str
    loss: Mapping[str, float]  # objective name -> weight, in the order the stage lists them
    epochs: int = bounded(low=1)
    optimizer: OptimizerSpec = OptimizerSpec()
    d_optimizer: OptimizerSpec | None = None  # the discriminator's; None: same as ``optimizer``
    decay_epochs: int = bounded(0, low=0)  # pix2pix's "linear" policy: the last decay_epochs epochs take the lr to 0
    image_size: int = bounded(256, low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE)
    batch_size: int = bounded(16, low=1)
    # random-resized crops of this area fraction; None: pix2pix's
    crop_scale: tuple[float, float] | None = bounded(None, low=0, high=1, open_low=True, ordered=True)
    time_share: float = bounded(1.0, low=0, open_low=True)  # under --max-time, the stage's share of the budget
    frozen: tuple[str, ...] = ()  # generator submodules (by name, e.g. "encoder") this stage does not train
    # train the stage this many times from the weights it starts with (each branch its own data order), then
    # average the branches' weights: a model soup (Wortsman et al. 2022), less variance at no inference cost
    branches: int = bounded(1, low=1)

    def lr_factor(self, epoch: int) -> float:
        """The multiplier of the base learning rates in ``epoch`` (0-based): 1, then linear decay towards 0."""
        decay = min(self.decay_epochs, self.epochs)  # --epochs may shorten a stage below its decay
        return 1.0 - max(0, epoch + 1 - (self.epochs - decay)) / (decay + 1)

    @property
    def uses_discriminator(self) -> bool:
        """Whether one of the stage's objectives trains against the discriminator."""
        return any(OBJECTIVES.get(name).needs_discriminator for name in self.loss)

    @property
    def discriminator_optimizer(self) -> OptimizerSpec:
        return self.d_optimizer or self.optimizer


@dataclass(frozen=True)
class ModelSpec:
    """A named model: generator, optional discriminator and training recipe."""

    name: str
    generator: ArchSpec
    stages: tuple[StageSpec, ...]
    discriminator: ArchSpec | None = None
    objectives: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> constructor settings
    description: str = ""
    # short side the model sees at inference; None: the last stage's image size
    inference_size: int | None = bounded(None, low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE)
    weights: str | None = None  # shipped trained weights (see weights_path)
    # a model (a ``choices`` objective's, with shipped weights) whose alternative colourings of these weights'
    # photos hints choose among before they spread (zoo.guided.choose)
    choices: str | None = None
    cpu: Mapping[str, Any] = field(default_factory=dict)  # stage settings that replace the recipe's on a CPU
    # predicted ab times this at inference: below 1, colours shrunk toward gray where a model trained on few
    # photos is confidently wrong (chosen by cross-validation on training photos, never on held-out ones)
    chroma_scale: float = bounded(1.0, low=0, high=MAX_CHROMA_SCALE, open_low=True)
    # a pixel's colour kept in proportion C / (C + chroma_knee), C its predicted chroma (Lab units), before the
    # chroma scale: 0 keeps every pixel alike; above 0, faint colours (those a model hedges on) go toward gray
    # more than strong ones
    chroma_knee: float = bounded(0.0, low=0, high=MAX_CHROMA_KNEE)
    # average the prediction with that of the mirrored photo, mirrored back (test-time augmentation): a model
    # unsure of a colour predicts different ones for the two views, and the mean shrinks just those
    flip_average: bool = False
    # photos `zoo train` holds out for validation; 0: trains on all (lengths chosen by cross-validation)
    val_fraction: float = bounded(0.1, low=0, high=1, open_high=True)

    @property
    def working_size(self) -> int:
        """The short side ``zoo colorize`` and ``zoo score`` run the model at (ab is then resized to the photo)."""
        return self.inference_size or self.stages[-1].image_size

    @property
    def ab_settings(self) -> dict[str, Any]:
        """How predicted ab is averaged, faded and scaled: the keyword arguments of ``zoo.factory.inferred_ab``."""
        return {key: getattr(self, key) for key in AB_SETTING_KEYS}

    @property
    def objective_names(self) -> list[str]:
        """Every objective some stage weights, in order of first use."""
        return list(dict.fromkeys(name for stage in self.stages for name in stage.loss))

    @property
    def output_objective(self) -> str | None:
        """The objective that defines what the generator outputs (logits over ab bins ...); None: plain ab."""
        from zoo.spec.validation import defines_output

        return next((n for n in self.objective_names if defines_output(n)), None)

    @property
    def output_channels(self) -> int:
        """Channels the generator outputs: the output objective's, else 2 (ab)."""
        name = self.output_objective
        return 2 if name is None else OBJECTIVES.get(name).output_channels(**self.objectives.get(name, {}))

    def objective_settings(self, name: str) -> dict[str, Any]:
        return dict(self.objectives.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON- and TOML-friendly dict that :func:`spec_from_dict` turns back into this spec."""
        out: dict[str, Any] = {"description": self.description, "generator": self.generator.to_dict()}
        if self.discriminator is not None:
            out["discriminator"] = self.discriminator.to_dict()
        if self.objectives:
            out["objectives"] = {name: dict(settings) for name, settings in self.objectives.items()}
        for key in OPTIONAL_KEYS:
            if getattr(self, key) != default(key):
                out[key] = getattr(self, key)
        if self.cpu:
            out["cpu"] = _plain(dict(self.cpu))
        out["stages"] = [_plain(dataclasses.asdict(stage)) for stage in self.stages]
        return out

    def for_device(self, device_type: str) -> ModelSpec:
        """The recipe for ``device_type``: on ``cpu``, the ``cpu`` table's stage settings replace the recipe's
        (an image size and crops that buy the most quality per CPU minute); elsewhere the recipe as written."""
        if device_type != "cpu" or not self.cpu:
            return self
        return self.with_overrides(**self.cpu)

    def with_overrides(
        self,
        generator: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        **stage_fields: Any,
    ) -> ModelSpec:
        """A copy with generator/discriminator settings and stage fields (applied to every stage) replaced."""
        raw = self.to_dict()
        raw["generator"].update(generator or {})
        if discriminator:
            if "discriminator" not in raw:
                raise SpecError(f"model {self.name!r} has no discriminator to override")
            raw["discriminator"].update(discriminator)
        for stage in raw["stages"]:
            for key, value in stage_fields.items():
                if key == "lr":
                    stage["optimizer"]["lr"] = value
                else:
                    stage[key] = value
        from zoo.spec.validation import spec_from_dict

        return spec_from_dict(self.name, raw)

    def with_inference(self, settings: Mapping[str, Any]) -> ModelSpec:
        """A copy with inference settings replaced: what trained weights are run with, not what they are.

        Keys: :data:`INFERENCE_KEYS`, and the decoding settings of the output objective (its
        ``decoding_settings``: classification's ``temperature``, say). Any other key is a :class:`SpecError`
        naming the ones that are allowed (``zoo score --set`` scores variants of shipped weights this way).
        """
        raw = self.to_dict()
        output = self.output_objective
        decoding = OBJECTIVES.get(output).decoding_settings if output else ()
        for key, value in settings.items():
            if key in INFERENCE_KEYS:
                raw[key] = value
            elif key in decoding:
                raw.setdefault("objectives", {}).setdefault(output, {})[key] = value
            else:
                allowed = [*INFERENCE_KEYS, *decoding]
                close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(close)}?" if close else f"those of {self.name}: {', '.join(allowed)}"
                raise SpecError(f"model {self.name!r}: {key!r} is not an inference setting; {hint}")
        from zoo.spec.validation import spec_from_dict

        return spec_from_dict(self.name, raw)


def _plain(value: Any) -> Any:
    """Dataclass-dict values made TOML/JSON friendly (tuples to lists, None dropped)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# what zoo.factory.inferred_ab does with a prediction (its keyword arguments)
AB_SETTING_KEYS = ("flip_average", "chroma_scale", "chroma_knee")
# change how weights run, not the weights
INFERENCE_KEYS = ("inference_size", *AB_SETTING_KEYS)
# the model-level keys other than the generator, discriminator, objectives, stages, cpu: absent means the default
OPTIONAL_KEYS = ("inference_size", "weights", "choices", "chroma_scale", "chroma_knee", "flip_average", "val_fraction")


def default(key: str) -> Any:
    """The value a model has for ``key`` when its registry entry does not say."""
    return ModelSpec.__dataclass_fields__[key].default
