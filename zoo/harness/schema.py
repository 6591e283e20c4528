"""The one table of result fields: every number ``zoo bench`` and ``zoo score`` write, and how it is shown.

The JSON and CSV writer, the terminal table, ``--compare``, the model cards, the plots, the HTML report and the
scoring protocol block all read :data:`FIELDS`, the one place a field is declared: its key (the JSON key and CSV
column), label, unit, which direction is better, which kinds of results carry it, how many decimals the
terminal shows, what a reader must know beside the label (FID-EffL0 is not Inception FID; which colourfulness
CF is) and, for a score, its exact definition. :mod:`zoo.harness.scoring` takes its metric keys from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Group = Literal["run", "speed", "quality"]


@dataclass(frozen=True)
class Field:
    """One result field."""

    key: str  # JSON key and CSV column
    label: str  # column title in tables, the report and plots
    group: Group
    unit: str = ""
    better: bool | None = None  # True: higher is better, False: lower is better, None: neither
    digits: int = 2  # decimals in the terminal table (None-safe)
    kinds: tuple[str, ...] = ("bench",)  # which results files carry it
    compared: bool = False  # in `zoo bench --compare`'s ratios
    terminal: bool = True  # a column of the terminal table (when some row has it)
    description: str = ""  # what a reader must know beside the label (the report's header tooltip and key)
    definition: str = ""  # how a score is computed, exactly: what a results file's protocol block says of it

    @property
    def title(self) -> str:
        """Label with unit: ``PSNR (dB)``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def format(self, value: Any) -> str:
        """The terminal's rendering of ``value``: ``-`` for missing, parameter counts in millions."""
        if value is None:
            return "-"
        if isinstance(value, float) and math.isinf(value):
            return "inf"
        if self.unit == "M":
            return f"{value / 1e6:.2f}M"
        if self.unit == "%":
            return f"{100 * value:.1f}%"
        if isinstance(value, float):
            return f"{value:.{self.digits}f}"
        return str(value)


