"""``zoo train``: train a model of the registry through its recipe stages, or resume a run; ``zoo ensemble``:
put trained members together into an ensemble model's checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from zoo.cli.errors import Command, fail
from zoo.cli.options import COUNT, DURATION, LEARNING_RATE, NON_NEGATIVE, SETTING, device_option, image_size_type

# CLI parameters under another name than the TrainOptions field they set
_FIELDS = {"compile_": "compile", "settings": "generator", "no_progress": "progress"}


@click.command(cls=Command)
@click.argument("name", required=False)
@click.option("--data", default="sample-train", show_default=True,
              help="sample-train (the embedded photos without the held-out ones), sample, heldout, a folder, a glob,"
                   " a text file of paths, or a named dataset (coco-10k).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Run folder, new or empty [default: runs/NAME-DATE-TIME].")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Continue the run in this folder from its last checkpoint (it can change only --device,"
                   " --workers, --max-time and --no-progress).")
@click.option("--epochs", type=COUNT, help="Epochs of every stage.")
@click.option("--max-steps", type=COUNT, help="At most this many steps per stage.")
@click.option("--max-time", type=DURATION,
              help="Wall-clock budget for the whole run (90s, 15m, 1h30m); stops with a checkpoint.")
@click.option("--batch-size", type=COUNT)
@click.option("--lr", type=LEARNING_RATE, help="Generator learning rate of every stage.")
@click.option("--image-size", type=image_size_type())
@device_option()
@click.option("--amp", type=click.Choice(["auto", "no", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast dtype; auto is bf16 (or fp16) on CUDA and off on CPU, where bf16 is emulated.")
@click.option("--channels-last/--no-channels-last", default=None,
              help="NHWC memory format [default: on for CPU, where it measured faster, off elsewhere].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator and discriminator.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", type=NON_NEGATIVE, help="DataLoader workers [default: min(4, CPUs)].")
@click.option("--checkpoint-every", default=200, show_default=True, type=COUNT, help="Steps between checkpoints.")
@click.option("--validate-every", default=100, show_default=True, type=COUNT,
              help="Validate (sample grid, val L1, checkpoint) at the first epoch end this many steps on.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True),
              help="Photos held out for validation [default: the model's, 0.1 unless it says]; 0 trains on all.")
@click.option("--keep-best", is_flag=True,
              help="generator.safetensors gets the weights of the best validation L1 (early stopping), not the last.")
@click.option("--init", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Start the generator from this checkpoint's weights (a generator.safetensors): fine-tuning.")
@click.option("--set", "settings", multiple=True, type=SETTING, help="Override a generator setting (repeatable).")
@click.option("--no-progress", is_flag=True, help="No live progress bar (logs still go to metrics.jsonl).")
def train(name: str | None, resume_dir: Path | None, **params: Any) -> None:
    """Train model NAME on real photos through its recipe stages, or --resume a run.

    Progress, metrics.jsonl, sample grids (gray | ours | truth) and checkpoints go to the run folder, which
    must be new or empty (another run's folder is refused: --resume continues it);
    checkpoints/last.safetensors resumes bit for bit, generator.safetensors is for `zoo colorize`.
    Under `torchrun --nproc-per-node N zoo train ...` it trains with DistributedDataParallel.

    \b
    Example:
      zoo train unet-resnet18-gan --epochs 2 --image-size 128
      zoo train pix2pix-unet-gan --data ~/photos --max-time 15m --set num_downs=7 --image-size 128
      zoo train --resume runs/unet-resnet18-gan-20261124-101500
    """
    from zoo import train as training

    context = click.get_current_context()
    options = {_FIELDS.get(key, key): _field_value(key, value) for key, value in params.items()}
    if resume_dir is not None:
        defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)
        given = [key for key in params if context.get_parameter_source(key) not in defaults]
        chosen = {_FIELDS.get(key, key): options[_FIELDS.get(key, key)] for key in given}
        summary = training.resume(resume_dir, echo=click.echo, model=name, **chosen)
    else:
        if name is None:
            fail("give a model NAME (see `zoo list`) or --resume RUN_DIR")
        summary = training.train(name, training.TrainOptions(**{k: v for k, v in options.items() if v is not None}),
                                 echo=click.echo)
    for stage in summary.stages:
        val = "n/a" if stage.val_l1 is None else f"{stage.val_l1:.4f}"
        steps: int | str = stage.steps
        if stage.branch_steps is not None:
            each = stage.branch_steps
            same = len(set(each)) == 1
            steps = f"{len(each)} branches x {each[0]}" if same else f"{len(each)} branches of {', '.join(map(str, each))}"
        click.echo(f"{stage.stage}: {steps} steps, val L1 {val} ({stage.stopped.value})")
    if summary.best is not None:
        click.echo(f"best validation L1 {summary.best[0]:.4f} at step {summary.best[1]}: kept")
    click.echo(f"generator: {summary.generator}")


def _field_value(key: str, value: Any) -> Any:
    """A CLI parameter's value as its TrainOptions field holds it."""
    if key == "settings":
        return dict(value)
    if key == "no_progress":
        return not value
    return value


@click.command(cls=Command)
@click.argument("name")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The ensemble's checkpoint to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file (never a member's checkpoint).")
def ensemble(name: str, checkpoints: tuple[Path, ...], out: Path, overwrite: bool) -> None:
    """Write ensemble model NAME's checkpoint from its members' trained weights: one CHECKPOINT per member, in
    the order of the registry's ``members`` (each a `zoo train` run's generator.safetensors or shipped weights).

    The members are trained apart, each by its own recipe; the ensemble predicts the mean of their ab and then
    applies its own inference settings. `zoo export NAME --checkpoint OUT --format safetensors` packs it.

    \b
    Example:
      zoo ensemble effnet-lite-pair-color runs/lite0/generator.safetensors runs/lite2/generator.safetensors \\
          --out runs/pair.safetensors
    """
    from zoo import outputs
    from zoo.models.ensemble import assemble

    outputs.output_file(out, inputs=checkpoints, overwrite=overwrite)
    assemble(name, checkpoints, out)
    click.echo(f"wrote {out}: the mean of {len(checkpoints)} members ({', '.join(map(str, checkpoints))})")
