"""The one kind of error a user can act on: :class:`ZooError`.

Every problem the zoo finds with what it was given (a file, an option, a registry entry, a checkpoint, a
dataset, an output path) is a ``ZooError`` subclass whose message is one line that names the file (or the
model and key) and says what is wrong; the ``zoo`` command prints it as ``Error: <message>`` and exits with
status 1 (:mod:`zoo.cli.errors`). Subclasses keep the built-in base their callers have always caught
(``CheckpointError`` is still a ``ValueError``, ``DatasetError`` a ``RuntimeError``).
"""

from __future__ import annotations


class ZooError(Exception):
    """A problem with the zoo's inputs, options or outputs; the message is one line naming the file."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (its type's name if it has none)."""
    return " ".join(str(err).split()) or type(err).__name__
