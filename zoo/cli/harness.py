"""``zoo bench``, ``zoo score``, ``zoo leaderboard`` and ``zoo report``: measure speed and quality, and show
the results (tables as :mod:`zoo.tables` prints them, ``--format table|csv|json``)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zoo.cli.errors import Command, fail
from zoo.cli.options import (
    COUNT,
    DURATION,
    HINT_COUNTS,
    NON_NEGATIVE,
    SETTING,
    device_option,
    format_option,
    image_size_type,
)
from zoo.tables import Table, console, print_table

if TYPE_CHECKING:
    import torch

    from zoo.harness.scoring import Scores
    from zoo.spec import ModelSpec


RESULTS_DIR = click.Path(path_type=Path)


def _say(message: str) -> None:
    """A line of progress, on stderr (so that a --format csv/json/markdown table is alone on stdout)."""
    click.echo(message, err=True)


class _Printer:
    """Where a command's tables and other lines go: all to stdout when the table is drawn; with --format csv or
    json, the main table alone to stdout and everything else to stderr."""

    def __init__(self, table_format: str) -> None:
        self.format = table_format
        self.lines = console(None if table_format == "table" else sys.stderr)

    def table(self, table: Table, main: bool = True) -> None:
        if main or self.format == "table":
            print_table(table, self.format)
        else:
            print_table(table, "table", sys.stderr)

    def line(self, text: str) -> None:
        self.lines.print(text)


def _finish(doc: dict[str, Any], scores: Scores | None, results_dir: Path, printer: _Printer) -> Path:
    """Write the grids and the results files, print the table; returns the JSON path."""
    from zoo.harness import results

    if scores is not None:
        doc |= results.write_sample_grids(scores.shown, results_dir, results.run_stem(doc))
    path = results.write_results(doc, results_dir)
    printer.table(results.results_table(doc))
    printer.line(results.settings_line(doc))
    printer.line(f"results: {path} (and {path.with_suffix('.csv').name})")
    return path


def _model_specs(models: tuple[str, ...], all_models: bool) -> list[ModelSpec]:
    """The specs of registry models and of Hub models (``hf:OWNER/REPO``: their folder's config.json)."""
    from zoo.factory import list_models
    from zoo.hub import is_hub_name, model_spec
    from zoo.spec import get_spec

    if not models and not all_models:
        fail("name the models to benchmark (see `zoo list`) or pass --all")
    return [model_spec(name) if is_hub_name(name) else get_spec(name) for name in (list_models() if all_models else models)]


def _add_note(row: dict[str, Any], text: str) -> None:
    row["note"] = "; ".join(filter(None, [row.get("note"), text]))


def _score_checkpoints(
    rows: list[dict[str, Any]], folder: Path, data: str, image_size: int, device: torch.device
) -> Scores | None:
    """Score the benchmarked models that have a checkpoint in ``folder``; quality fields go into their rows and
    the reference rows are appended. None when no checkpoint matches."""
    from zoo.checkpoint import CheckpointError
    from zoo.harness.results import merge_scores
    from zoo.harness.scoring import SCORED_FIELDS, find_checkpoints, load_model, score_models

    found, notes = find_checkpoints(folder)
    for note in notes:
        _say(note)
    by_name = {row["model"]: row for row in rows}
    generators = {}
    for name, path in found.items():
        row = by_name.get(name)
        if row is None:
            _say(f"{path}: a {name} checkpoint, but {name} is not benchmarked here")
            continue
        try:
            generators[name] = load_model(name, path, device)
        except (CheckpointError, OSError, ValueError, RuntimeError) as exc:
            _add_note(row, f"not scored: {exc}")
            continue
        row["checkpoint"] = str(path)
    if not generators:
        _say(f"no checkpoint in {folder} fits the benchmarked models: no quality scores")
        return None
    _say(f"scoring {', '.join(generators)} on {data} at {image_size} px ...")
    scores = score_models(generators, data=data, image_size=image_size, device=device, echo=_say)
    rows += merge_scores(rows, scores.rows, keys=SCORED_FIELDS, errors_as_notes=True)
    return scores


def _write_cards(doc: Mapping[str, Any], results_dir: Path) -> list[Path]:
    """A Markdown card per benchmarked model under ``cards/``."""
    from zoo.files import write_text
    from zoo.harness.cards import model_card
    from zoo.harness.scoring import REFERENCES
    from zoo.spec import get_spec

    references = [row for row in doc["rows"] if row["model"] in REFERENCES]
    folder = results_dir / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for row in doc["rows"]:
        if row["model"] in REFERENCES:
            continue
        sample = doc["samples"].get(row["model"])
        relative = None if sample is None else os.path.relpath(results_dir / sample, folder)
        card = model_card(get_spec(row["model"]), row, doc, references, relative)
        paths.append(write_text(folder / f"{row['model']}.md", card))
    return paths


@click.command(cls=Command)
@click.argument("models", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Every model of the registry (`zoo list`).")
@click.option("--checkpoints", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Folder of run folders or MODEL.safetensors files: also score those models (matched by each"
                   " checkpoint's own header), with sample grids and a quality-vs-speed plot.")
@click.option("--data", default="sample", show_default=True, help="Photos the checkpoints are scored on.")
@device_option()
@click.option("--amp", type=click.Choice(["no", "bf16", "fp16"]), default="no", show_default=True, help="Autocast dtype.")
@click.option("--channels-last", is_flag=True, help="NHWC memory format for models and inputs.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile G and D (warm-up compiles).")
@click.option("--batch-size", default=8, show_default=True, type=COUNT)
@click.option("--image-size", default=256, show_default=True, type=image_size_type(32))
@click.option("--iters", default=10, show_default=True, type=COUNT, help="Timed iterations per phase.")
@click.option("--warmup", default=3, show_default=True, type=NON_NEGATIVE, help="Untimed iterations first.")
@click.option("--self-check", is_flag=True, help="Also time inference with torch.utils.benchmark.Timer (ratio column).")
@click.option("--results", "results_dir", default="results", show_default=True, type=RESULTS_DIR,
              help="Folder for the JSON/CSV results, plot, sample grids and model cards.")
@click.option("--compare", "compare_with", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="An earlier bench results JSON: print the new/old ratios.")
@format_option("the results table")
def bench(models: tuple[str, ...], all_models: bool, checkpoints: Path | None, data: str, results_dir: Path,
          compare_with: Path | None, compile_: bool, table_format: str, **options: Any) -> None:
    """Measure throughput, latency, memory and FLOPs of MODELS (or --all), and their quality with --checkpoints.

    Per model: inference img/s and latency (median, p90 per batch), training-step img/s (G, and G+D for GAN
    models), parameters, GFLOPs per image, peak memory, achieved GFLOP/s and its share of the matmul peak
    measured in the same run. Out of memory halves the batch and retries; a model that fails is a row with its
    error. Results go to RESULTS/bench-DATE-TIME.json/.csv, model cards to RESULTS/cards/.

    \b
    Example:
      zoo bench --all --device cpu --image-size 128 --iters 3
      zoo bench unet-resnet18 --device cuda --amp bf16 --channels-last --batch-size 32
      zoo bench --all --checkpoints runs/ --compare results/bench-20261124-101500.json
    """
    import torch

    from zoo import outputs
    from zoo.harness import plots
    from zoo.harness import results
    from zoo.harness.timing import BenchSettings, bench_models

    specs = _model_specs(models, all_models)
    outputs.output_folder(results_dir)  # before anything is measured
    old = results.read_results(compare_with) if compare_with else None
    settings = BenchSettings(compile=compile_, **options)
    rows, used = bench_models(specs, settings, echo=_say)
    device = torch.device(used["device"])
    scores = _score_checkpoints(rows, checkpoints, data, settings.image_size, device) if checkpoints else None
    protocol = scores.protocol if scores else None
    doc = results.document("bench", results.machine_info(device), used, rows, protocol=protocol)
    printer = _Printer(table_format)
    path = _finish(doc, scores, results_dir, printer)
    plot = plots.quality_speed_plot(rows, results_dir / "plots" / f"{path.stem}-quality-vs-speed.png")
    printer.line(f"quality-vs-speed plot: {plot}" if plot else "no quality scores (no --checkpoints): no plot")
    cards = _write_cards(doc, results_dir)
    printer.line(f"model cards: {results_dir / 'cards'} ({len(cards)})")
    if old is not None:
        ratios, differ = results.compare(old, doc)
        printer.line(f"compared with {compare_with}:")
        printer.table(results.compare_table(ratios), main=False)
        if differ:
            printer.line("[yellow]settings differ, so the ratios mix causes:[/yellow] " + "; ".join(differ))


@click.command(cls=Command)
@click.argument("model", required=False)
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True),
              help="The generator.safetensors of `zoo train` (or its run folder) [default: the model's shipped"
                   " weights].")
@click.option("--predictions", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A folder of another colorizer's outputs, scored against the --data photos: a photo's"
                   " prediction has its relative path and stem (photos/city/bus.jpg: DIR/city/bus.png).")
@click.option("--name", help="The row of --predictions [default: the folder's name].")
@click.option("--data", default="heldout", show_default=True,
              help="heldout (the 50 sample photos no shipped model trains on), sample, a folder, a glob, a list"
                   " file or a dataset name (debian-external: 41 photos from packages the sample lacks).")
@click.option("--protocol", "protocol_name", default="zoo", show_default=True,
              help="zoo: short side to --image-size, centre crop (zoo train's validation); crop256: short side"
                   " 256, centre 256 crop (CT2 on ImageNet val5k); resize256: resized to 256x256, no crop (DDColor,"
                   " ColorFormer).")
@click.option("--image-size", type=image_size_type(), help="Side S of --protocol zoo [default: 256].")
@click.option("--batch-size", default=16, show_default=True, type=COUNT)
@device_option()
@click.option("--workers", type=NON_NEGATIVE, help="DataLoader workers [default: min(4, CPUs)].")
@click.option("--fid", is_flag=True,
              help="Also FID-EffL0 (offline: the shipped ImageNet EfficientNet-Lite0; not comparable with Inception"
                   " FID), and Inception FID where torch-fidelity and its weights are on this machine.")
@click.option("--fid-weights", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="torch-fidelity's InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth): Inception FID"
                   " as papers report it (implies --fid; needs the torch-fidelity package).")
@click.option("--lpips", is_flag=True, help="Also LPIPS (needs torchvision's AlexNet weights offline).")
@click.option("--set", "inference", multiple=True, type=SETTING,
              help="Run MODEL's weights with another inference setting (repeatable): inference_size, flip_average,"
                   " chroma_scale, chroma_knee, or a decoding setting of its objective (classification's"
                   " temperature).")
@click.option("--hints", "hint_counts", type=HINT_COUNTS, default="",
              help="Also score with that many simulated colour hints per photo, e.g. 0,1,2,5,10,20: the hint curve"
                   " (hints at seeded places, each the truth's mean colour over --hint-patch pixels, spread over the"
                   " model's colours; gray's curve beside it).")
@click.option("--hint-patch", default=6, show_default=True, type=click.IntRange(1, 64),
              help="Side of the square whose mean true colour a simulated hint gives.")
@click.option("--hint-placement", type=click.Choice(["centred", "worst"]), default="centred", show_default=True,
              help="Where simulated hints go: centred (seeded, around the photo's centre, as Zhang et al. evaluate)"
                   " or worst (one by one where the colours are still most wrong, as a person corrects a photo).")
@click.option("--results", "results_dir", default="results", show_default=True, type=RESULTS_DIR,
              help="Folder for the JSON/CSV results and the sample grids.")
@format_option("the results table")
def score(model: str | None, checkpoint: Path | None, predictions: Path | None, name: str | None, data: str,
          protocol_name: str, image_size: int | None, batch_size: int, device: str, workers: int | None, fid: bool,
          fid_weights: Path | None, lpips: bool, inference: tuple[tuple[str, object], ...],
          hint_counts: tuple[int, ...], hint_patch: int, hint_placement: str, results_dir: Path,
          table_format: str) -> None:
    """Score MODEL's colours, or another colorizer's output files, against real photos: PSNR, SSIM, CF, dCF,
    CIEDE2000 (and FID-EffL0, FID, LPIPS).

    Protocols: zoo (short side resized to S, centre S x S crop), crop256, resize256. A model gets the L of the
    truth and runs at its working size; prediction files are prepared as the truths and scored as written.
    Compared in RGB. Every table has the reference rows gray (ab = 0) and truth (the truth against itself).
    MODEL `gray` or `truth` scores only the references and needs no checkpoint.

    \b
    Example:
      zoo score unet-effnet-lite0-ciede          # the pretrained default on the held-out photos
      zoo score unet-effnet-lite0-ciede --set chroma_scale=1 --set flip_average=false   # a variant of it
      zoo score gray --data sample --protocol resize256 --fid
      zoo score unet-resnet18 --checkpoint runs/unet-resnet18-20261124-101500 --data ~/photos
      zoo score unet-effnet-lite0-ciede --hints 0,1,2,5,10,20  # the hint curve, gray's beside it
      zoo score unet-effnet-lite0-ciede --hints 0,1,2,5 --hint-placement worst  # hints where colours are wrong
      zoo score hf:OWNER/REPO                                   # a model from the Hugging Face Hub
      zoo score --predictions ddcolor-out/ --name ddcolor --data ~/val5k --protocol crop256
    """
    from zoo import outputs
    from zoo.harness import results
    from zoo.harness.protocols import get_protocol
    from zoo.harness.scoring import REFERENCES, MissingWeightsError, load_model, resolve_backbones, score_models
    from zoo.hub import fetch, is_hub_name
    from zoo.runtime import pick_device
    from zoo.spec import get_spec, weights_path

    if model is None and predictions is None:
        fail("name a MODEL to score (gray for the references alone), or pass --predictions DIR")
    if name is not None and predictions is None:
        fail("--name names the row of --predictions DIR")
    if model is None or model in REFERENCES:
        if checkpoint is not None or inference:
            option = "--checkpoint" if checkpoint is not None else "--set"
            fail(f"{model} is a reference row and takes no {option}" if model else f"{option} needs its MODEL")
    elif is_hub_name(model):
        checkpoint = checkpoint or fetch(model)
    else:
        get_spec(model).with_inference(dict(inference))  # an unknown key fails before anything slow
        checkpoint = checkpoint or weights_path(model)
        if checkpoint is None:
            fail(f"no checkpoint to score for {model!r}: train it first (`zoo train {model}`) and pass"
                  f" --checkpoint RUN/generator.safetensors (the references need none: `zoo score gray`)")
    try:
        protocol = get_protocol(protocol_name)
    except ValueError as exc:
        fail(str(exc))
    if image_size is not None and protocol.size not in (None, image_size):
        fail(f"--image-size sets the side of --protocol zoo; {protocol.name} is {protocol.size} px")
    side = protocol.side(image_size or 256)
    folders = {} if predictions is None else {name or predictions.resolve().name: predictions}
    torch_device = pick_device(device)
    outputs.output_folder(results_dir)
    try:
        resolve_backbones(fid, lpips, fid_weights)  # before anything slow
        row = model if not inference else f"{model} ({', '.join(f'{k}={v}' for k, v in inference)})"
        generators = {} if checkpoint is None else {row: load_model(model, checkpoint, torch_device, dict(inference))}
        scores = score_models(generators, data=data, image_size=side, device=torch_device, batch_size=batch_size,
                              workers=workers, fid=fid, lpips=lpips, echo=_say, protocol=protocol.name,
                              fid_weights=fid_weights, predictions=folders, hints=hint_counts, hint_patch=hint_patch,
                              hint_placement=hint_placement)
    except (MissingWeightsError, ValueError) as exc:  # the harness's own: weights not here, predictions unfit
        fail(str(exc))
    for row in scores.rows:
        row["checkpoint"] = str(checkpoint) if row["model"] in generators else None
        row["predictions"] = str(folders[row["model"]]) if row["model"] in folders else None
    settings = {"data": data, "protocol": protocol.name, "image_size": side, "batch_size": batch_size,
                "device": str(torch_device), "dtype": "float32", "fid": fid or fid_weights is not None,
                "fid_weights": None if fid_weights is None else str(fid_weights), "lpips": lpips,
                "predictions": None if predictions is None else str(predictions), "set": dict(inference),
                "hints": list(hint_counts), "hint_patch": hint_patch if hint_counts else None,
                "hint_placement": hint_placement if hint_counts else None}
    doc = results.document("score", results.machine_info(torch_device), settings, scores.rows, protocol=scores.protocol)
    printer = _Printer(table_format)
    path = _finish(doc, scores, results_dir, printer)
    if hint_counts:
        from zoo.harness import plots

        curve = plots.save_png(plots.hint_curve_plot(scores.rows), results_dir / "plots" / f"{path.stem}-hints.png")
        printer.line(f"hint curve: {curve}")


@click.command(cls=Command)
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path), default=Path("report.html"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file (never one of the RESULTS).")
@click.option("--title", default="colorization-zoo report", show_default=True)
@click.option("--max-samples", default=6, show_default=True, type=COUNT, help="Sample rows shown per model.")
def report(results: tuple[Path, ...], out: Path, overwrite: bool, title: str, max_samples: int) -> None:
    """Write one self-contained HTML page from `zoo bench` / `zoo score` RESULTS files.

    The page has the leaderboard (click a header to sort), a quality-vs-speed plot, per-model galleries
    (gray | model | truth with a before/after slider) and the protocol; images are inlined, nothing is fetched.

    \b
    Example:
      zoo report bench.json score.json --out report.html
    """
    from zoo.harness.report import write_report

    path = write_report(results, out, title, max_samples, overwrite=overwrite)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


@click.command(cls=Command)
@click.argument("models", nargs=-1)
@click.option("--budget", "budgets", multiple=True, default=("15m",), show_default=True, type=DURATION,
              help="Wall-clock training budget per model (90s, 15m, 1h); repeat for a quality-vs-budget curve.")
@click.option("--data", default="sample-train", show_default=True, help="Photos every model trains on.")
@click.option("--score-data", default="heldout", show_default=True, help="Photos every model is scored on.")
@click.option("--image-size", default=256, show_default=True, type=image_size_type(), help="Scoring crop side.")
@click.option("--seed", default=0, show_default=True, help="One seed, so one train/val split, for every model.")
@device_option()
@click.option("--out", type=click.Path(path_type=Path), default=Path("leaderboard"),
              show_default=True, help="Folder for the runs, results, sample grids and plot.")
@click.option("--hints", "hint_counts", type=HINT_COUNTS, default="",
              help="Also score every run's hint curve (as `zoo score --hints`), e.g. 0,1,5,10.")
@format_option("the results table")
def leaderboard(models: tuple[str, ...], budgets: tuple[float, ...], data: str, score_data: str, image_size: int,
                seed: int, device: str, out: Path, hint_counts: tuple[int, ...], table_format: str) -> None:
    """Train MODELS (default: every model of the registry) for the same wall-clock budget on the same photos
    and split, score each on the held-out photos beside gray, and write the table, a quality-vs-budget plot
    and sample grids. Runs already finished in OUT are reused.

    \b
    Example:
      zoo leaderboard --budget 15m                       # every model, 15 minutes each
      zoo leaderboard simple-cnn unet-effnet-lite0-color --budget 5m --budget 15m --out lb/
    """
    from zoo import outputs
    from zoo.factory import list_models
    from zoo.harness import results
    from zoo.leaderboard import run_leaderboard
    from zoo.spec import get_spec

    names = list(models) or list_models()
    for name in names:
        get_spec(name)
    outputs.output_folder(out)
    path = run_leaderboard(names, list(budgets), out, data, score_data, image_size, seed, device, echo=_say,
                           hints=hint_counts)
    printer = _Printer(table_format)
    printer.table(results.results_table(results.read_results(path)))
    printer.line(f"results: {path} (and {path.with_suffix('.csv').name}); plot and grids under {out}")
