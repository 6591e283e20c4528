"""Results of ``zoo bench`` and ``zoo score``: JSON and CSV files, terminal tables and comparisons.

A results document (one JSON file per run, ``results/<kind>-<YYYYmmdd-HHMMSS>.json``, and a CSV of its rows
with the same stem) has exactly these top-level keys::

    {"kind": "bench" | "score",
     "created": ISO 8601 local time with offset,
     "machine": {"cpu", "cpu_count", "gpu" (null without CUDA), "cuda" (null without CUDA), "torch", "python",
                 "platform", "threads"},
     "settings": {...},   # bench: BenchSettings (device resolved) plus dtype, matmul_peak_gflops_s, matmul_size,
                          #        memory_method, timing, warmup_rule;
                          # score: data, protocol, image_size, batch_size, device, dtype, fid, fid_weights,
                          #        lpips, predictions
     "protocol": {...},   # the scoring protocol (zoo.harness.scoring.describe_protocol): its name, geometry, the
                          # published tables it compares with, each metric's definition; score runs, and bench
                          # runs that scored
     "rows": [{"model": str, "error": str | null, ...}],
     "samples": {model: grid PNG path relative to the JSON's folder},
     "grids": {"columns": 3, "padding": px}}   # how every sample grid is laid out (null: no grids)

A sample grid (:func:`write_sample_grids`) has one row of square panels per photo, gray | model | truth, with
``padding`` pixels between and around them: what the HTML report cuts them by.

Non-finite numbers are written as ``null``: a ``psnr`` of null with ``error`` null means infinite (the
prediction equals the truth; only the ``truth`` reference row has it).

Row fields of ``bench`` (null where not measured; an ``error`` row has only model, error and what came before
the failure):

* ``model``: the registry name; ``error``: ``"Type: message"`` if it failed to build or run, else null
* ``generator``: the generator architecture; ``note``: how the settings were adapted to the image size
  (``"num_downs 8 -> 6 for 64 px"``) and why a checkpoint found for the model was not scored, else null
* ``batch_size``: the batch the figures were taken at; ``oom_retries``: how often out of memory halved it
* ``params``, ``d_params``: generator / discriminator parameters (d_params null without a discriminator)
* ``gflops``: generator GFLOPs (2 per multiply-add) per image of the benchmark size, forward only
* ``infer_img_s``: inference images/s (eval mode, no grad: batch * iters / total time)
* ``latency_ms_median``, ``latency_ms_p90``: per-batch inference latency, median and 90th percentile (ms)
* ``train_g_img_s``: images/s of one generator-only training step (regression loss, Adam step)
* ``train_gd_img_s``: images/s of one G+D step (discriminator then generator, pix2pix's GAN stage); null
  for models without a GAN stage
* ``peak_mem_infer_mib``, ``peak_mem_train_mib``: peak memory of inference and of the training steps above
  the memory in use when the phase began (MiB; see settings.memory_method)
* ``achieved_gflops_s``: ``gflops * infer_img_s``; ``peak_fraction``: that over settings.matmul_peak_gflops_s
* ``timer_ratio``: with ``--self-check``, the harness's median inference latency over the median of
  ``torch.utils.benchmark.Timer`` on the same callable (1.0 = agreement)
* with ``--checkpoints``: the quality fields below, plus ``checkpoint``: the file scored; the reference
  rows ``gray`` and ``truth`` then carry only quality fields

Row fields of ``score`` (see the protocol for the exact definitions):

* ``model``, ``error``; ``checkpoint``: the file scored (null for references and prediction folders);
  ``predictions``: the folder of another colorizer's outputs scored (``--predictions``), else null;
  ``note``: for a prediction folder that lacks some photos, on how many it was scored; ``images``: photos scored
* ``psnr`` (dB), ``ssim``: against the truth, in RGB
* ``cf``: mean colourfulness of the predictions as the published colorization code computes it (absolute
  opponents |R - G|, |(R + G)/2 - B|); ``cf_truth``: of the truth; ``cf_hasler``: the predictions' mean
  colourfulness with Hasler & Suesstrunk's signed opponents
* ``dcf``: |mean CF(truth) - mean CF(prediction)| over the set, as papers report dCF; ``dcf_per_image``: the
  mean over images of |CF(truth) - CF(prediction)|
* ``ciede2000``: mean CIEDE2000 colour difference
* ``fid_effl0``: with ``--fid``, the Frechet distance of the shipped ImageNet EfficientNet-Lite0's features
  (not comparable with Inception FID); ``fid``: Inception FID where its weights are on the machine
  (``--fid-weights``); ``lpips``: with ``--lpips``; else null
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError, one_line
from zoo.files import write_text
from zoo.harness.schema import compared_fields, csv_columns, field, numeric_keys
from zoo.tables import Styled, Table

KINDS = ("bench", "score", "leaderboard")


class ResultsError(ZooError, ValueError):
    """A file that is not a results document; the message names it."""


# --------------------------------------------------------------------------------------------- documents


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU (from /proc/cpuinfo), GPU and CUDA (when on CUDA), torch, Python, platform and torch's threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    on_cuda = device.type == "cuda"
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if on_cuda else None,
        "cuda": torch.version.cuda if on_cuda else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }


def document(kind: str, machine: Mapping[str, Any], settings: Mapping[str, Any], rows: list[dict[str, Any]],
             protocol: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A results document (see the module docstring) without its sample grids yet; ``protocol`` is left out
    when None."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    doc: dict[str, Any] = {
        "kind": kind,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": dict(machine),
        "settings": dict(settings),
    }
    if protocol is not None:
        doc["protocol"] = dict(protocol)
    doc |= {"rows": rows, "samples": {}, "grids": None}
    return doc


def write_sample_grids(shown: Mapping[str, tuple[Any, Any, Any]], folder: Path, stem: str) -> dict[str, Any]:
    """A gray | model | truth grid per model of ``shown`` (normalised (L, ab_pred, ab_true) batches) under
    ``folder/samples/<stem>/``; returns the document's ``samples`` (paths relative to ``folder``) and ``grids``."""
    from zoo.images import GRID_PADDING, write_sample_grid

    samples = {}
    for name, images in shown.items():
        path = folder / "samples" / stem / f"{re.sub(r'[^A-Za-z0-9._=-]+', '_', name).strip('_')}.png"
        write_sample_grid(path, *images)
        samples[name] = path.relative_to(folder).as_posix()
    return {"samples": samples, "grids": {"columns": 3, "padding": GRID_PADDING}}


