"""The one-line error every command fails with: ``Error: <message>`` on stderr and exit status 1.

:func:`fail` is a command's own refusal. :class:`Command`, the class of every command, turns what the zoo
raises about its inputs into the same line: a :class:`zoo.errors.ZooError` (a bad file, checkpoint, registry,
dataset, output path ...), an unknown name, an ``OSError`` (as ``<file>: <reason>``: a folder that is a file,
a disk that is full), running out of memory. Anything else is a bug, and keeps its traceback. An option out
of its range never gets this far: :mod:`zoo.cli.options` refuses it as a usage error (exit status 2).
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from zoo.errors import ZooError, one_line
from zoo.registry import UnknownNameError


def fail(message: str) -> NoReturn:
    """Exit with status 1 and ``Error: message`` on one line."""
    raise click.ClickException(" ".join(str(message).split()))


def describe(err: BaseException) -> str | None:
    """The one-line message of an error the user can act on; None for any other (a bug)."""
    if isinstance(err, ZooError | UnknownNameError):
        return one_line(err)
    if isinstance(err, OSError):
        where = " -> ".join(str(name) for name in (err.filename, err.filename2) if name is not None)
        return f"{where}: {err.strerror or one_line(err)}" if where else one_line(err)
    torch = sys.modules.get("torch")
    if isinstance(err, MemoryError) or (torch is not None and isinstance(err, torch.OutOfMemoryError)):
        return f"out of memory ({one_line(err)}): try a smaller --image-size or --batch-size"
    return None


class Command(click.Command):
    """A click command whose user-facing failures (see :func:`describe`) end in one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as err:  # noqa: BLE001 - sorted by describe: what it knows is one line, the rest re-raised
            message = describe(err)
            if message is None:
                raise
            raise click.ClickException(message) from err
