"""One self-contained HTML report from ``zoo bench`` / ``zoo score`` results files.

A results file is JSON (:mod:`zoo.harness.results`). Rows of several files merge by model (the zoo's checkpoints
and other colorizers' prediction folders alike); numeric fields become columns, labelled and ordered by
:mod:`zoo.harness.schema` (unknown fields after). The page holds a sortable leaderboard of the headline fields
that fits the page (every field in a second, folded table), a quality-vs-speed plot per quality field
(:mod:`zoo.harness.plots`, inline SVG, gray and truth as reference lines), the protocol, settings and machine of
each file, and per-model galleries (gray | model | truth, cut from the sample grids, with a before/after
slider). Images are inlined as data URIs and the script and styles are inline: the file opens anywhere, offline.

The references tell the truth at a glance: a value worse than gray's (the input shown as is) is marked
``worse-than-gray`` (dimmed, struck through, a tooltip with gray's value; its sort value stays the number, so
sorting a column puts it below the gray row), and a column's best value is marked only when it is a model's and
better than gray's.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from zoo import outputs
from zoo.errors import ZooError
from zoo.files import write_text
from zoo.harness import plots, schema
from zoo.harness.schema import REFERENCE_ROWS, is_number, numeric_keys

GRAY = REFERENCE_ROWS[0]
PLOT_SIZE = (6.4, 4.0)  # inches at 100 dpi: two plots side by side on a wide page


class ReportError(ZooError, ValueError):
    """A results file that cannot be read; the message names it."""


@dataclass
class Results:
    """One results file."""

    path: Path
    kind: str
    created: str
    rows: list[dict[str, Any]]
    sections: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # protocol, settings, machine
    samples: dict[str, Path] = field(default_factory=dict)  # model -> grid PNG (absolute)
    grids: Mapping[str, Any] | None = None  # how the grids are laid out (columns, padding)


def load_results(path: Path) -> Results:
    """Read and check one results file; sample paths are resolved against its folder."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: cannot read results ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ReportError(f"{path}: not a zoo results file (expected an object with a 'rows' list)")
    rows = [row for row in data["rows"] if isinstance(row, dict) and isinstance(row.get("model"), str)]
    if len(rows) != len(data["rows"]):
        raise ReportError(f"{path}: every row needs a 'model' name")
    sections = {key: data[key] for key in ("protocol", "settings", "machine") if isinstance(data.get(key), dict)}
    samples = {model: path.parent / grid for model, grid in (data.get("samples") or {}).items()}
    grids = data.get("grids") if isinstance(data.get("grids"), dict) else None
    return Results(path, str(data.get("kind", "results")), str(data.get("created", "")), rows, sections, samples,
                   grids)


def merge_rows(results: Iterable[Results]) -> list[dict[str, Any]]:
    """One row per model (and number of hints, for a hint curve's rows), fields of later files over earlier ones;
    errors of every file kept, joined."""
    merged: dict[tuple[str, Any], dict[str, Any]] = {}
    for result in results:
        for row in result.rows:
            target = merged.setdefault((row["model"], row.get("hints")), {"model": row["model"], "error": None})
            target.update({k: v for k, v in row.items() if k not in ("model", "error")})
            if row.get("error"):
                message = f"{result.kind}: {row['error']}"
                target["error"] = f"{target['error']}; {message}" if target["error"] else message
    return list(merged.values())


