"""Option types shared by the commands, and the one-line error every command fails with."""

from __future__ import annotations

import tomllib
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """Exit with status 1 and ``Error: message`` on one line."""
    raise click.ClickException(" ".join(str(message).split()))


def setting(text: str) -> tuple[str, object]:
    """``key=value`` with the value parsed as TOML (numbers, booleans, strings, lists), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value
