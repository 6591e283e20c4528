"""Results of ``zoo bench`` and ``zoo score``: JSON and CSV files, terminal tables, comparisons, plots, model cards.

A results document (one JSON file per run, ``results/<kind>-<YYYYmmdd-HHMMSS>.json``, and a CSV of its rows
with the same stem) has exactly these top-level keys::

    {"kind": "bench" | "score",
     "created": ISO 8601 local time with offset,
     "machine": {"cpu", "cpu_count", "gpu" (null without CUDA), "cuda" (null without CUDA), "torch", "python",
                 "platform", "threads"},
     "settings": {...},   # bench: BenchSettings (device resolved) plus dtype, matmul_peak_gflops_s, matmul_size,
                          #        memory_method, timing, warmup_rule;
                          # score: data, image_size, batch_size, device, dtype, fid, lpips
     "protocol": {...},   # the scoring protocol (bench.quality.protocol): score runs, and bench runs that scored
     "rows": [{"model": str, "error": str | null, ...}],
     "samples": {model: grid PNG path relative to the JSON's folder}}

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

* ``model``, ``error``; ``checkpoint``: the file scored (null for references); ``images``: photos scored
* ``psnr`` (dB), ``ssim``: against the truth, in RGB
* ``cf``: mean colourfulness of the predictions; ``cf_truth``: of the truth; ``dcf``: mean per-image
  |CF(truth) - CF(prediction)|
* ``ciede2000``: mean CIEDE2000 colour difference
* ``fid``, ``lpips``: with ``--fid`` / ``--lpips``, else null
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from rich.table import Table

from zoo.spec import ArchSpec, ModelSpec
from zoo.stats import millions

KINDS = ("bench", "score")
SPEED_FIELDS = (
    "generator", "note", "batch_size", "oom_retries", "params", "d_params", "gflops", "infer_img_s",
    "latency_ms_median", "latency_ms_p90", "train_g_img_s", "train_gd_img_s", "peak_mem_infer_mib",
    "peak_mem_train_mib", "achieved_gflops_s", "peak_fraction", "timer_ratio",
)
QUALITY_FIELDS = ("checkpoint", "images", "psnr", "ssim", "cf", "cf_truth", "dcf", "ciede2000", "fid", "lpips")
CSV_FIELDS = {
    "bench": ("model", "error", *SPEED_FIELDS, *QUALITY_FIELDS),
    "score": ("model", "error", *QUALITY_FIELDS),
}
# Fields compared by --compare, with whether higher is better.
COMPARED = {
    "infer_img_s": True, "latency_ms_median": False, "train_g_img_s": True, "train_gd_img_s": True,
    "peak_mem_infer_mib": False, "peak_mem_train_mib": False, "psnr": True, "ssim": True, "dcf": False,
    "ciede2000": False,
}


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
             protocol: Mapping[str, Any] | None = None, samples: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A results document (see the module docstring); ``protocol`` is left out when None."""
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
    doc |= {"rows": rows, "samples": dict(samples or {})}
    return doc


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
    path.write_text(json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n")
    fields = CSV_FIELDS[doc["kind"]]
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["created", *fields], extrasaction="ignore")
        writer.writeheader()
        for row in _finite(doc["rows"]):
            writer.writerow({"created": doc["created"], **{k: "" if row.get(k) is None else row[k] for k in fields}})
    return path


