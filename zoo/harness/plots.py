"""The harness's plots, drawn with matplotlib (no pyplot state): PNG files for ``zoo bench``, inline SVG for
the HTML report, from one function.

:func:`quality_plot` draws quality (y) against a speed or budget field (x), one labelled point per model, with
the reference rows (gray, truth) as horizontal lines where they have a finite value, never as points; every
quality plot of the harness (``zoo bench``'s PNG, the report's SVGs, ``zoo leaderboard``'s budget plot) is one.
:func:`hint_curve_plot` draws quality against the number of simulated hints (``zoo score --hints``), a line per
model and gray's curve dashed beside them.
In SVG, the markers are the group ``<id>-points`` and the reference lines ``<id>-reference-gray`` and
``<id>-reference-truth``, every id prefixed with the SVG's own so that several plots share a page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from zoo.files import write_bytes
from zoo.harness.schema import REFERENCE_ROWS, field, is_number

POINTS_ID = "points"  # the SVG group of the models' markers (one <use> each)
REFERENCE_ID = "reference"  # the SVG groups of the reference lines: reference-gray, reference-truth


def plot_points(rows: Iterable[Mapping[str, Any]], x_key: str, y_key: str,
                series: str = "model") -> list[tuple[str, float, float]]:
    """``(label, x, y)`` of the non-reference rows with finite, positive x and finite y; the label is the
    row's ``series`` field (its model name by default)."""
    return [(str(r.get(series, r["model"])), float(r[x_key]), float(r[y_key])) for r in rows
            if r["model"] not in REFERENCE_ROWS and is_number(r.get(x_key)) and r[x_key] > 0 and is_number(r.get(y_key))]


def quality_plot(rows: Iterable[Mapping[str, Any]], x_key: str, y_key: str, title: str = "",
                 log_x: bool | None = None, series: str = "model", size: tuple[float, float] = (8, 5)) -> Any | None:
    """A matplotlib Figure of ``y_key`` against ``x_key`` (None when no row has both), references as lines;
    ``size`` in inches (100 dpi).

    Rows with the same ``series`` value (a model at several budgets) are one line of markers, labelled once.
    ``log_x`` None: a log axis when x spans more than a factor of 20.
    """
    from matplotlib.figure import Figure

    rows = list(rows)
    points = plot_points(rows, x_key, y_key, series)
    if not points:
        return None
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    axes = figure.add_subplot()
    groups: dict[str, list[tuple[float, float]]] = {}
    for label, x, y in points:
        groups.setdefault(label, []).append((x, y))
    colours = {label: f"C{i % 10}" for i, label in enumerate(groups)}
    markers = axes.scatter([p[1] for p in points], [p[2] for p in points], s=60, c=[colours[p[0]] for p in points],
                           edgecolors="black", zorder=3)
    markers.set_gid(POINTS_ID)
    for label, xy in groups.items():
        xy.sort()
        if len(xy) > 1:
            axes.plot(*zip(*xy), color=colours[label], linewidth=1.5, zorder=2)
        axes.annotate(label, xy[-1], xytext=(6, 6), textcoords="offset points", color=colours[label], fontsize=9)
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    for reference in REFERENCE_ROWS:
        value = next((r.get(y_key) for r in rows if r["model"] == reference), None)
        if is_number(value):
            line = axes.axhline(value, color="0.45", linestyle="--", linewidth=1.2, zorder=1)
            line.set_gid(f"{REFERENCE_ID}-{reference}")
            axes.annotate(f"{reference}", (1, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                          textcoords="offset points", ha="right", color="0.35", fontsize=9)
    if log_x if log_x is not None else max(xs) / min(xs) > 20:
        axes.set_xscale("log")
    axes.margins(x=0.12)  # room for the labels of the outermost points
    x_field, y_field = field(x_key), field(y_key)
    direction = {True: " (higher is better)", False: " (lower is better)", None: ""}[y_field.better]
    axes.set_xlabel(x_field.title)
    axes.set_ylabel(y_field.title + direction)
    axes.grid(True, color="0.9")
    if title:
        axes.set_title(title)
    _pad_y(axes, ys)
    return figure


def _pad_y(axes: Any, ys: list[float]) -> None:
    """A y range of at least 5 % of the values' magnitude (about 1 dB of PSNR, 0.05 of SSIM) around the points,
    so that close values stay apart without a flat metric filling the plot."""
    low, high = axes.get_ylim()
    span = 0.05 * max(abs(y) for y in ys)
    if high - low < span:
        centre = (min(ys) + max(ys)) / 2
        axes.set_ylim(min(low, centre - span / 2), max(high, centre + span / 2))


def hint_curve_plot(rows: Iterable[Mapping[str, Any]], y_keys: tuple[str, ...] = ("psnr", "ciede2000"),
                    size: tuple[float, float] = (10, 4)) -> Any | None:
    """A matplotlib Figure with a panel per field of ``y_keys`` against the number of hints: one line per model
    over its rows with ``hints`` set, gray's in dashed gray (the spreading alone, on ab = 0); None when no row has
    hints."""
    from matplotlib.figure import Figure

    curves: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    for row in rows:
        if is_number(row.get("hints")):
            curves.setdefault(row["model"], []).append((int(row["hints"]), row))
    if not curves:
        return None
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    models = [name for name in curves if name not in REFERENCE_ROWS]
    for index, y_key in enumerate(y_keys):
        axes = figure.add_subplot(1, len(y_keys), index + 1)
        for number, name in enumerate([*models, *(n for n in curves if n in REFERENCE_ROWS)]):
            points = sorted((count, row[y_key]) for count, row in curves[name] if is_number(row.get(y_key)))
            if not points:
                continue
            style = dict(color="0.45", linestyle="--") if name in REFERENCE_ROWS else dict(color=f"C{number % 10}")
            axes.plot(*zip(*points), marker="o", markersize=4, linewidth=1.5, label=name, **style)
        y_field = field(y_key)
        direction = {True: " (higher is better)", False: " (lower is better)", None: ""}[y_field.better]
        axes.set_xlabel("simulated hints per photo")
        axes.set_ylabel(y_field.title + direction)
        axes.grid(True, color="0.9")
        axes.legend(fontsize=8)
    return figure


def save_png(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG (atomically)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue())


def to_svg(figure: Any, element_id: str = "plot") -> str:
    """``figure`` as an inline ``<svg id=element_id>`` element (no XML prolog, fonts as paths), every id inside
    prefixed with ``element_id-`` (and every reference to one), so that several plots can share a page."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "zoo"}):
        figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'(\bid="|href="#|url\(#)', rf"\g<1>{element_id}-", svg)
    return svg.replace("<svg ", f'<svg id="{element_id}" role="img" ', 1)


def quality_speed_plot(rows: Iterable[Mapping[str, Any]], path: Path) -> Path | None:
    """PSNR against inference images/s as a PNG (gray and truth as lines); None when no row has both."""
    figure = quality_plot(rows, "infer_img_s", "psnr", "quality vs speed", log_x=True)
    return None if figure is None else save_png(figure, path)
