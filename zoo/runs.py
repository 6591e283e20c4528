"""A training run's folder: what is in it and how each file is written.

    runs/<model>-<date>-<time>/
      run.json                   resolved spec and options (what `zoo train --resume` continues)
      split.json                 the seeded train/val split and the skipped files with reasons
      metrics.jsonl              one JSON record per logged step or validation (TensorBoard too, if installed)
      samples/*.png              gray | ours | truth grids after each epoch
      checkpoints/last.safetensors   everything to resume bit for bit
      generator.safetensors      the predictor (generator + decoder) and objective state, for inference
      best.safetensors           with --keep-best: the same at the best validation L1 (copied to the above)
      branches/*.safetensors     a stage with branches: the weights it started from, each branch's, their mean

A file of a run that cannot be read is a :class:`RunError` naming it. Which folders a run may be written to is
:mod:`zoo.outputs`' business.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from zoo import files
from zoo.errors import ZooError, one_line

RUN_FILE = "run.json"
SPLIT_FILE = "split.json"
SUMMARY_FILE = "summary.json"  # what a finished run did (zoo.train.TrainSummary)
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = Path("checkpoints") / "last.safetensors"
GENERATOR_FILE = "generator.safetensors"
BEST_FILE = "best.safetensors"  # with --keep-best: the predictor of the best validation L1 so far


def branch_file(run_dir: Path, stage_index: int, stage: str, branch: int | str) -> Path:
    """Weights of a stage with branches: ``branch`` is a branch's number, ``"start"`` or ``"soup"``."""
    return Path(run_dir) / "branches" / f"{stage_index}-{stage}-{branch}.safetensors"


class RunError(ZooError, ValueError):
    """A run folder's file that cannot be read; the message names it."""


def default_run_dir(model: str) -> Path:
    """``runs/<model>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3`` ... added when that folder exists already."""
    base = Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def write_run(run_dir: Path, model: str, spec: dict[str, Any], options: dict[str, Any]) -> None:
    files.write_text(run_dir / RUN_FILE, json.dumps({"model": model, "spec": spec, "options": options}, indent=2))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    files.write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2))


def write_split(run_dir: Path, seed: int, val_fraction: float, train: list[Path], val: list[Path],
                skipped: list[tuple[Path, str]]) -> None:
    split = {"seed": seed, "val_fraction": val_fraction, "train": [str(p) for p in train],
             "val": [str(p) for p in val], "skipped": [[str(p), why] for p, why in skipped]}
    files.write_text(run_dir / SPLIT_FILE, json.dumps(split, indent=2))


def read_json(run_dir: Path, name: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in the run's file ``name``, which must hold ``keys``; else a :class:`RunError`."""
    path = Path(run_dir) / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: cannot read the run's {name} ({one_line(err)})") from None
    missing = [key for key in keys if not isinstance(data, dict) or key not in data]
    if missing:
        raise RunError(f"{path}: not a run's {name} (no {', '.join(missing)})")
    return data


class RunLog:
    """Appends records to ``metrics.jsonl`` (and TensorBoard scalars when it is installed); only where
    ``enabled`` (rank 0). Nothing is created before the first record."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.enabled = enabled
        self.tensorboard: Any = None
        self.opened = False

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self.opened:
            self.tensorboard, self.opened = _tensorboard(self.run_dir), True
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, float):
                    self.tensorboard.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(str(Path(run_dir) / "tensorboard"))