def merge_scores(rows: list[dict[str, Any]], scored: list[dict[str, Any]], *, keys: tuple[str, ...] | None = None,
                 run_keys: tuple[str, ...] = (), errors_as_notes: bool = False) -> list[dict[str, Any]]:
    """``scored`` rows (:func:`zoo.harness.scoring.score_models`) merged into the ``rows`` of the models they score
    (``keys`` of each, all but model and error by default; a scoring error becomes the row's error, or with
    ``errors_as_notes`` a note beside the row's other figures); returns the rows they add: the references, and hint
    curves' rows, which take ``run_keys`` from their model's row."""
    by_name = {row["model"]: row for row in rows}
    added = []
    for score in scored:
        row = by_name.get(score["model"])
        quality = {k: v for k, v in score.items() if k not in ("model", "error") and (keys is None or k in keys)}
        if score.get("hints") is not None or row is None:
            added.append(score | ({k: row[k] for k in run_keys if k in row} if row else {}))
        elif score["error"] and errors_as_notes:
            row["note"] = "; ".join(filter(None, [row.get("note"), f"not scored: {score['error']}"]))
        elif score["error"]:
            row["error"] = score["error"]
        else:
            row |= quality
    return added


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def run_stem(doc: Mapping[str, Any]) -> str:
    """``<kind>-<YYYYmmdd-HHMMSS>`` from the document's creation time."""
    return f"{doc['kind']}-{dt.datetime.fromisoformat(doc['created']).strftime('%Y%m%d-%H%M%S')}"


