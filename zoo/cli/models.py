"""``zoo list`` and ``zoo info``: the registry's models, architectures and objectives."""

from __future__ import annotations

import json

import click

from zoo.cli.errors import Command
from zoo.cli.options import format_option, image_size_type
from zoo.tables import Styled, Table, print_table


@click.command(name="list", cls=Command)
@click.argument("pattern", required=False)
@click.option("--arch", "show_arch", is_flag=True, help="List architectures (generators, discriminators) instead.")
@click.option("--objectives", "show_objectives", is_flag=True, help="List objectives (loss terms) instead.")
@format_option()
def list_command(pattern: str | None, show_arch: bool, show_objectives: bool, table_format: str) -> None:
    """List the models of the registry, optionally matching an fnmatch PATTERN.

    \b
    Example:
      zoo list            # every model, with parameter counts
      zoo list '*gan'     # the GAN recipes
      zoo list --arch     # architectures, built-in and from plugins
      zoo list --objectives --format csv
    """
    from zoo.registry import registry

    if show_arch or show_objectives:
        kinds = ("objective",) if show_objectives else ("generator", "discriminator")
        table = Table(["kind", "name", "source"])
        for kind in kinds:
            components = registry(kind)
            for name in components.names(pattern):
                table.add_row(kind, name, components.source(name))
        print_table(table, table_format)
        return
    print_table(_models_table(pattern), table_format)


def _models_table(pattern: str | None) -> Table:
    import zoo
    from zoo.harness.cost import count_parameters
    from zoo.harness.schema import field
    from zoo.spec import default_model, weights_path

    table = Table(["model", "generator", "discriminator", "G params", "D params", "stages", "weights", "description"])
    default = default_model()
    for name in zoo.list_models(pattern):
        spec = zoo.get_spec(name)
        try:
            generator, discriminator = zoo.create_models(spec)
            g_params = count_parameters(generator)
            d_params = None if discriminator is None else count_parameters(discriminator)
        except Exception as exc:  # one broken model is a row with its error, not a failed listing
            g_params = d_params = None
            description = Styled(f"cannot build: {type(exc).__name__}: {' '.join(str(exc).split())}", "red")
        else:
            description = spec.description
        stages = " > ".join(f"{s.name}({'+'.join(s.loss)})" for s in spec.stages)
        shipped = weights_path(name) is not None
        weights = ("pretrained, default" if name == default else "pretrained") if shipped else "-"
        table.add_row(name, spec.generator.arch, spec.discriminator.arch if spec.discriminator else "-",
                      field("params").format(g_params), field("d_params").format(d_params), stages, weights,
                      description)
    return table


@click.command(cls=Command)
@click.argument("name")
@click.option("--image-size", default=256, show_default=True, type=image_size_type(),
              help="Square image side for the FLOP count.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(name: str, image_size: int, as_json: bool) -> None:
    """Show model NAME: its resolved spec, parameter counts and FLOPs per image.

    \b
    Example:
      zoo info unet-resnet18-gan
      zoo info pix2pix-unet-gan --json
    """
    import zoo
    from zoo.factory import input_channels
    from zoo.harness.cost import count_flops, count_parameters
    from zoo.spec import building

    spec = zoo.get_spec(name)
    with building(spec):
        generator, discriminator = zoo.create_models(spec)
    facts = {
        "name": spec.name,
        "spec": spec.to_dict(),
        "generator_params": count_parameters(generator),
        "generator_gflops": count_flops(generator, (1, input_channels(spec.generator.arch), image_size, image_size)) / 1e9,
        "image_size": image_size,
    }
    if discriminator is not None:
        facts["discriminator_params"] = count_parameters(discriminator)
        facts["discriminator_gflops"] = count_flops(discriminator, (1, 3, image_size, image_size)) / 1e9
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    from rich.markup import escape

    from zoo.tables import console as make_console

    console = make_console()
    console.print(f"[bold]{escape(spec.name)}[/bold]: {escape(spec.description)}")
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
