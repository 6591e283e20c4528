"""Every option of every command is checked here, where click parses it: sizes and counts within their ranges,
durations, learning rates, devices, ``KEY=VALUE`` settings, output formats. A value that does not pass is a
usage error naming the option (exit status 2) before any work starts.

Paths are checked by what they are for: inputs by click (``exists=True``), outputs by the output-path policy
(:mod:`zoo.outputs`) once the command knows its inputs. Errors found later are one line (:mod:`zoo.cli.errors`).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable
from typing import Any

import click

from zoo.spec import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from zoo.tables import FORMATS

COUNT = click.IntRange(min=1)  # batch sizes, steps, epochs, iterations
NON_NEGATIVE = click.IntRange(min=0)  # workers, warm-up iterations


def image_size_type(minimum: int = MIN_IMAGE_SIZE) -> click.IntRange:
    """A side in pixels: at least ``minimum``, at most :data:`zoo.spec.MAX_IMAGE_SIZE`."""
    return click.IntRange(minimum, MAX_IMAGE_SIZE)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``1h30m``, ``2.5h``."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 1h30m)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


class Duration(click.ParamType):
    """A positive wall-clock time, ``90``, ``90s``, ``15m``, ``1h30m``, ``2.5h``, as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if not 0 < seconds < math.inf:
            self.fail(f"{value!r} is not a positive duration (examples: 90s, 15m, 1h30m)", param, ctx)
        return seconds


class PositiveFloat(click.ParamType):
    """A finite number above 0 (a learning rate)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not 0 < number < math.inf:
            self.fail(f"{value!r} is not a finite number above 0", param, ctx)
        return number


class Device(click.ParamType):
    """``auto`` or a torch device of this machine: ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text == "auto":
            return text
        import torch

        try:
            device = torch.device(text)
        except RuntimeError:
            self.fail(f"{text!r} is not a device (auto, cpu, cuda, cuda:1, mps)", param, ctx)
        backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None)}.get(device.type)
        if device.type != "cpu" and (backend is None or not backend.is_available()):
            self.fail(f"this machine has no {device.type} device", param, ctx)
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            self.fail(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)", param, ctx)
        return text


class Setting(click.ParamType):
    """``KEY=VALUE`` with the value read as TOML (numbers, booleans, strings, lists), else kept as a string."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        try:
            return key.strip(), tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return key.strip(), text


class HintCounts(click.ParamType):
    """Numbers of simulated hints, ``0,1,2,5,10,20``: whole numbers from 0 to 100, as a sorted tuple without
    repeats (an empty string: none)."""

    name = "counts"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        if not all(part.isdigit() and int(part) <= 100 for part in parts):
            self.fail(f"{value!r} is not a list of hint counts from 0 to 100 (example: 0,1,2,5,10,20)", param, ctx)
        return tuple(sorted({int(part) for part in parts}))


DURATION = Duration()
HINT_COUNTS = HintCounts()
LEARNING_RATE = PositiveFloat()
DEVICE = Device()
SETTING = Setting()


def device_option(default: str = "auto") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--device``, checked against this machine's devices."""
    return click.option("--device", default=default, show_default=True, type=DEVICE, help="auto, cpu, cuda, cuda:1, mps.")


def format_option(what: str = "the table") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format table|csv|json|markdown`` for a command that prints a table."""
    return click.option(
        "--format", "table_format", type=click.Choice(FORMATS), default="table", show_default=True,
        help=f"How to print {what}: table (drawn; whole when not on a terminal), csv, json or markdown (the table"
             " alone on stdout, other lines on stderr).",
    )
