"""The scoring protocol of ``zoo score`` (and of ``zoo bench --checkpoints``): colour quality against real photos.

Every image is resized (short side to S, bicubic) and centre-cropped to S x S, exactly as validation in
``zoo train`` (``ColorizationDataset(train=False)``). The model sees the L of the true image and predicts ab;
the prediction is Lab(L_true, ab_pred) converted to sRGB and clipped to [0, 1]; the truth is the crop itself.
All metrics compare in RGB. Two reference rows come with every table: ``gray`` (ab = 0: the input shown as is)
and ``truth`` (the truth scored against itself: PSNR infinite, SSIM 1, dCF and CIEDE2000 0).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio

from zoo import checkpoint
from zoo.color import lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.data import ColorizationDataset, EpochSampler, make_loader, resolve_source, scan_images
from zoo.downloads import cache_root, torch_hub_checkpoints
from zoo.harness.metrics import CIEDE2000, Colorfulness, ColorfulnessGap, StructuralSimilarity
from zoo.harness.schema import REFERENCE_ROWS

REFERENCES = REFERENCE_ROWS  # gray (ab = 0) and truth (the truth against itself)
GRAY, TRUTH = REFERENCES
METRICS = ("psnr", "ssim", "cf", "cf_truth", "dcf", "ciede2000", "fid", "lpips")
SCORED_FIELDS = ("images", *METRICS)  # what a score row adds to a bench row
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
FID_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FID_WEIGHTS}"


class MissingWeightsError(RuntimeError):
    """FID or LPIPS was asked for but its backbone weights (or package) are not on this machine."""


def protocol(data: str, image_size: int, images: int, fid: bool = False, lpips: bool = False) -> dict[str, Any]:
    """The scoring protocol as recorded with the results (FID and LPIPS only when they were computed)."""
    s = image_size
    recorded = {
        "data": data,
        "images": images,
        "image_size": s,
        "preprocess": f"short side resized to {s} px (bicubic), centre {s}x{s} crop (as zoo train's validation)",
        "input": "L of the true image (CIE Lab, D65), normalised to [-1, 1]",
        "prediction": "Lab(L_true, ab_model) to sRGB, clipped to [0, 1], float32",
        "truth": "the crop itself, sRGB / 255",
        "compare": "RGB in [0, 1]",
        "psnr": "torchmetrics PeakSignalNoiseRatio, data_range 1, per image over all RGB values, mean over images;"
                " identical images give inf (null in JSON)",
        "ssim": "Gaussian window sigma 1.5 (11x11), k1 0.01, k2 0.03, data_range 1, per channel, mean over the map"
                " without its 5 px border (torchmetrics' SSIM map; equals skimage structural_similarity with"
                " gaussian_weights, use_sample_covariance=False), mean over images",
        "cf": "colourfulness of Hasler & Suesstrunk 2003 on 0-255 RGB: sqrt(std_rg^2 + std_yb^2)"
              " + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = R - G, yb = (R + G) / 2 - B, population std, per image,"
              " mean over images (cf of the predictions, cf_truth of the truth)",
        "dcf": "mean over images of |CF(truth) - CF(prediction)| per image",
        "ciede2000": "CIEDE2000 (kL = kC = kH = 1) between Lab of prediction and truth, per-pixel mean per image,"
                     " mean over images",
        "references": "gray: ab = 0; truth: the truth scored against itself",
    }
    if fid:
        recorded["fid"] = ("torchmetrics FrechetInceptionDistance (2048 features, torch-fidelity InceptionV3),"
                           " truth vs predictions")
    if lpips:
        recorded["lpips"] = ("torchmetrics LearnedPerceptualImagePatchSimilarity, AlexNet, inputs in [0, 1],"
                             " mean over images")
    return recorded


# --------------------------------------------------------------------------------------------- FID, LPIPS


def _lpips_backbone() -> tuple[str, str]:
    """File name and URL of the AlexNet weights that torchmetrics' LPIPS loads through torchvision."""
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.DEFAULT.url
    return url.rsplit("/", 1)[-1], url


def check_backbones(fid: bool, lpips: bool) -> None:
    """Raise :class:`MissingWeightsError` saying what to install or copy where, unless FID/LPIPS can run offline.

    torchmetrics would download the weights on first use; this machine may have no internet, so they are
    looked for in the torch hub cache first and never fetched here.
    """
    hub = torch_hub_checkpoints()
    problems = []
    if fid:
        if importlib.util.find_spec("torch_fidelity") is None:
            problems.append("--fid needs the torch-fidelity package: pip install torch-fidelity")
        if not (hub / FID_WEIGHTS).is_file():
            problems.append(f"--fid needs torch-fidelity's InceptionV3 weights {FID_WEIGHTS} in {hub}:"
                            f" download {FID_URL} on a machine with internet and copy the file there")
    if lpips:
        name, url = _lpips_backbone()
        if not (hub / name).is_file():
            problems.append(f"--lpips needs torchvision's AlexNet weights {name} in {hub}: download {url} on a machine"
                            " with internet and copy the file there (LPIPS's own linear layers ship with torchmetrics)")
    if problems:
        problems.append("set TORCH_HOME to use another cache folder (weights go in $TORCH_HOME/hub/checkpoints)")
        raise MissingWeightsError("\n".join(problems))


# --------------------------------------------------------------------------------------------- metrics


def _metric_set(fid: bool, lpips: bool, device: torch.device) -> dict[str, Metric]:
    """Fresh metrics for one candidate (a model or a reference row)."""
    metrics: dict[str, Metric] = {
        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
        "ssim": StructuralSimilarity(),
        "cf": Colorfulness(),
        "dcf": ColorfulnessGap(),
        "ciede2000": CIEDE2000(),
    }
    if fid:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metrics["fid"] = FrechetInceptionDistance(feature=2048, normalize=True)
    if lpips:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metrics["lpips"] = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    return {name: metric.to(device) for name, metric in metrics.items()}