def quality_speed_svgs(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Inline SVGs, one per quality field with a better direction, of that field against the first speed field
    that rows have (gray and truth as reference lines); none when no row has both."""
    columns = numeric_keys(list(rows))
    x_key = next((f.key for f in schema.group("speed") if f.key in columns and f.better), None)
    if x_key is None:
        return []
    svgs = []
    for y_key in (f.key for f in schema.group("quality") if f.key in columns and f.better is not None):
        figure = plots.quality_plot(rows, x_key, y_key, size=PLOT_SIZE)
        if figure is not None:
            svgs.append(plots.to_svg(figure, f"plot-{y_key}"))
    return svgs


# ------------------------------------------------------------------------------------------- galleries


def split_grid(grid: Image.Image, geometry: Mapping[str, Any] | None) -> list[list[Image.Image]]:
    """Cut a sample grid of square panels into its rows by the ``geometry`` its results file records (``columns``
    and ``padding``: :func:`zoo.harness.results.write_sample_grids`); ``[]`` without one, or for an image that is
    not such a grid."""
    columns, pad = (geometry or {}).get("columns"), (geometry or {}).get("padding")
    if not isinstance(columns, int) or not isinstance(pad, int) or columns < 1 or pad < 0:
        return []
    width, height = grid.size
    side = (width - pad) // columns - pad
    if side <= 0 or (width - pad) % columns or (height - pad) % (side + pad):
        return []
    return [[grid.crop((pad + c * (side + pad), pad + r * (side + pad), pad + c * (side + pad) + side,
                        pad + r * (side + pad) + side)) for c in range(columns)]
            for r in range((height - pad) // (side + pad))]


def data_uri(image: Image.Image, quality: int = 90) -> str:
    """``image`` as an inline JPEG data URI."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _gallery(model: str, grid_path: Path, geometry: Mapping[str, Any] | None, max_rows: int) -> str:
    name = html.escape(model)
    try:
        with Image.open(grid_path) as grid:
            grid.load()
            rows = split_grid(grid, geometry)
            whole = data_uri(grid) if not rows else ""
    except OSError as exc:
        return f'<section class="gallery"><h3>{name}</h3><p class="note">sample grid unreadable: ' \
               f'{html.escape(str(grid_path))} ({html.escape(str(exc))})</p></section>'
    if not rows:
        return f'<section class="gallery"><h3>{name}</h3><img class="grid" alt="{name} samples" src="{whole}"></section>'
    figures = []
    for index, (gray, colour, truth) in enumerate(rows[:max_rows]):
        alt = f"{name} sample {index + 1}"
        figures.append(
            '<figure class="sample">'
            f'<div class="compare" style="--pos: 50%"><img class="gray" alt="{alt}, gray input" src="{data_uri(gray)}">'
            f'<img class="color" alt="{alt}, {name}" src="{data_uri(colour)}">'
            f'<input type="range" min="0" max="100" value="50" aria-label="{alt}: gray / {name}"></div>'
            f'<img class="truth" alt="{alt}, ground truth" src="{data_uri(truth)}">'
            f'<figcaption>gray ⟷ {name} (drag) | truth</figcaption></figure>'
        )
    return f'<section class="gallery" data-model="{name}"><h3>{name}</h3>{"".join(figures)}</section>'


# ------------------------------------------------------------------------------------------- page


def _leaderboard(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """The headline fields (the terminal table's selection, :attr:`Field.terminal`) in a table that fits the page,
    what its marks mean, and every field in a second table, folded, when there are more."""
    headline = [key for key in columns if schema.field(key).terminal]
    leaderboard = _table(rows, headline, "leaderboard") + _key(headline)
    if headline == columns:
        return leaderboard
    return (f'{leaderboard}<details><summary>All {len(columns)} fields</summary>'
            f'<div class="scroll">{_table(rows, columns, "all-fields")}</div></details>')


def _table(rows: list[dict[str, Any]], columns: list[str], table_id: str) -> str:
    """A sortable table of ``columns`` with the best and the worse-than-gray values marked."""
    heads = ['<th data-type="text" data-better="lower" scope="col">model</th>']
    for key in columns:
        f = schema.field(key)
        direction = {True: "higher", False: "lower", None: "higher"}[f.better]
        tip = f"{key}: {f.description}" if f.description else key
        heads.append(f'<th data-type="number" data-key="{html.escape(key)}" data-better="{direction}" scope="col" '
                     f'title="{html.escape(tip)}">{html.escape(f.title).replace("/", "/<wbr>")}</th>')
    has_errors = any(row["error"] for row in rows)
    if has_errors:
        heads.append('<th data-type="text" data-better="lower" scope="col">error</th>')
    gray = next((row for row in rows if row["model"] == GRAY), {})
    best = {key: _best(rows, key, gray.get(key)) for key in columns}
    body = []
    for row in rows:
        cells = [f'<th scope="row" data-value="{html.escape(row["model"])}">{html.escape(row["model"])}</th>']
        for key in columns:
            value = row.get(key)
            if not is_number(value):
                cells.append('<td data-value="">–</td>')
                continue
            marks, tip = [], ""
            if value == best[key]:
                marks.append("best")
            if row["model"] not in REFERENCE_ROWS and _worse(key, value, gray.get(key)):
                marks.append("worse-than-gray")
                tip = f' title="worse than gray ({schema.field(key).format(gray[key])})"'
            mark = f' class="{" ".join(marks)}"' if marks else ""
            cells.append(f'<td data-value="{value!r}"{mark}{tip}>{schema.field(key).format(value)}</td>')
        if has_errors:
            cells.append(f'<td class="error" data-value="{html.escape(row["error"] or "")}">{html.escape(row["error"] or "")}</td>')
        reference = ' class="reference"' if row["model"] in REFERENCE_ROWS else ""
        body.append(f'<tr data-model="{html.escape(row["model"])}"{reference}>{"".join(cells)}</tr>')
    return (f'<table id="{table_id}" class="scores"><thead><tr>{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _worse(key: str, value: float, gray: Any) -> bool:
    """Whether ``value`` of field ``key`` is worse than gray's (False where the field has no direction)."""
    better = schema.field(key).better
    return better is not None and is_number(gray) and (value < gray if better else value > gray)


def _best(rows: list[dict[str, Any]], key: str, gray: Any) -> float | None:
    """The best value of ``key`` among the models (never a reference row), if there are two to rank and it is
    not worse than gray's; else None."""
    better = schema.field(key).better
    values = [row[key] for row in rows if is_number(row.get(key)) and row["model"] not in REFERENCE_ROWS]
    if better is None or len(values) < 2:
        return None
    best = max(values) if better else min(values)
    return None if _worse(key, best, gray) or best == gray else best


def _key(columns: list[str]) -> str:
    """What the marks mean, and the fields a reader must know more about than their label."""
    notes = [f"<dt>{html.escape(schema.field(k).title)}</dt><dd>{html.escape(schema.field(k).description)}</dd>"
             for k in columns if schema.field(k).description]
    return ('<p class="note">Bold green: a column\'s best model, where it beats gray. <span class="worse-than-gray">'
            'Struck through</span>: worse than gray (ab = 0, the input shown as is). Reference rows in italics.</p>'
            + (f'<dl class="fields">{"".join(notes)}</dl>' if notes else ""))


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            items.append((f"{prefix}{key}", text))
    return items


def _protocol(results: Sequence[Results]) -> str:
    parts = []
    for result in results:
        created = f", {html.escape(result.created)}" if result.created else ""
        parts.append(f'<section class="protocol"><h3>{html.escape(result.kind)}: {html.escape(result.path.name)}'
                     f'{created}</h3>')
        for name, section in result.sections.items():
            rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _flatten(section))
            parts.append(f'<h4>{html.escape(name)}</h4><table class="facts">{rows}</table>')
        parts.append("</section>")
    return "".join(parts)


_STYLE = """
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #fafafa; }
body { margin: 0 auto; max-width: 1500px; padding: 1.5rem 1rem; }
h1 { margin-top: 0; } h2 { border-bottom: 1px solid #d6d9e0; padding-bottom: .3rem; margin-top: 2.2rem; }
table { border-collapse: collapse; background: #fff; }
.scores { width: 100%; font-size: .85rem; }
.scores th, .scores td { padding: .3rem .3rem; border-bottom: 1px solid #e3e5ea; text-align: right; }
.scores td { white-space: nowrap; }
.scores th[scope=row], .scores thead th:first-child { text-align: left; min-width: 6rem; }
.scores thead th { cursor: pointer; user-select: none; background: #eef0f4; vertical-align: bottom; font-size: .8rem; }
.scores thead th[aria-sort=ascending]::after { content: " ▲"; }
.scores thead th[aria-sort=descending]::after { content: " ▼"; }
.scores td.best { font-weight: 700; color: #0b6b3a; }
.worse-than-gray { color: #8a5a5a; text-decoration: line-through; text-decoration-color: #c98a8a; }
.scores tr.reference { font-style: italic; color: #555c6b; }
.scores td.error { color: #a12020; text-align: left; white-space: normal; min-width: 5rem; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; } details { margin-top: .8rem; } summary { cursor: pointer; color: #555c6b; }
.fields { font-size: .85rem; display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; }
.fields dt { font-weight: 600; } .fields dd { margin: 0; color: #555c6b; }
.facts th, .facts td { text-align: left; padding: .15rem .8rem .15rem 0; font-size: .9rem; vertical-align: top; }
.facts th { color: #555c6b; font-weight: 500; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 1rem; }
.plots svg { width: 100%; height: auto; }
.gallery { margin-bottom: 1.5rem; } .gallery h3 { margin-bottom: .4rem; }
.sample { display: inline-block; margin: 0 1rem 1rem 0; }
.sample img, .compare { width: 192px; height: 192px; }
.compare { position: relative; display: inline-block; vertical-align: top; }
.compare img { position: absolute; inset: 0; }
.compare .color { clip-path: inset(0 calc(100% - var(--pos)) 0 0); }
.compare input { position: absolute; left: 0; right: 0; bottom: 4px; width: 100%; margin: 0; }
.sample .truth { margin-left: 4px; vertical-align: top; }
figcaption { font-size: .8rem; color: #555c6b; } .note { color: #555c6b; }
"""

_SCRIPT = """
(function () {
  document.querySelectorAll("table.scores").forEach((table) => {
    const heads = Array.from(table.tHead.rows[0].cells);
    const value = (row, index, numeric) => {
      const raw = row.cells[index].dataset.value;
      return raw === "" ? null : numeric ? Number(raw) : raw;
    };
    heads.forEach((head, index) => head.addEventListener("click", () => {
      const numeric = head.dataset.type === "number";
      const bestFirst = head.dataset.better === "higher" ? "descending" : "ascending";
      const current = head.getAttribute("aria-sort");
      const order = current ? (current === "ascending" ? "descending" : "ascending") : bestFirst;
      heads.forEach((other) => other.removeAttribute("aria-sort"));
      head.setAttribute("aria-sort", order);
      const sign = order === "ascending" ? 1 : -1;
      const rows = Array.from(table.tBodies[0].rows);
      rows.sort((a, b) => {
        const x = value(a, index, numeric), y = value(b, index, numeric);
        if (x === null || y === null) return (x === null) - (y === null);  // missing values last
        return sign * (numeric ? x - y : String(x).localeCompare(String(y)));
      });
      rows.forEach((row) => table.tBodies[0].appendChild(row));
    }));
  });
  document.querySelectorAll(".compare input[type=range]").forEach((input) => {
    const update = () => input.parentElement.style.setProperty("--pos", input.value + "%");
    input.addEventListener("input", update);
    update();
  });
})();
"""


def build_report(results: Sequence[Results], title: str = "colorization-zoo report", max_rows: int = 6) -> str:
    """The report page as one HTML string."""
    rows = merge_rows(results)
    columns = numeric_keys(rows)
    svgs = quality_speed_svgs(rows)
    plots_html = f'<div class="plots">{"".join(svgs)}</div>' if svgs else \
        '<p class="note">No model has both a speed and a quality field to plot.</p>'
    curve = plots.hint_curve_plot(rows, size=(2 * PLOT_SIZE[0], PLOT_SIZE[1]))
    hints_html = "" if curve is None else f"<h2>Quality against hints</h2>\n{plots.to_svg(curve, 'plot-hints')}"
    samples: dict[str, tuple[Path, Mapping[str, Any] | None]] = {}
    for result in results:
        samples.update({model: (path, result.grids) for model, path in result.samples.items()})
    galleries = "".join(_gallery(model, path, grids, max_rows) for model, (path, grids) in samples.items())
    sources = ", ".join(html.escape(r.path.name) for r in results)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">From {sources}; generated {generated}. Click a column header to sort, again to reverse.</p>
<h2>Leaderboard</h2>
{_leaderboard(rows, columns)}
<h2>Quality against speed</h2>
{plots_html}
{hints_html}
<h2>Samples</h2>
{galleries or '<p class="note">The results name no sample grids.</p>'}
<h2>Protocol</h2>
{_protocol(results)}
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(paths: Sequence[Path], out: Path, title: str = "colorization-zoo report", max_rows: int = 6,
                 overwrite: bool = False) -> Path:
    """Read the results files at ``paths`` and write the report to ``out``: not one of the files it reads, and
    not an existing file unless ``overwrite`` (:func:`zoo.outputs.output_file`)."""
    results = [load_results(path) for path in paths]
    grids = [grid for result in results for grid in result.samples.values()]
    outputs.output_file(out, inputs=[*paths, *grids], overwrite=overwrite)
    return write_text(Path(out), build_report(results, title, max_rows))