BOTH = ("bench", "score", "leaderboard")  # quality fields: every kind of results
FIELDS: tuple[Field, ...] = (
    Field("hints", "hints", "run", digits=0, kinds=BOTH,
          description="simulated colour hints per photo (seeded places, the truth's mean colour over a patch),"
                      " spread over the model's colours; empty: the automatic row"),
    # quality
    Field("psnr", "PSNR", "quality", unit="dB", better=True, kinds=BOTH, compared=True,
          definition="torchmetrics PeakSignalNoiseRatio, data_range 1, per image over all RGB values, mean over images;"
                     " identical images give inf (null in JSON)"),
    Field("ssim", "SSIM", "quality", better=True, digits=4, kinds=BOTH, compared=True,
          definition="Gaussian window sigma 1.5 (11x11), k1 0.01, k2 0.03, data_range 1, per channel, mean over the"
                     " map without its 5 px border (torchmetrics' SSIM map; equals skimage structural_similarity"
                     " with gaussian_weights, use_sample_covariance=False), mean over images"),
    Field("ciede2000", "CIEDE2000", "quality", better=False, kinds=BOTH, compared=True,
          definition="CIEDE2000 (kL = kC = kH = 1) between Lab of prediction and truth, per-pixel mean per image,"
                     " mean over images"),
    Field("cf", "CF", "quality", digits=1, kinds=BOTH,
          description="colourfulness as published code computes it: rg = |R - G|, yb = |(R + G)/2 - B|",
          definition="colourfulness as the published colorization code computes it, on 0-255 RGB: sqrt(std_rg^2 +"
                     " std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = |R - G|, yb = |(R + G) / 2 - B|, population"
                     " std, per image, mean over images (cf of the predictions, cf_truth of the truth)"),
    Field("cf_truth", "CF truth", "quality", digits=1, kinds=BOTH, terminal=False),
    Field("cf_hasler", "CF Hasler", "quality", digits=1, kinds=BOTH, terminal=False,
          description="Hasler & Suesstrunk's colourfulness with signed rg = R - G, yb = (R + G)/2 - B",
          definition="the same with Hasler & Suesstrunk's signed rg = R - G, yb = (R + G) / 2 - B"),
    Field("dcf", "dCF", "quality", better=False, digits=2, kinds=BOTH, compared=True,
          description="|mean CF(truth) - mean CF(prediction)| over the set, as papers report it",
          definition="|mean CF(truth) - mean CF(prediction)| over the set, as papers report dCF"),
    Field("dcf_per_image", "dCF per image", "quality", better=False, digits=1, kinds=BOTH, terminal=False,
          description="mean over images of |CF(truth) - CF(prediction)|",
          definition="mean over images of |CF(truth) - CF(prediction)| per image"),
    Field("fid_effl0", "FID-EffL0", "quality", better=False, digits=2, kinds=BOTH,
          description="Frechet distance of ImageNet EfficientNet-Lite0 features: not comparable with Inception FID",
          definition="FID-EffL0: Frechet distance between the pooled 1280-d features of the shipped ImageNet"
                     " EfficientNet-Lite0 (images resized to 224x224, bicubic, antialiased), truth vs predictions"
                     " (the feature statistics of torchmetrics' FrechetInceptionDistance, the trace term by"
                     " symmetric eigendecompositions); NOT comparable with Inception FID"),
    Field("fid", "FID", "quality", better=False, digits=3, kinds=BOTH,
          description="Inception FID (torch-fidelity InceptionV3), as papers report it",
          definition="Inception FID: the same distance on torch-fidelity's InceptionV3 2048-d pool features"
                     " (torchmetrics FrechetInceptionDistance), truth vs predictions; comparable with papers on the"
                     " same images and count"),
    Field("lpips", "LPIPS", "quality", better=False, digits=3, kinds=BOTH,
          definition="torchmetrics LearnedPerceptualImagePatchSimilarity, AlexNet, inputs in [0, 1], mean over images"),
    Field("images", "images", "quality", digits=0, kinds=BOTH, terminal=False),
    # training at a budget (zoo leaderboard)
    Field("budget_s", "budget", "run", unit="s", digits=0, kinds=("leaderboard",)),
    Field("steps", "steps", "run", digits=0, kinds=("leaderboard",)),
    # speed and size
    Field("infer_img_s", "infer img/s", "speed", better=True, digits=1, compared=True),
    Field("latency_ms_median", "latency ms", "speed", better=False, digits=1, compared=True),
    Field("latency_ms_p90", "latency p90 ms", "speed", better=False, digits=1, terminal=False),
    Field("train_g_img_s", "train G img/s", "speed", better=True, digits=1, compared=True),
    Field("train_gd_img_s", "train G+D img/s", "speed", better=True, digits=1, compared=True),
    Field("params", "params", "speed", unit="M", better=False),
    Field("d_params", "D params", "speed", unit="M", better=False, terminal=False),
    Field("gflops", "GFLOP/img", "speed", better=False),
    Field("peak_mem_infer_mib", "infer MiB", "speed", better=False, digits=0, compared=True),
    Field("peak_mem_train_mib", "train MiB", "speed", better=False, digits=0, compared=True),
    Field("achieved_gflops_s", "GFLOP/s", "speed", better=True, digits=1),
    Field("peak_fraction", "of peak", "speed", unit="%", better=True),
    # what was run
    Field("batch_size", "batch", "run", digits=0),
    Field("oom_retries", "OOM retries", "run", better=False, digits=0, terminal=False),
    Field("timer_ratio", "vs Timer", "speed"),
    Field("generator", "generator", "run", terminal=False),
    Field("checkpoint", "checkpoint", "run", kinds=BOTH, terminal=False),
    Field("predictions", "predictions", "run", kinds=BOTH, terminal=False),
    Field("registry_model", "registry model", "run", kinds=("leaderboard",), terminal=False),
)
BY_KEY: dict[str, Field] = {f.key: f for f in FIELDS}
REFERENCE_ROWS = ("gray", "truth")  # score's reference rows (ab = 0; the truth itself): shown, never "best"


def csv_columns(kind: str) -> list[str]:
    """The CSV columns of ``kind`` results: model, error, then its fields in table order."""
    return ["model", "error", *(f.key for f in FIELDS if kind in f.kinds)]


def group(name: Group) -> list[Field]:
    return [f for f in FIELDS if f.group == name]


def compared_fields() -> list[Field]:
    return [f for f in FIELDS if f.compared]


def field(key: str) -> Field:
    """The field called ``key``; an unknown key (a plugin's own number) gets a neutral field of its name."""
    return BY_KEY.get(key) or Field(key, key, "quality", kinds=BOTH)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def numeric_keys(rows: list[Mapping[str, Any]]) -> list[str]:
    """Keys holding a number in some row: the known ones in table order, then the rest as first seen."""
    present = list(dict.fromkeys(key for row in rows for key, value in row.items() if is_number(value)))
    return [f.key for f in FIELDS if f.key in present] + [key for key in present if key not in BY_KEY]
