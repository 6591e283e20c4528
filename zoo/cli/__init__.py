"""The ``zoo`` command line, one module per group of commands.

    models.py     zoo list, zoo info
    training.py   zoo train, zoo ensemble
    inference.py  zoo colorize, zoo export
    harness.py    zoo bench, zoo score, zoo leaderboard, zoo report
    app.py        zoo app (the browser page)
    hub.py        zoo push (to the Hugging Face Hub)
    options.py    every option's type and range, checked as it is parsed (a bad value: exit status 2)
    errors.py     the one-line error every command fails with (exit status 1), whatever raised it

Command modules import only click when loaded; what a command needs (torch, the models) is imported when it
runs, so ``zoo --help`` stays quick.
"""

from __future__ import annotations

import logging
import warnings

import click

from zoo.allocator import keep_freed_memory
from zoo.cli import app, harness, hub, inference, models, training


class _Echo(logging.Handler):
    """A log record as one line on the standard error the command writes to now (a test runner's, say)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="colorization-zoo")
def main() -> None:
    """colorization-zoo: train, benchmark and use automatic image colorization models.

    \b
    Example:
      zoo list
      zoo colorize photo.jpg --out colour/
      zoo train unet-resnet18-gan --epochs 1
    """
    keep_freed_memory()  # a CPU's batches reuse freed memory instead of fresh pages each (zoo/allocator.py)
    warnings.formatwarning = _one_line  # a warning (no ImageNet weights offline, say) is one line, not two
    downloads = logging.getLogger("zoo.downloads")  # what is being downloaded (a dataset can take minutes)
    if not any(isinstance(handler, _Echo) for handler in downloads.handlers):
        downloads.addHandler(_Echo())
        downloads.setLevel(logging.INFO)


def _one_line(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    return f"{category.__name__}: {' '.join(str(message).split())}\n"


for command in (models.list_command, models.info, training.train, training.ensemble, harness.bench, harness.score,
                harness.leaderboard, inference.colorize, inference.export, harness.report, app.app, hub.push):
    main.add_command(command)
