"""``zoo app``: the browser page (Gradio, an optional extra) for colorizing and correcting photos with hints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from zoo.cli.errors import Command, fail


@click.command(cls=Command)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 serves other machines too; there is no login).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: the first free one from 7860].")
@click.option("--model", "models", multiple=True,
              help="Offer this model too (repeatable): a registry name or hf:OWNER/REPO[@REVISION]; the shipped ones"
                   " are always offered.")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="Offer the model of these trained weights (repeatable): RUN/generator.safetensors or a Hub folder.")
@click.option("--max-megapixels", default=50.0, show_default=True, type=click.FloatRange(0.1, 500),
              help="Largest photo the page takes.")
def app(host: str, port: int | None, models: tuple[str, ...], checkpoints: tuple[Path, ...],
        max_megapixels: float) -> None:
    """Serve a page to colorize photos and correct them with colour hints, in a browser.

    Drop photos, choose a model, click the photo to place a hint (the colour picker opens on the colour the
    model puts there), move or remove hints, compare gray and colour on a slider and download the result at
    full resolution. Scripts use the same through the API endpoint /colorize (gradio_client). Ctrl-C or SIGTERM
    stops it and deletes the photos sent to it and the results it wrote. Needs the app extra: pip install
    'colorization-zoo[app]'.

    \b
    Example:
      zoo app
      zoo app --port 8000 --checkpoint runs/unet-effnet-lite0-color-20261206-101500/generator.safetensors
    """
    if importlib.util.find_spec("gradio") is None:
        fail("zoo app needs Gradio: pip install 'colorization-zoo[app]'")
    from zoo.app import ModelChoices, serve
    from zoo.hub import is_hub_name
    from zoo.spec import get_spec

    for name in models:
        if not is_hub_name(name):
            get_spec(name)  # an unknown name fails here, with suggestions
    serve(ModelChoices.gather(models, checkpoints), host, port, max_megapixels, echo=click.echo)
