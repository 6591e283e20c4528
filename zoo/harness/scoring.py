"""The scoring protocol of ``zoo score`` (and of ``zoo bench --checkpoints``, ``zoo leaderboard``): colour quality
against real photos, of the zoo's checkpoints and of any colorizer's output files, beside two references.

One path through it::

    score_models({name: predictor L -> ab}, data=..., image_size=..., protocol="zoo" | "crop256" | "resize256",
                 predictions={name: folder of another tool's outputs}, hints=(0, 1, 5, ...))
      photos of ``data`` (scanned) -> paired with the prediction files (zoo.harness.predictions)
      -> prepared by the protocol (zoo.harness.protocols): truth RGB (B, 3, S, S)
      -> each candidate's prediction in sRGB [0, 1]: a model's Lab(L_true, ab_model); a prediction file as written;
         the references gray (ab = 0: the input shown as is) and truth (the truth itself)
      -> metrics (zoo.harness.metrics; FID-EffL0 by zoo.harness.fid), all compared in RGB
      -> Scores(rows, protocol block, first images for sample grids)

A model sees the L of the true image (normalised Lab) and runs as ``zoo colorize`` runs it; its prediction is
Lab(L_true, ab_pred) converted to sRGB and clipped to [0, 1]. The truth row scores the truth against itself
(PSNR infinite, SSIM 1, dCF, CIEDE2000 and FID 0).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import SequentialSampler
from torchmetrics import Metric
from torchmetrics.image import PeakSignalNoiseRatio

from zoo import checkpoint
from zoo.color import L_SCALE, lab_normalized_to_rgb, normalize_lab, rgb_to_lab, rgb_uint8_to_lab_normalized
from zoo.colorizer import AtWorkingSize, shipped_choices
from zoo.data import make_loader, resolve_source, scan_images
from zoo.downloads import cache_root, torch_hub_checkpoints
from zoo.factory import run_otherwise
from zoo.harness.fid import EfficientNetLite0Features, FrechetDistance, frechet_distance
from zoo.harness.metrics import (
    CIEDE2000,
    Colorfulness,
    ColorfulnessGap,
    PerImageColorfulnessGap,
    StructuralSimilarity,
)
from zoo.harness.predictions import check_sizes, match_predictions
from zoo.harness.protocols import Protocol, ProtocolImages, get_protocol
from zoo.guided import choose, spread_hints
from zoo.harness.schema import FIELDS, REFERENCE_ROWS
from zoo.hints import Hint, photo_seed, simulated_hints, worst_hint
from zoo.hub import is_hub_name
from zoo.propagate import Propagation, PropagationSettings
from zoo.spec import size_multiple

REFERENCES = REFERENCE_ROWS  # gray (ab = 0) and truth (the truth against itself)
GRAY, TRUTH = REFERENCES
METRICS = tuple(f.key for f in FIELDS if f.group == "quality" and f.key != "images")  # what a score row holds
SCORED_FIELDS = ("images", *METRICS)  # what a score row adds to a bench row
HINT_PATCH = 6  # side of the square whose mean colour a simulated hint gives (the hints issue's 6 x 6)
HINT_PLACEMENTS = {  # where simulated hints go: name, what the recorded protocol says
    "centred": "seeded by the photo's file name, each square's corner per axis normal around the photo's centre"
               " (sd a quarter of the side, clipped), as Zhang et al. (2017) evaluate",
    "worst": "one by one, each on the square where the colours so far (the last hints spread) are most wrong"
             " (mean squared a*b* difference), as a person correcting the photo would place them",
}
FID_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
FID_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{FID_WEIGHTS}"
BACKBONE_FIELDS = ("fid_effl0", "fid", "lpips")  # defined in a protocol block only when computed


class MissingWeightsError(RuntimeError):
    """FID or LPIPS was asked for but its backbone weights (or package) are not on this machine."""


# --------------------------------------------------------------------------------------------- FID, LPIPS


@dataclass(frozen=True)
class Backbones:
    """The metrics a run adds that need a network: FID-EffL0 (shipped), Inception FID and LPIPS (weights on this
    machine), and a line for each asked for that cannot run."""

    fid_effl0: bool = False
    inception: Path | None = None  # torch-fidelity's InceptionV3 weights, when Inception FID runs
    lpips: bool = False
    notes: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """The row fields these backbones fill."""
        return [key for key, on in (("fid_effl0", self.fid_effl0), ("fid", self.inception is not None),
                                    ("lpips", self.lpips)) if on]


def _lpips_backbone() -> tuple[str, str]:
    """File name and URL of the AlexNet weights that torchmetrics' LPIPS loads through torchvision."""
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.DEFAULT.url
    return url.rsplit("/", 1)[-1], url


