"""The one table of result fields: every number ``zoo bench`` and ``zoo score`` write, and how it is shown.

The JSON and CSV writer, the terminal table, ``--compare``, the model cards, the plots and the HTML report
all read :data:`FIELDS`: a field's key (the JSON key and CSV column), label, unit, which direction is better,
which kinds of results carry it, how many decimals the terminal shows, and what a reader must know beside the
label (FID-EffL0 is not Inception FID; which colourfulness CF is).
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
    Field("psnr", "PSNR", "quality", unit="dB", better=True, kinds=BOTH, compared=True),
    Field("ssim", "SSIM", "quality", better=True, digits=4, kinds=BOTH, compared=True),
    Field("ciede2000", "CIEDE2000", "quality", better=False, kinds=BOTH, compared=True),
    Field("cf", "CF", "quality", digits=1, kinds=BOTH,
          description="colourfulness as published code computes it: rg = |R - G|, yb = |(R + G)/2 - B|"),
    Field("cf_truth", "CF truth", "quality", digits=1, kinds=BOTH, terminal=False),
    Field("cf_hasler", "CF Hasler", "quality", digits=1, kinds=BOTH, terminal=False,
          description="Hasler & Suesstrunk's colourfulness with signed rg = R - G, yb = (R + G)/2 - B"),
    Field("dcf", "dCF", "quality", better=False, digits=2, kinds=BOTH, compared=True,
          description="|mean CF(truth) - mean CF(prediction)| over the set, as papers report it"),
    Field("dcf_per_image", "dCF per image", "quality", better=False, digits=1, kinds=BOTH, terminal=False,
          description="mean over images of |CF(truth) - CF(prediction)|"),
    Field("fid_effl0", "FID-EffL0", "quality", better=False, digits=2, kinds=BOTH,
          description="Frechet distance of ImageNet EfficientNet-Lite0 features: not comparable with Inception FID"),
    Field("fid", "FID", "quality", better=False, digits=3, kinds=BOTH,
          description="Inception FID (torch-fidelity InceptionV3), as papers report it"),
    Field("lpips", "LPIPS", "quality", better=False, digits=3, kinds=BOTH),
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