def read_results(path: Path) -> dict[str, Any]:
    """A results document written by :func:`write_results`."""
    doc = json.loads(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{path}: not a zoo bench/score results file")
    return doc


# --------------------------------------------------------------------------------------------- tables


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


def _percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def results_table(doc: Mapping[str, Any]) -> Table:
    """A rich table of the rows: speed columns for bench runs, quality columns where scored."""
    rows = doc["rows"]
    scored = any(row.get("psnr") is not None or row.get("model") == "truth" for row in rows)
    columns: list[tuple[str, Any]] = [("model", lambda r: r["model"])]
    if doc["kind"] == "bench":
        columns += [
            ("params", lambda r: millions(r.get("params"))),
            ("GFLOP/img", lambda r: _fmt(r.get("gflops"))),
            ("batch", lambda r: _fmt(r.get("batch_size"))),
            ("infer img/s", lambda r: _fmt(r.get("infer_img_s"), 1)),
            ("lat. med/p90 ms", lambda r: "-" if r.get("latency_ms_median") is None
             else f"{r['latency_ms_median']:.1f}/{r['latency_ms_p90']:.1f}"),
            ("train G img/s", lambda r: _fmt(r.get("train_g_img_s"), 1)),
            ("train G+D img/s", lambda r: _fmt(r.get("train_gd_img_s"), 1)),
            ("mem infer/train MiB", lambda r: "-" if r.get("peak_mem_infer_mib") is None
             else f"{r['peak_mem_infer_mib']:.0f}/{r['peak_mem_train_mib']:.0f}"),
            ("GFLOP/s", lambda r: _fmt(r.get("achieved_gflops_s"), 1)),
            ("of peak", lambda r: _percent(r.get("peak_fraction"))),
        ]
        if any(row.get("timer_ratio") is not None for row in rows):
            columns.append(("vs Timer", lambda r: _fmt(r.get("timer_ratio"))))
    if scored:
        columns += [
            ("PSNR", lambda r: _fmt(r.get("psnr"))),
            ("SSIM", lambda r: _fmt(r.get("ssim"), 4)),
            ("CIEDE2000", lambda r: _fmt(r.get("ciede2000"))),
            ("CF", lambda r: _fmt(r.get("cf"), 1)),
            ("dCF", lambda r: _fmt(r.get("dcf"), 1)),
        ]
        for key, title in (("fid", "FID"), ("lpips", "LPIPS")):
            if any(row.get(key) is not None for row in rows):
                columns.append((title, lambda r, key=key: _fmt(r.get(key), 3)))
    columns.append(("note", lambda r: f"[red]{r['error']}[/red]" if r.get("error") else (r.get("note") or "")))
    table = Table(*(title for title, _ in columns))
    for column in table.columns[:-1]:
        column.no_wrap = True
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    return table


def settings_line(doc: Mapping[str, Any]) -> str:
    """One line on the machine and settings of a results document."""
    m, s = doc["machine"], doc["settings"]
    parts = [m.get("gpu") or m.get("cpu", "?"), f"torch {m.get('torch')}", f"{m.get('threads')} threads"]
    parts += [f"{k} {s[k]}" for k in ("device", "dtype", "image_size", "batch_size") if k in s]
    if s.get("matmul_peak_gflops_s"):
        parts.append(f"matmul peak {s['matmul_peak_gflops_s']:.1f} GFLOP/s")
    return ", ".join(str(p) for p in parts)


# --------------------------------------------------------------------------------------------- compare


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Ratios new / old of the :data:`COMPARED` fields, per model present in both runs, and the settings that
    differ (which make the ratios apples to oranges)."""
    old_rows = {row["model"]: row for row in old["rows"] if not row.get("error")}
    ratios = []
    for row in new["rows"]:
        before = old_rows.get(row["model"])
        if before is None or row.get("error"):
            continue
        entry: dict[str, Any] = {"model": row["model"]}
        for key in COMPARED:
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
    keys = [k for k in COMPARED if any(r.get(k) is not None for r in ratios)]
    table = Table("model", *(f"{k} new/old" for k in keys))
    for entry in ratios:
        cells = []
        for key in keys:
            ratio = entry.get(key)
            if ratio is None:
                cells.append("-")
                continue
            better = ratio > 1.05 if COMPARED[key] else ratio < 0.95
            worse = ratio < 0.95 if COMPARED[key] else ratio > 1.05
            style = "green" if better else "red" if worse else ""
            cells.append(f"[{style}]{ratio:.2f}x[/{style}]" if style else f"{ratio:.2f}x")
        table.add_row(entry["model"], *cells)
    return table


# --------------------------------------------------------------------------------------------- scatter plot

_PLOT_SIZE = (900, 600)
_MARGIN = (90, 40, 40, 70)  # left, top, right, bottom
_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def _nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    raw = (high - low) / max(count - 1, 1) or 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _log_ticks(low: float, high: float) -> list[float]:
    """1, 2, 5 times powers of ten within [low, high]."""
    ticks = [m * 10**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1) for m in (1, 2, 5)]
    return [t for t in ticks if low <= t <= high]


def _span(low: float, high: float, minimum: float) -> tuple[float, float]:
    """[low, high] padded by 10 % on each side and widened about its centre to at least ``minimum``."""
    pad = (high - low) * 0.1
    low, high = low - pad, high + pad
    if high - low < minimum:
        centre = (low + high) / 2
        low, high = centre - minimum / 2, centre + minimum / 2
    return low, high


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def scatter_plot(points: Sequence[tuple[str, float, float]], path: Path, x_label: str, y_label: str,
                 title: str, reference: tuple[str, float] | None = None) -> Path:
    """A PNG scatter plot of labelled ``(label, x, y)`` points, x on a log scale, with an optional horizontal
    reference line ``(label, y)``; drawn with PIL (no plotting library needed)."""
    if not points:
        raise ValueError("no points to plot")
    width, height = _PLOT_SIZE
    left, top, right, bottom = _MARGIN
    xs = [math.log10(x) for _, x, _ in points]
    ys = [y for *_, y in points] + ([reference[1]] if reference else [])
    x_lo, x_hi = _span(min(xs), max(xs), 1.0)  # at least a decade
    y_lo, y_hi = _span(min(ys), max(ys), 1.0)  # at least one unit (1 dB of PSNR)

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (width - left - right)
        py = height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom)
        return px, py

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(13)
    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    for tick in _log_ticks(10**x_lo, 10**x_hi):
        px, _ = to_px(math.log10(tick), y_lo)
        draw.line((px, top, px, height - bottom), fill=(230, 230, 230))
        draw.text((px, height - bottom + 6), f"{tick:g}", fill="black", font=small, anchor="mt")
    for tick in _nice_ticks(y_lo, y_hi):
        _, py = to_px(x_lo, tick)
        draw.line((left, py, width - right, py), fill=(230, 230, 230))
        draw.text((left - 6, py), f"{tick:g}", fill="black", font=small, anchor="rm")
    if reference is not None:
        _, py = to_px(x_lo, reference[1])
        for x0 in range(left, width - right, 12):
            draw.line((x0, py, min(x0 + 6, width - right), py), fill=(90, 90, 90), width=2)
        draw.text((width - right - 4, py - 4), reference[0], fill=(90, 90, 90), font=small, anchor="rb")
    for i, (label, x, y) in enumerate(points):
        px, py = to_px(math.log10(x), y)
        colour = _PALETTE[i % len(_PALETTE)]
        draw.ellipse((px - 6, py - 6, px + 6, py + 6), fill=colour, outline="black")
        at_right = px > width - right - 160  # label on the left of points near the right edge
        anchor = "rb" if at_right else "lb"
        draw.text((px - 9 if at_right else px + 9, py - 9), label, fill=colour, font=small, anchor=anchor)
    draw.text((width / 2, height - 22), x_label, fill="black", font=font, anchor="mm")
    draw.text((width / 2, top / 2), title, fill="black", font=font, anchor="mm")
    y_axis = Image.new("RGB", (height, 24), "white")
    ImageDraw.Draw(y_axis).text((height / 2, 12), y_label, fill="black", font=font, anchor="mm")
    image.paste(y_axis.rotate(90, expand=True), (8, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def quality_speed_plot(rows: Iterable[Mapping[str, Any]], path: Path) -> Path | None:
    """PSNR against inference images/s of the rows that have both (gray's PSNR as a reference line); None if none do."""
    rows = list(rows)
    points = [(r["model"], r["infer_img_s"], r["psnr"]) for r in rows
              if r.get("infer_img_s") and r.get("psnr") is not None and math.isfinite(r["psnr"])]
    if not points:
        return None
    gray = next((r["psnr"] for r in rows if r["model"] == "gray" and r.get("psnr") is not None), None)
    return scatter_plot(points, path, "inference images/s (log scale)", "PSNR (dB)", "quality vs speed",
                        reference=None if gray is None else ("gray (ab = 0)", gray))


# --------------------------------------------------------------------------------------------- model cards


def _table(rows: Iterable[tuple[str, str]]) -> list[str]:
    return ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def _arch(arch: ArchSpec | None) -> str:
    return "none" if arch is None else f"`{arch.arch}` {json.dumps(dict(arch.settings))}"


def _spec_section(spec: ModelSpec, row: Mapping[str, Any], size: int | None) -> list[str]:
    params = f"G {millions(row.get('params'))}"
    if row.get("d_params"):
        params += f", D {millions(row['d_params'])}"
    recipe = " > ".join(f"{st.name} ({st.loss}, {st.epochs} epochs, lr {st.optimizer.lr:g})" for st in spec.stages)
    return ["## Spec", "", *_table([
        ("generator", _arch(spec.generator) + (f" ({row['note']})" if row.get("note") else "")),
        ("discriminator", _arch(spec.discriminator)),
        ("parameters", params),
        ("GFLOPs per image", f"{_fmt(row.get('gflops'))} at {size} px (generator forward)"),
        ("recipe", recipe),
    ])]


def _speed_section(row: Mapping[str, Any], s: Mapping[str, Any]) -> list[str]:
    lines = ["## Speed", ""]
    if row.get("error"):
        return [*lines, f"Not measured: {row['error']}"]
    if row.get("infer_img_s") is None:
        return [*lines, "Not measured (run `zoo bench`)."]
    gd = row.get("train_gd_img_s")
    lines += _table([
        ("inference", f"{_fmt(row['infer_img_s'], 1)} img/s; latency median {_fmt(row['latency_ms_median'], 1)} ms,"
                      f" p90 {_fmt(row['latency_ms_p90'], 1)} ms per batch of {row['batch_size']}"),
        ("training step (G)", f"{_fmt(row.get('train_g_img_s'), 1)} img/s"),
        ("training step (G+D)", "no GAN stage" if gd is None else f"{_fmt(gd, 1)} img/s"),
        ("peak memory", f"inference {_fmt(row.get('peak_mem_infer_mib'), 0)} MiB,"
                        f" training {_fmt(row.get('peak_mem_train_mib'), 0)} MiB ({s.get('memory_method')})"),
        ("achieved", f"{_fmt(row.get('achieved_gflops_s'), 1)} GFLOP/s = {_percent(row.get('peak_fraction'))} of the"
                     f" measured {_fmt(s.get('matmul_peak_gflops_s'), 1)} GFLOP/s {s.get('dtype')} matmul peak"),
        ("settings", f"{s.get('device')}, {s.get('dtype')}, {s.get('image_size')} px, {s.get('iters')} timed"
                     f" iterations after {s.get('warmup')} warm-up, channels_last {s.get('channels_last')},"
                     f" compile {s.get('compile')}"),
    ])
    if row.get("oom_retries"):
        lines.append(f"\nOut of memory at batch {s.get('batch_size')}: measured at batch {row['batch_size']}.")
    return lines


def _quality_section(spec: ModelSpec, row: Mapping[str, Any], references: Sequence[Mapping[str, Any]],
                     sample: str | None) -> list[str]:
    lines = ["## Quality", ""]
    if row.get("psnr") is None:
        return [*lines, f"Not scored: pass `--checkpoints DIR` to `zoo bench`, or run"
                        f" `zoo score {spec.name} --checkpoint RUN/generator.safetensors`."]
    lines += ["| | PSNR (dB) | SSIM | CIEDE2000 | CF | dCF |", "| --- | --- | --- | --- | --- | --- |"]
    for r in (row, *references):
        cells = (_fmt(r.get("psnr")), _fmt(r.get("ssim"), 4), _fmt(r.get("ciede2000")), _fmt(r.get("cf"), 1),
                 _fmt(r.get("dcf"), 1))
        lines.append(f"| {r['model']} | {' | '.join(cells)} |")
    lines.append(f"\nCheckpoint: `{row.get('checkpoint')}`; CF of the truth: {_fmt(row.get('cf_truth'), 1)}.")
    if sample:
        lines += ["", f"![gray | {spec.name} | truth]({sample})"]
    return lines


def model_card(spec: ModelSpec, row: Mapping[str, Any], doc: Mapping[str, Any],
               references: Sequence[Mapping[str, Any]] = (), sample: str | None = None) -> str:
    """A Markdown model card: spec (params, GFLOPs), speed, quality (with the reference rows), protocol, machine."""
    settings = doc["settings"]
    lines = [f"# {spec.name}", "", spec.description or "", ""]
    lines += [*_spec_section(spec, row, settings.get("image_size")), ""]
    lines += [*_speed_section(row, settings), ""]
    lines += [*_quality_section(spec, row, references, sample), ""]
    if "protocol" in doc:
        lines += ["## Protocol", "", *(f"- **{k}**: {v}" for k, v in doc["protocol"].items()), ""]
    lines += ["## Machine", "", *(f"- **{k}**: {v}" for k, v in doc["machine"].items() if v is not None),
              f"- **measured**: {doc['created']}", ""]
    return "\n".join(lines)