def resolve_backbones(fid: bool, lpips: bool, fid_weights: Path | None = None) -> Backbones:
    """Which of FID-EffL0, Inception FID and LPIPS run, looking only on this machine (never downloading).

    ``fid`` (or ``fid_weights``) always gives FID-EffL0, and Inception FID too when torch-fidelity is installed and
    its InceptionV3 weights are at ``fid_weights`` or in the torch hub cache; otherwise a note says in one line
    what is missing. Raises :class:`MissingWeightsError`, a line a problem, when what was asked for explicitly
    (``fid_weights``, ``lpips``) cannot run.
    """
    hub = torch_hub_checkpoints()
    problems, notes = [], []
    inception = None
    fid = fid or fid_weights is not None
    if fid:
        weights = fid_weights or hub / FID_WEIGHTS
        fidelity = importlib.util.find_spec("torch_fidelity") is not None
        missing = [] if fidelity else ["the torch-fidelity package (pip install torch-fidelity)"]
        if not weights.is_file():
            missing.append(f"its InceptionV3 weights {FID_WEIGHTS} (from {FID_URL}) at --fid-weights PATH or in {hub}")
        if missing:
            (problems if fid_weights else notes).append(f"Inception FID not computed (FID-EffL0 is): it needs"
                                                        f" {' and '.join(missing)}")
        else:
            inception = weights
    if lpips:
        name, url = _lpips_backbone()
        if not (hub / name).is_file():
            problems.append(f"--lpips needs torchvision's AlexNet weights {name} in {hub} (download {url} on a"
                            f" machine with internet and copy it there, or set TORCH_HOME to a cache that has"
                            f" hub/checkpoints/{name}; LPIPS's own linear layers ship with torchmetrics)")
    if problems:
        raise MissingWeightsError("\n".join(problems))
    return Backbones(fid, inception, lpips, tuple(notes))


# --------------------------------------------------------------------------------------------- metrics


def _metric_set(backbones: Backbones, effl0: nn.Module | None, device: torch.device) -> dict[str, Metric]:
    """Fresh metrics for one candidate (a model, a folder of predictions or a reference row)."""
    metrics: dict[str, Metric] = {
        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
        "ssim": StructuralSimilarity(),
        "cf": Colorfulness(),
        "cf_hasler": Colorfulness(signed=True),
        "dcf": ColorfulnessGap(),
        "dcf_per_image": PerImageColorfulnessGap(),
        "ciede2000": CIEDE2000(),
    }
    if effl0 is not None:
        metrics["fid_effl0"] = frechet_distance(effl0)
    if backbones.inception is not None:
        metrics["fid"] = FrechetDistance(feature=2048, normalize=True,
                                         feature_extractor_weights_path=str(backbones.inception))
    if backbones.lpips:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metrics["lpips"] = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    return {name: metric.to(device) for name, metric in metrics.items()}


def _update(metrics: Mapping[str, Metric], pred: Tensor, truth: Tensor) -> None:
    for metric in metrics.values():
        if isinstance(metric, Colorfulness):
            metric.update(pred)
        elif isinstance(metric, FrechetDistance):
            metric.update(truth, real=True)
            metric.update(pred, real=False)
        else:
            metric.update(pred, truth)


