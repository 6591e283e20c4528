"""``zoo colorize`` and ``zoo export``: use a trained model on photos, or take it elsewhere as ONNX."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.errors import Command, fail
from zoo.cli.options import COUNT, SETTING, device_option, image_size_type


@click.command(cls=Command)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--model", help="Model name (see `zoo list`) or hf:OWNER/REPO[@REVISION] (the Hugging Face Hub); a"
                             " checkpoint of another architecture is refused [default: the pretrained default model].")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Trained weights: RUN/generator.safetensors from `zoo train`, or a Hub folder [default: the weights"
                   " the model ships with].")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder (inside an input folder, it is left out of that input).")
@click.option("--overwrite", is_flag=True,
              help="Replace existing outputs (they are skipped otherwise); never the inputs themselves.")
@click.option("--batch-size", default=8, show_default=True, type=COUNT)
@click.option("--size", type=image_size_type(),
              help="Short side the model sees [default: the model's working size, its training image size"
                   " unless its recipe names another].")
@device_option()
@click.option("--hint", "hint_list", multiple=True, metavar="X,Y,#RRGGBB",
              help="A colour hint for the one photo given: pixel X, Y of the upright photo is this colour (its a*b*;"
                   " the photo keeps its lightness); ,SIZE after the colour covers a SIZE x SIZE square; a last ,here keeps"
                   " it close (a small thing), ,alike makes it true of everything the model coloured like that spot,"
                   " wherever it is. Repeatable.")
@click.option("--hints", "hint_path", type=click.Path(path_type=Path, exists=True),
              help="A JSON hint file for the one photo given ([{\"x\": 120, \"y\": 80, \"color\": \"#c0392b\"}]), or a"
                   " folder of them for a folder input: STEM.json per photo, in the input's layout.")
@click.option("--temporal", type=click.Choice(["flow", "none"]), default="flow", show_default=True,
              help="Videos: flow carries each frame's colour to the next along the optical flow of the lightness"
                   " (steady colour, reset at scene cuts); none colorizes every frame alone.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def colorize(inputs: tuple[str, ...], model: str | None, checkpoint: Path | None, out: Path, overwrite: bool,
             batch_size: int, size: int | None, device: str, hint_list: tuple[str, ...], hint_path: Path | None,
             temporal: str, no_progress: bool) -> None:
    """Colorize photos and videos: files, folders (recursive, layout kept), globs; JPEG, PNG, WebP, TIFF; MP4,
    MOV, MKV, WebM, AVI and the other containers FFmpeg reads (PyAV: the video extra).

    Outputs keep the input's name, size and format (a 16-bit gray PNG gives a 16-bit RGB PNG; alpha is kept)
    and come out upright, without an EXIF orientation tag. A file that cannot be read is reported in one line
    and skipped; the exit status is then 1. An output that would replace an input is never written, and an
    --out folder inside an input folder is not colorized again.

    Without --checkpoint, the pretrained default model colorizes (`zoo list` marks it), or --model's own
    shipped weights. Hints (--hint, --hints) say what colour a pixel is: each one's difference from the
    model's colour spreads over the photo along its lightness, stopping at edges; every hint is checked
    before anything is written.

    A video comes out with the same name, frames, size, timestamps and audio (copied), the film's own
    lightness and, with --temporal flow, colour that holds steady from frame to frame. A video's hint file
    gives each hint's "frame"; the hint's colour travels with the flow through its shot.

    \b
    Example:
      zoo colorize photo.jpg --out colour/
      zoo colorize photo.jpg --hint 120,80,#c0392b --hint 400,30,#4a90d9,9 --out colour/
      zoo colorize old-photos/ --hints old-photos-hints/ --out colour/
      zoo colorize old-photos/ --model unet-resnet18 --checkpoint runs/unet-resnet18-*/generator.safetensors --out colour/
      zoo colorize 'scans/**/*.tif' scan.png --checkpoint generator.safetensors --out colour/ --overwrite
      zoo colorize film.mp4 --hints film-hints.json --out colour/
    """
    from zoo import outputs
    from zoo.colorizer import Colorizer
    from zoo.hints import parse_hint
    from zoo.images import IMAGE_EXTENSIONS

    if hint_list and hint_path is not None:
        fail("give hints with --hint or with --hints, not both")
    hints = [parse_hint(text) for text in hint_list] if hint_list else hint_path
    outputs.output_folder(out)  # before the model loads
    colorizer = Colorizer.from_checkpoint(checkpoint, model, device, size)
    click.echo(f"{colorizer.spec.name} on {colorizer.device}: working size {colorizer.size} px "
               f"(multiples of {colorizer.multiple})")
    summary = colorizer.colorize_files(
        inputs, out, overwrite=overwrite, batch_size=batch_size, progress=not no_progress,
        echo=lambda line: click.echo(line, err=True), hints=hints, temporal=temporal,
    )
    if summary.unread:
        shown = ", ".join(p.name for p in summary.unread[:5]) + (" ..." if len(summary.unread) > 5 else "")
        click.echo(f"skipped {len(summary.unread)} file(s) of image types the zoo does not read (it reads"
                   f" {', '.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))}; convert them first): {shown}")
    if summary.existing:
        shown = ", ".join(p.name for p in summary.existing[:5]) + (" ..." if len(summary.existing) > 5 else "")
        click.echo(f"skipped {len(summary.existing)} existing output(s) (--overwrite replaces them): {shown}")
    films = f" and {summary.videos} video(s) ({summary.frames} frames)" if summary.videos else ""
    rate = (f"{summary.frames / summary.seconds:.1f} frames/s" if summary.videos and summary.seconds
            else f"{summary.images_per_second:.2f} images/s")
    click.echo(
        f"colorized {summary.images} image(s), {summary.pixels / 1e6:.1f} MP{films}, in {summary.seconds:.1f} s "
        f"({rate}) into {out}"
        + (f"; {len(summary.failed)} failed" if summary.failed else "")
    )
    if summary.failed:
        raise SystemExit(1)


@click.command(cls=Command)
@click.argument("name")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="Trained weights: RUN/generator.safetensors from `zoo train`, or a Hub folder [default: the"
                   " model's shipped weights].")
@click.option("--format", "format_", type=click.Choice(["onnx", "safetensors", "hub"]), default="onnx",
              show_default=True,
              help="onnx: a graph for onnxruntime; safetensors: the zoo's shipped form (float16, a frozen pretrained"
                   " encoder left to its source); hub: a Hugging Face Hub folder (model.safetensors, config.json and a"
                   " README.md card with the held-out scores) for `zoo push`.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output file, or folder for --format hub [default: beside the checkpoint, CHECKPOINT.onnx,"
                   " NAME.safetensors or NAME-hub/; here for shipped weights].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file (never the checkpoint).")
@click.option("--opset", type=click.IntRange(min=13), help="ONNX opset [default: 17].")
@click.option("--set", "settings", multiple=True, type=SETTING,
              help="Export with another inference setting (repeatable; as `zoo score --set`): chroma_scale, ...;"
                   " ONNX bakes it into the graph, safetensors writes it into the header (where the registry names"
                   " the model, its settings win when loading); a Hub folder cannot carry it.")
def export(name: str, checkpoint: Path | None, format_: str, out: Path | None, overwrite: bool,
           opset: int | None, settings: tuple[tuple[str, object], ...]) -> None:
    """Export model NAME's trained generator to ONNX (checked against torch with onnxruntime), or pack it as
    the zoo ships weights.

    The ONNX graph takes normalised L (L/50 - 1) of shape (B, 1, H, W) and returns normalised ab (ab/110), with
    batch, height and width dynamic (H, W multiples of the model's size multiple, stated in the metadata).

    The safetensors form is what a registry entry's ``weights`` points at: float16 tensors and the checkpoint's
    header, less the tensors that building the model with its named pretrained weights gives again (a frozen
    ImageNet encoder); loading rebuilds those and checks their SHA-256.

    \b
    Example:
      zoo export unet-effnet-lite0-ciede            # the shipped pretrained weights, to unet-effnet-lite0-ciede.onnx
      zoo export unet-resnet18 --checkpoint runs/unet-resnet18-20261124-101500/generator.safetensors
      zoo export simple-cnn --checkpoint generator.safetensors --out simple-cnn.onnx --opset 18
      zoo export unet-effnet-lite0-ciede --checkpoint runs/default/generator.safetensors --format safetensors
      zoo export unet-effnet-lite0-ciede --format hub --out hub/   # then: zoo push hub/ --repo me/colour
    """
    from zoo import checkpoint as checkpoints
    from zoo import outputs
    from zoo.colorizer import trained_weights
    from zoo.export import DEFAULT_OPSET, export_onnx
    from zoo.factory import run_otherwise
    from zoo.hub import export_folder, is_hub_name, score_for_card

    path, _ = trained_weights(name, checkpoint)
    model = None if is_hub_name(name) else name
    stem = name.removeprefix("hf:").replace("/", "--")
    default = {"onnx": f"{stem}.onnx", "safetensors": f"{stem}.safetensors", "hub": f"{stem}-hub"}[format_]
    if out is not None:
        target = out
    elif checkpoint is None:
        target = Path(default)  # shipped weights: here
    else:  # beside the checkpoint; an ONNX graph under the checkpoint's own stem
        target = checkpoint.with_suffix(".onnx") if format_ == "onnx" else checkpoint.with_name(default)
    if format_ == "hub":
        if settings:  # the registry is the one source of a named model's inference settings (registry_settings)
            fail("--set does not travel in a Hub folder: the zoo runs a model it names with the registry's"
                 " inference settings (change them there, or bake them into --format onnx)")
        outputs.new_folder(target, inputs=[path])
        scores = score_for_card(model, path)
        folder = export_folder(path, target, scores, model=model)
        ours, gray = scores[0], next(row for row in scores if row["model"] == "gray")
        click.echo(f"wrote {folder}/: model.safetensors, config.json, README.md (held-out scores:"
                   f" CIEDE2000 {ours['ciede2000']:.2f}, gray {gray['ciede2000']:.2f}); `zoo push {folder}"
                   " --repo OWNER/REPO` uploads it")
        return
    outputs.output_file(target, inputs=[path], overwrite=overwrite)
    if format_ == "safetensors":
        packed = checkpoints.pack(path, target, dict(settings))
        click.echo(f"wrote {packed.path} ({packed.path.stat().st_size / 1e6:.1f} MB, float16): {packed.stored}"
                   f" tensors ({packed.stored_values / 1e6:.2f}M values) stored, {packed.rebuilt}"
                   f" ({packed.rebuilt_values / 1e6:.2f}M) left to the pretrained weights")
        return
    spec, predictor = checkpoints.load_generator(path, model=model)
    spec, predictor = run_otherwise(spec, predictor, dict(settings))
    try:
        report = export_onnx(spec, predictor, target, opset or DEFAULT_OPSET)
    except ValueError as exc:  # an opset that torch's exporter does not know
        fail(str(exc))
    shapes = ", ".join("x".join(map(str, shape)) for shape in report.shapes)
    click.echo(f"wrote {report.path} ({report.path.stat().st_size / 1e6:.1f} MB, opset {report.opset})")
    click.echo(f"onnxruntime vs torch on inputs {shapes}: max abs diff {report.max_abs_diff:.2e}")