def _update(metrics: Mapping[str, Metric], pred: Tensor, truth: Tensor) -> None:
    for name, metric in metrics.items():
        if name == "cf":
            metric.update(pred)
        elif name == "fid":
            metric.update(truth, real=True)
            metric.update(pred, real=False)
        else:
            metric.update(pred, truth)


# --------------------------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    """What :func:`score_models` found: one row per candidate, the protocol, and first images for sample grids."""

    rows: list[dict[str, Any]]
    protocol: dict[str, Any]
    shown: dict[str, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)  # model: (L, ab_pred, ab_true)


@dataclass
class _Candidate:
    predict: Callable[[Tensor, Tensor], Tensor] | None  # (L, truth RGB) -> predicted RGB; None for truth itself
    metrics: dict[str, Metric]
    error: str | None = None


def load_images(data: str, image_size: int, echo: Callable[[str], None] = print) -> list[Path]:
    """The usable photos of ``data`` (``sample``, a folder, a glob ...), scanned with the zoo's cache."""
    cache = cache_root()
    report = scan_images(resolve_source(data, cache_dir=cache), image_size=image_size, cache_dir=cache, source=data)
    if report.skipped:
        echo(report.summary())
    return report.ok


def score_models(
    models: Mapping[str, nn.Module],
    data: str = "sample",
    image_size: int = 256,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    workers: int | None = None,
    fid: bool = False,
    lpips: bool = False,
    show: int = 4,
    echo: Callable[[str], None] = print,
) -> Scores:
    """Score ``models`` (name: predictor from L to ab, eval mode, on ``device``) and the references on the photos
    of ``data``.

    A model whose forward fails is a row with its error; the others go on. Rows: the models in order, then
    ``gray`` and ``truth``.
    """
    device = torch.device(device)
    check_backbones(fid, lpips)
    paths = load_images(data, image_size, echo)
    candidates = {
        name: _Candidate(_model_prediction(model), _metric_set(fid, lpips, device)) for name, model in models.items()
    }
    candidates[GRAY] = _Candidate(lambda L, truth: lab_normalized_to_rgb(L, torch.zeros_like(L).expand(-1, 2, -1, -1)),
                                  _metric_set(fid, lpips, device))
    candidates[TRUTH] = _Candidate(None, _metric_set(fid, lpips, device))
    cf_truth = Colorfulness().to(device)
    shown: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    dataset = ColorizationDataset(paths, image_size, train=False)
    loader = make_loader(dataset, batch_size, sampler=EpochSampler(len(dataset), 0, shuffle=False), workers=workers,
                         device_type=device.type)
    with torch.inference_mode():
        for rgb in loader:
            rgb = rgb.to(device)
            L, ab = rgb_uint8_to_lab_normalized(rgb)  # noqa: N806 (L is the channel's name)
            truth = rgb.float() / 255
            cf_truth.update(truth)
            for name, candidate in candidates.items():
                if candidate.error is not None:
                    continue
                try:
                    pred = truth if candidate.predict is None else candidate.predict(L, truth)
                except Exception as exc:  # noqa: BLE001 (a broken model is a row with its error)
                    candidate.error = f"{type(exc).__name__}: {exc}"
                    continue
                _update(candidate.metrics, pred, truth)
                if name in models and name not in shown:
                    shown[name] = (L[:show], models[name](L[:show]).float(), ab[:show])
    rows = [_row(name, candidate, len(paths), cf_truth) for name, candidate in candidates.items()]
    return Scores(rows, protocol(data, image_size, len(paths), fid, lpips), shown)


def _model_prediction(model: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    def predict(L: Tensor, truth: Tensor) -> Tensor:  # noqa: N803
        return lab_normalized_to_rgb(L, model(L).float())

    return predict


def _row(name: str, candidate: _Candidate, images: int, cf_truth: Colorfulness) -> dict[str, Any]:
    row: dict[str, Any] = {"model": name, "error": candidate.error, "images": images}
    row |= dict.fromkeys(METRICS)
    if candidate.error is None:
        row |= {key: float(metric.compute()) for key, metric in candidate.metrics.items()}
        row["cf_truth"] = float(cf_truth.compute())
    return row


# --------------------------------------------------------------------------------------------- checkpoints


def checkpoint_file(path: Path) -> Path:
    """``path`` itself, or the inference checkpoint ``generator.safetensors`` of a run folder."""
    return path / "generator.safetensors" if path.is_dir() else path


def find_checkpoints(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Checkpoints in ``folder`` (``*.safetensors`` and run folders' ``generator.safetensors``) by the model their
    own header names, the newest per model; and notes on the files passed over."""
    found: dict[str, Path] = {}
    notes = []
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("*/generator.safetensors")]):
        try:
            model = checkpoint.read_meta(path)["model"]
        except checkpoint.CheckpointError as exc:
            notes.append(f"skipped {exc}")
            continue
        if model in found:
            older, newer = sorted((found[model], path), key=lambda p: p.stat().st_mtime)
            notes.append(f"{model}: using {newer}, the newest; not {older}")
            path = newer
        found[model] = path
    return found, notes


def load_model(name: str, path: Path, device: str | torch.device) -> nn.Module:
    """The predictor (L to ab) of checkpoint ``path`` (a file or a run folder), refused unless it fits model
    ``name``."""
    _, generator = checkpoint.load_generator(checkpoint_file(path), model=name, device=device)
    return generator