def describe_protocol(protocol: Protocol, side: int, data: str, images: int, backbones: Backbones,
                      predictions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The scoring protocol as recorded with the results (FID and LPIPS only when they were computed)."""
    recorded = {
        "data": data,
        "images": images,
        **protocol.record(side),
        "input": "L of the true image (CIE Lab, D65), normalised to [-1, 1]",
        "prediction": "a model: Lab(L_true, ab_model) to sRGB, clipped to [0, 1], float32, the model run as zoo"
                      " colorize runs it (L resized bicubic to its working size, ab resized back bilinear);"
                      " a prediction file: prepared as the truth, its own RGB as written",
        "truth": "the prepared photo itself, sRGB / 255",
        "compare": "RGB in [0, 1]",
        **{f.key: f.definition for f in FIELDS if f.definition and (f.key not in BACKBONE_FIELDS
                                                                      or f.key in backbones.names)},
        "references": "gray: ab = 0; truth: the truth scored against itself",
    }
    if predictions:
        recorded["predictions"] = dict(predictions)
    return recorded


# --------------------------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    """What :func:`score_models` found: one row per candidate, the protocol, and first images for sample grids."""

    rows: list[dict[str, Any]]
    protocol: dict[str, Any]
    shown: dict[str, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)  # name: (L, ab_pred, ab_true)


@dataclass
class _Batch:
    """One batch as the candidates see it: normalised L and ab of the truth, the truth RGB in [0, 1], and the
    prediction files' RGB in [0, 1] (B, k, 3, S, S), one per folder."""

    L: Tensor
    ab: Tensor
    truth: Tensor
    files: Tensor


@dataclass
class _Candidate:
    predict: Callable[[_Batch], Tensor]  # the predicted sRGB in [0, 1], (B, 3, S, S)
    metrics: dict[str, Metric]
    shown: bool = True  # gets a sample grid (the references do not)
    error: str | None = None


@dataclass
class _HintCurve:
    """One model (or gray: ab = 0) scored with 0, 1, 2 ... simulated hints per photo: its automatic ab spread
    with each photo's first n hints (:func:`zoo.guided.spread_hints`; a model that takes hints also gets them, a
    model with alternative colourings spreads the one they choose: :func:`zoo.guided.choose`), placed as
    :data:`HINT_PLACEMENTS` says."""

    model: nn.Module | None  # an AtWorkingSize predictor; None for gray
    counts: tuple[int, ...]
    candidates: dict[int, _Candidate]
    patch: int
    settings: PropagationSettings
    placement: str = "centred"
    error: str | None = None

    def update(self, batch: _Batch, names: Sequence[str]) -> None:
        """Score this batch's photos (named ``names``, which seed their hints) at every count."""
        side = tuple(batch.L.shape[-2:])
        automatic = torch.zeros_like(batch.ab) if self.model is None else self.model(batch.L).float()
        choices = self.model is not None and self.model.has_choices
        colourings = torch.cat([automatic[:, None], self.model.alternatives(batch.L)], 1) if choices else None
        for index, name in enumerate(names):
            lightness = ((batch.L[index, 0].double() + 1) * L_SCALE).cpu().numpy()
            grid = functools.cache(functools.partial(Propagation, lightness, self.settings))
            truth = batch.ab[index].cpu()

            def colours(some: list[Hint], index: int = index, grid: Callable[[], Propagation] = grid) -> Tensor:
                base = automatic[index]
                if some and self.model is not None and self.model.guided:
                    base = self.model(batch.L[index:index + 1], [some]).float()[0]
                elif some and colourings is not None:
                    base = choose(colourings[index].cpu(), some, (side[1], side[0]), self.settings.choice)
                return spread_hints(base.cpu(), some, (side[1], side[0]), grid)

            if self.placement == "centred":
                hints = simulated_hints(truth, max(self.counts), self.patch, photo_seed(name))
                spread = {count: colours(hints[:count]) for count in self.counts}
            else:  # worst: each next hint where the colours so far are most wrong
                hints, ab, spread = [], colours([]), {}
                for count in range(max(self.counts) + 1):
                    if count:
                        hints.append(worst_hint(ab, truth, self.patch))
                        ab = colours(hints)
                    if count in self.candidates:
                        spread[count] = ab
            for count, ab in spread.items():
                pred = lab_normalized_to_rgb(batch.L[index:index + 1], ab[None].to(batch.L))
                _update(self.candidates[count].metrics, pred, batch.truth[index:index + 1])


def load_images(data: str, image_size: int, echo: Callable[[str], None] = print) -> list[Path]:
    """The usable photos of ``data`` (``heldout``, ``sample``, a folder, a glob ...), scanned with the zoo's cache."""
    cache = cache_root()
    report = scan_images(resolve_source(data, cache_dir=cache), image_size=image_size, cache_dir=cache, source=data)
    if report.skipped:
        echo(report.summary())
    return report.ok


def _file_groups(truths: list[Path], predictions: Mapping[str, Path], echo: Callable[[str], None],
                 protocol: Protocol) -> tuple[list[tuple[Path, ...]], dict[str, Any]]:
    """Each truth that every folder of ``predictions`` colours, with those files in the folders' order (the truth
    alone without folders); and what each folder matched, for the protocol block."""
    pairings = {name: match_predictions(truths, folder) for name, folder in predictions.items()}
    files = {name: dict(pairing.pairs) for name, pairing in pairings.items()}
    groups = [(truth, *(files[name][truth] for name in predictions)) for truth in truths
              if all(truth in by_truth for by_truth in files.values())]
    matched = {}
    for name, pairing in pairings.items():
        for line in pairing.summary(predictions[name]):
            echo(line)
        check_sizes(pairing.pairs, protocol)
        matched[name] = {"folder": str(predictions[name]), "matched": len(pairing.pairs),
                         "missing": len(pairing.missing), "extra": len(pairing.extra)}
    if len(groups) < min((len(p.pairs) for p in pairings.values()), default=len(truths)):
        echo(f"scoring the {len(groups)} photos that every folder of predictions colours")
    if not groups:
        raise ValueError(f"no photo of the {len(truths)} has a prediction in every folder: nothing to score")
    return groups, matched


def score_models(
    models: Mapping[str, nn.Module],
    *,
    data: str = "sample",
    image_size: int | None = 256,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    workers: int | None = None,
    fid: bool = False,
    lpips: bool = False,
    show: int = 4,
    echo: Callable[[str], None] = print,
    protocol: str = "zoo",
    fid_weights: Path | None = None,
    predictions: Mapping[str, Path] | None = None,
    hints: Sequence[int] = (),
    hint_patch: int = HINT_PATCH,
    hint_placement: str = "centred",
    propagation: PropagationSettings | None = None,
) -> Scores:
    """Score ``models`` (name: predictor from L to ab, eval mode, on ``device``), the folders of ``predictions``
    (name: folder of another colorizer's output files) and the references on the photos of ``data``, prepared
    by ``protocol`` (:data:`zoo.harness.protocols.PROTOCOLS`; ``image_size`` is the side of ``zoo``).

    With ``hints`` (counts such as 0, 1, 2, 5, 10, 20), every model and gray are also scored with that many hints
    per photo, each the truth's mean colour over ``hint_patch`` x ``hint_patch`` pixels, placed as
    ``hint_placement`` (:data:`HINT_PLACEMENTS`) says: ``centred`` as Zhang et al. (2017) evaluate
    (:func:`zoo.hints.simulated_hints`), ``worst`` where the colours are most wrong (:func:`zoo.hints.worst_hint`);
    spread by ``propagation`` (:class:`zoo.propagate.PropagationSettings`): rows with ``hints`` set.

    With ``fid``, FID-EffL0 (and Inception FID where its weights are on this machine, or at ``fid_weights``);
    with ``lpips``, LPIPS. A model whose forward fails is a row with its error; the others go on. Rows: the
    models, then the folders, in order, then ``gray`` and ``truth``. Raises ValueError (an unknown protocol or
    source, no usable photo, predictions that do not fit) and :class:`MissingWeightsError` before anything slow.
    """
    device = torch.device(device)
    predictions = dict(predictions or {})
    clash = [name for name in [*models, *predictions] if name in REFERENCES]
    if clash or set(models) & set(predictions):
        raise ValueError(f"candidate names must differ from each other and from {', '.join(REFERENCES)}")
    method = get_protocol(protocol)
    if hint_placement not in HINT_PLACEMENTS:
        raise ValueError(f"unknown hint placement {hint_placement!r}: {' or '.join(HINT_PLACEMENTS)}")
    side = method.side(image_size)
    backbones = resolve_backbones(fid, lpips, fid_weights)
    for note in backbones.notes:
        echo(note)
    truths = load_images(data, side, echo)
    groups, matched = _file_groups(truths, predictions, echo, method)
    if len(groups) < 2 and (backbones.fid_effl0 or backbones.inception):
        echo("FID not computed: a distribution needs at least 2 photos")
        backbones = replace(backbones, fid_effl0=False, inception=None)
    effl0 = EfficientNetLite0Features().to(device) if backbones.fid_effl0 else None
    candidates = {name: _Candidate(_model_prediction(model), _metric_set(backbones, effl0, device))
                  for name, model in models.items()}
    for index, name in enumerate(predictions):
        candidates[name] = _Candidate(_file_prediction(index), _metric_set(backbones, effl0, device))
    candidates[GRAY] = _Candidate(lambda b: lab_normalized_to_rgb(b.L, torch.zeros_like(b.ab)),
                                  _metric_set(backbones, effl0, device), shown=False)
    candidates[TRUTH] = _Candidate(lambda b: b.truth, _metric_set(backbones, effl0, device), shown=False)
    counts = tuple(sorted(set(hints)))
    curves = {name: _HintCurve(model, counts, {n: _Candidate(_no_prediction, _metric_set(backbones, effl0, device))
                                                 for n in counts}, hint_patch, propagation or PropagationSettings(),
                                 hint_placement)
              for name, model in ({**models, GRAY: None} if counts else {}).items()}
    names = [group[0].name for group in groups]
    seen = 0
    cf_truth = Colorfulness().to(device)
    shown: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    dataset = ProtocolImages(groups, method, side)
    loader = make_loader(dataset, batch_size, sampler=SequentialSampler(dataset), workers=workers,
                         device_type=device.type)
    with torch.inference_mode():
        for stack in loader:
            stack = stack.to(device)
            L, ab = rgb_uint8_to_lab_normalized(stack[:, 0])
            batch = _Batch(L, ab, stack[:, 0].float() / 255, stack[:, 1:].float() / 255)
            cf_truth.update(batch.truth)
            for name, candidate in candidates.items():
                if candidate.error is not None:
                    continue
                try:
                    pred = candidate.predict(batch)
                except Exception as exc:  # noqa: BLE001 (a broken model is a row with its error)
                    candidate.error = f"{type(exc).__name__}: {exc}"
                    continue
                _update(candidate.metrics, pred, batch.truth)
                if candidate.shown and name not in shown:
                    shown[name] = (L[:show], normalize_lab(rgb_to_lab(pred[:show]))[1], ab[:show])
            for curve in curves.values():
                if curve.error is None:
                    try:
                        curve.update(batch, names[seen:seen + len(stack)])
                    except Exception as exc:  # noqa: BLE001 (a broken model is a row with its error)
                        curve.error = f"{type(exc).__name__}: {exc}"
            seen += len(stack)
    rows = [_row(name, candidate, len(groups), cf_truth) for name, candidate in candidates.items()]
    for name, curve in curves.items():
        for count, candidate in curve.candidates.items():
            candidate.error = curve.error
            rows.append(_row(name, candidate, len(groups), cf_truth) | {"hints": count})
    for row in rows:
        if row["model"] in matched and matched[row["model"]]["missing"]:
            row["note"] = f"scored on {len(groups)} photos: {matched[row['model']]['missing']} have no prediction"
    recorded = describe_protocol(method, side, data, len(groups), backbones, matched)
    if counts:
        recorded["hints"] = (f"{hint_patch} x {hint_patch} squares, each the truth's mean a*b*, placed"
                             f" {HINT_PLACEMENTS[hint_placement]}; spread over the model's colours")
    return Scores(rows, recorded, shown)


def _model_prediction(model: nn.Module) -> Callable[[_Batch], Tensor]:
    def predict(batch: _Batch) -> Tensor:
        return lab_normalized_to_rgb(batch.L, model(batch.L).float())

    return predict


def _no_prediction(batch: _Batch) -> Tensor:
    raise AssertionError("hint curves are scored photo by photo (_HintCurve.update)")


def _file_prediction(index: int) -> Callable[[_Batch], Tensor]:
    def predict(batch: _Batch) -> Tensor:
        return batch.files[:, index]

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
    """``path`` itself (a file, or a Hub-layout folder), or the inference checkpoint ``generator.safetensors`` of
    a run folder."""
    run_generator = path / "generator.safetensors"
    return run_generator if run_generator.is_file() else path


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


def load_model(name: str, path: Path, device: str | torch.device,
               settings: Mapping[str, Any] | None = None) -> nn.Module:
    """The predictor (L to ab) of checkpoint ``path`` (a file or a run folder), refused unless it fits model
    ``name``, run at its working size as ``zoo colorize`` runs it; ``settings`` replace its inference settings
    (:meth:`zoo.spec.ModelSpec.with_inference`: a variant of the same weights)."""
    path = checkpoint_file(path)
    spec, predictor = checkpoint.load_generator(path, model=None if is_hub_name(name) else name, device=device)
    spec, predictor = run_otherwise(spec, predictor, settings or {})
    choices = None if is_hub_name(name) else functools.partial(shipped_choices, name, path, device)
    return AtWorkingSize(predictor, spec.working_size, size_multiple(spec), choices)