def write_results(doc: Mapping[str, Any], folder: Path) -> Path:
    """Write ``doc`` as ``folder/<stem>.json`` plus its rows as ``<stem>.csv`` (a new pair per run, never
    overwriting: ``-2``, ``-3`` ... are added within one second); returns the JSON path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = run_stem(doc)
    path, n = folder / f"{stem}.json", 1
    while path.exists() or path.with_suffix(".csv").exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    write_text(path, json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n")
    columns = csv_columns(doc["kind"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["created", *columns], extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in _finite(doc["rows"]):
        writer.writerow({"created": doc["created"], **{k: "" if row.get(k) is None else row[k] for k in columns}})
    write_text(path.with_suffix(".csv"), buffer.getvalue())
    return path


def read_results(path: Path) -> dict[str, Any]:
    """A results document written by :func:`write_results`; anything else is a :class:`ResultsError`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: cannot read it as results JSON ({one_line(err)})") from None
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS or not isinstance(doc.get("rows"), list):
        raise ResultsError(f"{path}: not a zoo bench/score results file")
    return doc


# --------------------------------------------------------------------------------------------- tables


def results_table(doc: Mapping[str, Any]) -> Table:
    """A table of the rows (:mod:`zoo.tables`): a column per field of :mod:`zoo.harness.schema` that some row
    has a value for (the terminal's selection), then the note or the error."""
    rows = doc["rows"]
    present = [key for key in numeric_keys(rows) if field(key).terminal]
    if any(row.get("model") == "truth" for row in rows) and "psnr" not in present:
        present.insert(0, "psnr")  # the truth's PSNR is infinite (null): the column still belongs
    table = Table(["model", *(field(key).title for key in present), "note"])
    for row in rows:
        note = Styled(row["error"], "red") if row.get("error") else (row.get("note") or "")
        table.add_row(row["model"], *(_cell(row, key) for key in present), note)
    return table


def _cell(row: Mapping[str, Any], key: str) -> str:
    if key == "psnr" and row.get("model") == "truth" and row.get("psnr") is None and not row.get("error"):
        return "inf"
    return field(key).format(row.get(key))


def settings_line(doc: Mapping[str, Any]) -> str:
    """One line on the machine and settings of a results document."""
    m, s = doc["machine"], doc["settings"]
    parts = [m.get("gpu") or m.get("cpu", "?"), f"torch {m.get('torch')}", f"{m.get('threads')} threads"]
    parts += [f"{k} {s[k]}" for k in ("device", "dtype", "protocol", "image_size", "batch_size") if k in s]
    if s.get("matmul_peak_gflops_s"):
        parts.append(f"matmul peak {s['matmul_peak_gflops_s']:.1f} GFLOP/s")
    return ", ".join(str(p) for p in parts)


# --------------------------------------------------------------------------------------------- compare


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Ratios new / old of the compared fields, per model present in both runs, and the settings that differ
    (which make the ratios apples to oranges)."""
    old_rows = {row["model"]: row for row in old["rows"] if not row.get("error")}
    ratios = []
    for row in new["rows"]:
        before = old_rows.get(row["model"])
        if before is None or row.get("error"):
            continue
        entry: dict[str, Any] = {"model": row["model"]}
        for key in (f.key for f in compared_fields()):
            a, b = before.get(key), row.get(key)
            entry[key] = b / a if isinstance(a, int | float) and isinstance(b, int | float) and a else None
        ratios.append(entry)
    differ = [f"{key}: {old['settings'].get(key)!r} -> {new['settings'].get(key)!r}"
              for key in sorted(set(old["settings"]) | set(new["settings"]))
              if key != "matmul_peak_gflops_s" and old["settings"].get(key) != new["settings"].get(key)]
    for key in ("cpu", "gpu", "torch"):
        if old["machine"].get(key) != new["machine"].get(key):
            differ.append(f"machine {key}: {old['machine'].get(key)!r} -> {new['machine'].get(key)!r}")
    return ratios, differ


def compare_table(ratios: list[dict[str, Any]]) -> Table:
    """The ratios of :func:`compare` as a table; green where the change is for the better by over 5 %."""
    fields = [f for f in compared_fields() if any(r.get(f.key) is not None for r in ratios)]
    table = Table(["model", *(f"{f.key} new/old" for f in fields)])
    for entry in ratios:
        cells = []
        for f in fields:
            ratio = entry.get(f.key)
            if ratio is None:
                cells.append("-")
                continue
            better = ratio > 1.05 if f.better else ratio < 0.95
            worse = ratio < 0.95 if f.better else ratio > 1.05
            style = "green" if better else "red" if worse else ""
            cells.append(Styled(f"{ratio:.2f}x", style) if style else f"{ratio:.2f}x")
        table.add_row(entry["model"], *cells)
    return table
