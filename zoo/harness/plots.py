"""The harness's plots, drawn with matplotlib (no pyplot state): PNG files for ``zoo bench``, inline SVG for
the HTML report, from one function.

:func:`quality_plot` draws quality (y) against a speed or budget field (x), one labelled point per model, with
the reference rows (gray, truth) as horizontal lines where they have a finite value, never as points.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from zoo.files import write_bytes
from zoo.harness.schema import REFERENCE_ROWS, field, is_number

POINTS_ID = "points"  # the SVG group of the models' markers (one <use> each)


def plot_points(rows: Iterable[Mapping[str, Any]], x_key: str, y_key: str) -> list[tuple[str, float, float]]:
    """``(model, x, y)`` of the non-reference rows with finite, positive x and finite y."""
    return [(r["model"], float(r[x_key]), float(r[y_key])) for r in rows if r["model"] not in REFERENCE_ROWS
            and is_number(r.get(x_key)) and r[x_key] > 0 and is_number(r.get(y_key))]


def quality_plot(rows: Iterable[Mapping[str, Any]], x_key: str, y_key: str, title: str = "",
                 log_x: bool | None = None) -> Any | None:
    """A matplotlib Figure of ``y_key`` against ``x_key`` (None when no row has both), references as lines.

    ``log_x`` None: a log axis when x spans more than a factor of 20.
    """
    from matplotlib.figure import Figure

    rows = list(rows)
    points = plot_points(rows, x_key, y_key)
    if not points:
        return None
    figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    colours = [f"C{i % 10}" for i in range(len(points))]
    markers = axes.scatter(xs, ys, s=60, c=colours, edgecolors="black", zorder=3)
    markers.set_gid(POINTS_ID)
    for (model, x, y), colour in zip(points, colours):
        axes.annotate(model, (x, y), xytext=(6, 6), textcoords="offset points", color=colour, fontsize=9)
    for reference in REFERENCE_ROWS:
        value = next((r.get(y_key) for r in rows if r["model"] == reference), None)
        if is_number(value):
            axes.axhline(value, color="0.45", linestyle="--", linewidth=1.2, zorder=2)
            axes.annotate(f"{reference}", (1, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                          textcoords="offset points", ha="right", color="0.35", fontsize=9)
    if log_x if log_x is not None else max(xs) / min(xs) > 20:
        axes.set_xscale("log")
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
    """At least one unit of y range (1 dB of PSNR) around the points, so that close values stay apart."""
    low, high = axes.get_ylim()
    if high - low < 1.0:
        centre = (min(ys) + max(ys)) / 2
        axes.set_ylim(min(low, centre - 0.5), max(high, centre + 0.5))


def save_png(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG (atomically)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes(path, buffer.getvalue())


def to_svg(figure: Any, element_id: str = "plot") -> str:
    """``figure`` as an inline ``<svg id=element_id>`` element (no XML prolog, fonts as paths)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "zoo"}):
        figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    return svg.replace("<svg ", f'<svg id="{element_id}" role="img" ', 1)


def quality_speed_plot(rows: Iterable[Mapping[str, Any]], path: Path) -> Path | None:
    """PSNR against inference images/s as a PNG (gray and truth as lines); None when no row has both."""
    figure = quality_plot(rows, "infer_img_s", "psnr", "quality vs speed", log_x=True)
    return None if figure is None else save_png(figure, path)
