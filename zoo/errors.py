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


def one_line(err: BaseException | str, limit: int | None = None) -> str:
    """An exception's message (or a text) on one line, its type's name if it has none; with ``limit``, at most
    that many characters: the start (what failed) and the end (its innermost cause) kept whole, cut at word
    boundaries around `` ... ``."""
    text = " ".join(str(err).split()) or type(err).__name__
    if limit is None or len(text) <= limit:
        return text
    head_room, tail_room = (limit - 5) * 3 // 5, (limit - 5) * 2 // 5
    head = text[:head_room + 1].rsplit(" ", 1)[0] if " " in text[:head_room + 1] else text[:head_room]
    tail = text[-tail_room - 1:].split(" ", 1)[-1] if " " in text[-tail_room - 1:] else text[-tail_room:]
    return f"{head} ... {tail}"
