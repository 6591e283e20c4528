"""The ``zoo`` command line: list, info, train, bench, score, colorize, export, report."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

import zoo
from bench.commands import bench, score
from zoo.factory import create_models
from zoo.registry import architectures
from zoo.stats import count_flops, count_parameters, millions
from zoo.use_cli import colorize, export, report


def _console() -> Console:
    """A console sized by the terminal (or $COLUMNS) at the time of the command."""
    return Console()


def _fail(message: str) -> None:
    """Exit with a one-line error."""
    raise click.ClickException(message)


def _spec(name: str) -> zoo.ModelSpec:
    try:
        return zoo.get_spec(name)
    except (KeyError, ValueError) as exc:
        _fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="colorization-zoo")
def main() -> None:
    """colorization-zoo: train, benchmark and use automatic image colorization models.

    \b
    Example:
      zoo list
      zoo train unet-resnet18-gan --epochs 1
    """


@main.command(name="list")
@click.argument("pattern", required=False)
@click.option("--arch", "show_arch", is_flag=True, help="List architectures (generators, discriminators) instead.")
def list_command(pattern: str | None, show_arch: bool) -> None:
    """List the models of the registry, optionally matching an fnmatch PATTERN.

    \b
    Example:
      zoo list            # every model, with parameter counts
      zoo list '*gan'     # the GAN recipes
      zoo list --arch     # architectures, built-in and from plugins
    """
    if show_arch:
        console = _console()
        table = Table("kind", "architecture", "source")
        for kind in ("generator", "discriminator"):
            registry = architectures(kind)
            for name in registry.names(pattern):
                table.add_row(kind, name, registry.source(name))
        console.print(table)
        return
    console = _console()
    table = Table("model", "generator", "discriminator", "G params", "D params", "stages", "description")
    for column in table.columns[:6]:
        column.no_wrap = True
    for name in zoo.list_models(pattern):
        spec = zoo.get_spec(name)
        try:
            generator, discriminator = create_models(spec)
            g_params, d_params = count_parameters(generator), discriminator and count_parameters(discriminator)
        except Exception as exc:  # one broken model is a row with its error, not a failed listing
            g_params = d_params = None
            spec_desc = f"[red]cannot build: {type(exc).__name__}: {exc}[/red]"
        else:
            spec_desc = spec.description
        table.add_row(
            name,
            spec.generator.arch,
            spec.discriminator.arch if spec.discriminator else "-",
            millions(g_params),
            millions(d_params),
            " > ".join(f"{s.name}({s.loss})" for s in spec.stages),
            spec_desc,
        )
    console.print(table)


@main.command()
@click.argument("name")
@click.option("--image-size", default=256, show_default=True, help="Square image side for the FLOP count.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(name: str, image_size: int, as_json: bool) -> None:
    """Show model NAME: its resolved spec, parameter counts and FLOPs per image.

    \b
    Example:
      zoo info unet-resnet18-gan
      zoo info pix2pix-unet-gan --json
    """
    spec = _spec(name)
    generator, discriminator = create_models(spec)
    facts = {
        "name": spec.name,
        "spec": spec.to_dict(),
        "generator_params": count_parameters(generator),
        "generator_gflops": count_flops(generator, (1, 1, image_size, image_size)) / 1e9,
        "image_size": image_size,
    }
    if discriminator is not None:
        facts["discriminator_params"] = count_parameters(discriminator)
        facts["discriminator_gflops"] = count_flops(discriminator, (1, 3, image_size, image_size)) / 1e9
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    console = _console()
    console.print(f"[bold]{spec.name}[/bold]: {spec.description}")
    console.print_json(json.dumps(facts["spec"]))
    console.print(
        f"generator {spec.generator.arch}: {facts['generator_params']:,} parameters, "
        f"{facts['generator_gflops']:.2f} GFLOP per {image_size}x{image_size} image"
    )
    if discriminator is not None:
        console.print(
            f"discriminator {spec.discriminator.arch}: {facts['discriminator_params']:,} parameters, "
            f"{facts['discriminator_gflops']:.2f} GFLOP per {image_size}x{image_size} image"
        )


def _setting(text: str) -> tuple[str, object]:
    """``key=value`` with the value parsed as TOML (numbers, booleans, strings), else kept as a string."""
    key, sep, value = text.partition("=")
    if not sep:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


@main.command()
@click.argument("name", required=False)
@click.option("--data", default="sample", show_default=True,
              help="sample (embedded photos), a folder, a glob, a text file of paths, or a named dataset (coco-10k).")
@click.option("--out", type=click.Path(path_type=Path), help="Run folder [default: runs/NAME-DATE-TIME].")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Continue the run in this folder from its last checkpoint.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every stage.")
@click.option("--max-steps", type=click.IntRange(min=1), help="At most this many steps per stage.")
@click.option("--max-time", help="Wall-clock budget for the whole run (90s, 15m, 1h30m); stops with a checkpoint.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--lr", type=float, help="Generator learning rate of every stage.")
@click.option("--image-size", type=click.IntRange(min=16))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--amp", type=click.Choice(["auto", "no", "bf16", "fp16"]), default="auto", show_default=True,
              help="Autocast dtype; auto is bf16 (or fp16) on CUDA and off on CPU, where bf16 is emulated.")
@click.option("--channels-last", is_flag=True, help="NHWC memory format (faster convolutions on recent GPUs).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator and discriminator.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader workers [default: min(4, CPUs)].")
@click.option("--checkpoint-every", default=200, show_default=True, help="Steps between checkpoints.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a generator setting (repeatable).")
@click.option("--no-progress", is_flag=True, help="No live progress bar (logs still go to metrics.jsonl).")
def train(name: str | None, resume_dir: Path | None, max_time: str | None, compile_: bool, settings: tuple[str, ...],
          no_progress: bool, **options: object) -> None:
    """Train model NAME on real photos through its recipe stages, or --resume a run.

    Progress, metrics.jsonl, sample grids (gray | ours | truth) and checkpoints go to the run folder;
    checkpoints/last.safetensors resumes bit for bit, generator.safetensors is for `zoo colorize`.
    Under `torchrun --nproc-per-node N zoo train ...` it trains with DistributedDataParallel.

    \b
    Example:
      zoo train unet-resnet18-gan --epochs 2 --image-size 128
      zoo train pix2pix-unet-gan --data ~/photos --max-time 15m --set num_downs=7 --image-size 128
      zoo train --resume runs/unet-resnet18-gan-20261124-101500
    """
    from zoo import train as training

    budget = training.parse_duration(max_time) if max_time else None
    try:
        if resume_dir is not None:
            overrides = {"max_time": budget, "progress": not no_progress}
            summary = training.resume(resume_dir, echo=click.echo, **{k: v for k, v in overrides.items() if v is not None})
        else:
            if name is None:
                _fail("give a model NAME (see `zoo list`) or --resume RUN_DIR")
            opts = training.TrainOptions(
                **{k: v for k, v in options.items() if v is not None}, max_time=budget, compile=compile_,
                progress=not no_progress, generator=dict(_setting(s) for s in settings),
            )
            summary = training.train(name, opts, echo=click.echo)
    except (KeyError, ValueError, OSError) as exc:
        _fail(str(exc))
    for stage in summary["stages"]:
        val = "n/a" if stage["val_l1"] is None else f"{stage['val_l1']:.4f}"
        click.echo(f"{stage['stage']}: {stage['steps']} steps, val L1 {val} ({stage['stopped']})")
    click.echo(f"generator: {summary['generator']}")


for command in (bench, score, colorize, export, report):
    main.add_command(command)

if __name__ == "__main__":
    sys.exit(main())
