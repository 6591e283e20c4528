"""``zoo push``: upload a Hub folder (``zoo export NAME --format hub``) to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.errors import Command


@click.command(cls=Command)
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--repo", required=True, help="The model repository, OWNER/REPO (made if it does not exist).")
@click.option("--private", is_flag=True, help="Make the repository private when it is made.")
def push(folder: Path, repo: str, private: bool) -> None:
    """Upload FOLDER (model.safetensors, config.json, README.md from `zoo export NAME --format hub`) to the
    Hugging Face Hub, with the token of `hf auth login` or HF_TOKEN. The folder is checked to load first.

    \b
    Example:
      zoo export unet-effnet-lite0-ciede --format hub --out hub/
      zoo push hub/ --repo me/colorization-zoo-lite0
      zoo colorize photo.jpg --model hf:me/colorization-zoo-lite0 --out colour/
    """
    from zoo.hub import push as upload

    click.echo(f"uploaded {folder} to {upload(folder, repo, private)}")
