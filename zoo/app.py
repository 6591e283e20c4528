"""``zoo app``: colorize and correct photos in a browser, and the same from scripts through an API.

One path through it::

    ModelChoices(shipped models, --checkpoint files, --model names)  -> loaded once each, on first use
    drop photos -> pick one and a model -> GuidedPhoto: the model runs once, its colours are kept
    click the photo -> the colour picker opens on the colour the model puts there (GuidedPhoto.suggest)
    add, move or remove hints -> new colours from the kept prediction (GuidedPhoto.ab: one solve a hint)
    how far the colour goes, per hint (Hint.spread): nearby; only here (a small thing); everything like it;
      the hint being made is shown each way (three small previews): a click on one adds it so
    gray | colour on a before/after slider (a preview); "Full resolution" writes the file as zoo colorize does
    POST /colorize (gradio_client): a photo file, a model name, hints as --hints JSON -> the colour file

It calls the colorizer and the hints code and has nothing of its own but the page. Gradio is an optional extra
(``pip install 'colorization-zoo[app]'``), imported only here. The app listens on 127.0.0.1 unless told
otherwise, makes no share link, sends no analytics, and runs one job at a time (a CPU colorizes one photo at
a time fastest). A file that is not a photo, a photo over the size limit or a model that fails is a plain
message on the page and an error of the API call; the app goes on serving. Ctrl-C or SIGTERM stops it, and the
photos sent to it and the results it wrote, all in one temporary folder of its own, are deleted then.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before Gradio is imported: it reads it then
import gradio as gr

from zoo.errors import ZooError, one_line
from zoo.hints import SPREADS, Hint, HintError, check_inside, hint_from_record, parse_hints
from zoo.images import BadImageError

PREVIEW = 1024  # longest side of the images the page shows while hints change
KEPT_PHOTOS = 4  # photos whose model colours stay in memory at once (a 12 MP photo's session is ~100 MB)
DAY = 86_400  # seconds: Gradio's copies of photos and results older than this go while the app runs, all when it stops
DEFAULT_MAX_MEGAPIXELS = 50.0
HINT_COLUMNS = ["x", "y", "color", "size", "spread"]
TRIAL = 480  # longest side of the three tries of a hint, one per spread
SPREAD_WORDS = {  # Hint.spread (zoo.hints.SPREADS): the radio's words, the try's caption
    "nearby": ("Nearby: along similar lightness, up to edges", "Nearby"),
    "here": ("Only here: a small thing (a beak, a button)", "Only here"),
    "alike": ("Everything like it: what the model coloured like this spot, anywhere (a sky, a field)",
              "Everything like it"),
}


class AppError(ZooError):
    """What the page shows instead of a result: one line naming the file and the problem."""


@dataclass
class ModelChoices:
    """The models the page offers, by the name it shows: each loads on first use and stays loaded."""

    sources: dict[str, tuple[str | None, Path | None]]  # shown name -> (registry model, checkpoint path)
    loaded: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def gather(cls, models: Sequence[str] = (), checkpoints: Sequence[Path] = ()) -> ModelChoices:
        """The default model first, then every other model with shipped weights (less the alternatives a model's
        hints choose among: a part of that model, not a colorizer of its own), ``models`` (registry names or
        ``hf:OWNER/REPO``, fetched now) and each checkpoint (a file or a Hub folder, shown as ``model (file)``)."""
        from zoo.checkpoint import read_meta
        from zoo.hub import fetch, folder_checkpoint, is_hub_name
        from zoo.spec import default_model, model_specs, weights_path

        sources: dict[str, tuple[str | None, Path | None]] = {}
        default = default_model()
        specs = model_specs()
        parts = {spec.choices for spec in specs.values()}
        shipped = [name for name in specs if weights_path(name) is not None and name not in parts]
        for name in [*([default] if default in shipped else []), *sorted(set(shipped) - {default}), *models]:
            sources[name] = (None, fetch(name)) if is_hub_name(name) else (name, None)
        for path in checkpoints:
            model = read_meta(folder_checkpoint(Path(path)) if Path(path).is_dir() else Path(path))["model"]
            sources[f"{model} ({Path(path).name})"] = (model, Path(path))
        return cls(sources)

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    def colorizer(self, name: str) -> Any:
        """The loaded :class:`zoo.colorizer.Colorizer` of the model shown as ``name``."""
        from zoo.colorizer import Colorizer

        if name not in self.sources:
            raise AppError(f"unknown model {name!r} (this app offers {', '.join(self.sources)})")
        with self.lock:
            if name not in self.loaded:
                model, path = self.sources[name]
                try:
                    self.loaded[name] = Colorizer.from_checkpoint(path, model, "cpu")
                except (ZooError, OSError) as err:
                    raise AppError(f"model {name!r} cannot be loaded: {one_line(err)}") from None
            return self.loaded[name]


@dataclass
class Sessions:
    """The photos whose model colours are kept (:class:`zoo.guided.GuidedPhoto`), the most recent few."""

    models: ModelChoices
    max_pixels: int
    kept: OrderedDict[tuple[str, str], Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def photo(self, path: str | Path, model: str) -> Any:
        """The guided session of photo ``path`` under ``model``, made (the model run) if not kept."""
        from zoo.guided import GuidedPhoto
        from zoo.images import read_source, upright_size

        key = (str(path), model)
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
                return self.kept[key]
        name = Path(path).name
        try:
            width, height = upright_size(Path(path))
            if width * height > self.max_pixels:
                raise AppError(f"{name}: {width} x {height} is {width * height / 1e6:.1f} megapixels, over this"
                               f" app's limit of {self.max_pixels / 1e6:.0f} (zoo app --max-megapixels)")
            source = read_source(Path(path))
        except BadImageError as err:
            raise AppError(f"{name}: {err.reason}") from None
        colorizer = self.models.colorizer(model)
        try:
            session = GuidedPhoto(colorizer, source)
            session.colourings()  # the model runs here (and its alternatives, if any), not on the first hint
        except Exception as err:  # noqa: BLE001 - a model that fails on a photo is a message, not a crash
            raise AppError(f"{name}: model {model!r} failed: {type(err).__name__}: {one_line(err)}") from None
        with self.lock:
            self.kept[key] = session
            while len(self.kept) > KEPT_PHOTOS:
                self.kept.popitem(last=False)
        return session


def hints_from_rows(rows: Any, size: tuple[int, int], where: str) -> list[Hint]:
    """The hints of the page's table (rows of x, y, colour, size, spread; blank rows skipped), checked against a
    photo of ``size``; AppError naming the row otherwise."""
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
    hints = []
    for index, row in enumerate(values, 1):
        cells = [None if cell is None or str(cell).strip() in ("", "nan") else cell for cell in list(row) + [None] * 5]
        if all(cell is None for cell in cells[:4]):
            continue
        record = {"x": _number(cells[0]), "y": _number(cells[1]), "color": str(cells[2] or "").strip()}
        if cells[3] is not None:
            record["size"] = _number(cells[3])
        if cells[4] is not None:
            record["spread"] = str(cells[4]).strip().lower()
        try:
            hints.append(hint_from_record(record))
        except ValueError as err:
            raise AppError(f"{where}: hint {index}: {one_line(err)}") from None
    try:
        check_inside(hints, size, where)
    except HintError as err:
        raise AppError(str(err)) from None
    return hints


def _number(cell: Any) -> Any:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return cell
    return int(value) if value == int(value) else value


def write_result(session: Any, hints: Sequence[Hint], folder: Path, name: str) -> Path:
    """The full-resolution colour photo of ``session`` with ``hints``, written to ``folder/name`` as ``zoo
    colorize`` writes it (same size, upright, the input's format family)."""
    from zoo.colorizer import save_output

    target = folder / name
    save_output(session.source, session.ab(hints), target)
    return target


def colorize_file(sessions: Sessions, path: str, model: str, hints_json: str, folder: Path) -> Path:
    """What ``/colorize`` does: ``path`` colorized by ``model`` with the hints of ``hints_json`` (a JSON list as
    ``--hints`` files hold), written into ``folder``."""
    name = Path(path).name
    session = sessions.photo(path, model)
    try:
        hints = parse_hints(hints_json or "[]", "hints")
        check_inside(hints, session.size, "hints")
    except HintError as err:
        raise AppError(str(err)) from None
    return write_result(session, hints, Path(tempfile.mkdtemp(dir=folder)), name)


def build_app(models: ModelChoices, max_pixels: int, work: Path) -> Any:
    """The Gradio page (see the module docstring); results are written under ``work``."""
    sessions = Sessions(models, max_pixels)

    def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with every AppError shown as the page's error message (and the API call's error)."""
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except AppError as err:
                raise gr.Error(str(err), print_exception=False) from None
            except Exception as err:  # a bug shows as one line on the page too; the server's log has the trace
                raise gr.Error(f"unexpected {type(err).__name__}: {one_line(err)}") from err
        return call

    def names(files: list[str] | None) -> Any:
        choices = [(Path(f).name, f) for f in files or []]
        return gr.update(choices=choices, value=choices[0][1] if choices else None)

    def show(path: str | None, model: str, rows: Any, progress: Any = gr.Progress()) -> tuple[Any, Any, str]:
        if not path:
            return None, None, "Drop a photo to start."
        progress(0.2, desc="colorizing")
        session = sessions.photo(path, model)
        hints = hints_from_rows(rows, session.size, Path(path).name)
        colour = session.preview(hints, PREVIEW)
        gray = colour.convert("L").convert("RGB")
        width, height = session.size
        note = f"{Path(path).name}: {width} x {height}, {len(hints)} hint(s). Click the photo to add one."
        return marked(colour, hints, session.size), (gray, colour), note

    def clicked(path: str | None, model: str, rows: Any, evt: gr.SelectData) -> tuple[str, list[int], str]:
        if not path:
            raise AppError("drop a photo first")
        session = sessions.photo(path, model)
        x, y = _full_resolution_point(evt.index, session.size)
        hints = hints_from_rows(rows, session.size, Path(path).name)
        proposed = session.suggest(x, y, hints)
        return proposed.hex, [x, y], f"Point ({x}, {y}): the colours there now are {proposed.hex}. Pick a colour, then Add hint."

    def add(rows: Any, point: list[int] | None, colour: str, size: float, spread: str) -> list[list[Any]]:
        if not point:
            raise AppError("click the photo where the hint goes first")
        return [*_rows(rows), [point[0], point[1], colour, int(size), spread]]

    def tries(path: str | None, model: str, rows: Any, point: list[int] | None, colour: str,
              size: float) -> list[tuple[Any, str]]:
        """The photo with the hint being made spread each way: a person sees which is right before adding it."""
        if not path or not point:
            return []
        session = sessions.photo(path, model)
        hints = hints_from_rows(rows, session.size, Path(path).name)
        try:
            hint = hint_from_record({"x": point[0], "y": point[1], "color": colour, "size": int(size)})
        except ValueError as err:
            raise AppError(f"hint colour: {one_line(err)}") from None
        return [(marked(image, [*hints, hint], session.size), SPREAD_WORDS[spread][1])
                for spread, image in session.tries(hints, hint, TRIAL).items()]

    def add_tried(rows: Any, point: list[int] | None, colour: str, size: float,
                  evt: gr.SelectData) -> list[list[Any]]:
        return add(rows, point, colour, size, SPREADS[evt.index])

    def move(rows: Any, point: list[int] | None, number: float) -> list[list[Any]]:
        table = _rows(rows)
        index = int(number) - 1
        if not point or not 0 <= index < len(table):
            raise AppError(f"no hint {int(number)} to move (there are {len(table)}), or no point clicked")
        table[index][:2] = point
        return table

    def remove(rows: Any, number: float) -> list[list[Any]]:
        table = _rows(rows)
        index = int(number) - 1
        if not 0 <= index < len(table):
            raise AppError(f"no hint {int(number)} to remove (there are {len(table)})")
        return table[:index] + table[index + 1:]

    def full(path: str | None, model: str, rows: Any, progress: Any = gr.Progress()) -> str:
        if not path:
            raise AppError("drop a photo first")
        progress(0.3, desc="rendering at full resolution")
        session = sessions.photo(path, model)
        hints = hints_from_rows(rows, session.size, Path(path).name)
        return str(write_result(session, hints, Path(tempfile.mkdtemp(dir=work)), Path(path).name))

    def api(image: str, model: str, hints: str) -> str:
        if not image:
            raise AppError("no image given")
        return str(colorize_file(sessions, image, model or models.names[0], hints, work))

    with gr.Blocks(title="colorization-zoo", analytics_enabled=False, delete_cache=(DAY, DAY)) as page:
        gr.Markdown("# colorization-zoo\nDrop photos, pick a model, click the photo to tell it what colour a thing is.")
        point = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                photos = gr.File(label="Photos", file_count="multiple", file_types=["image"], type="filepath",
                                 elem_id="photos")
                chosen = gr.Dropdown(label="Photo", choices=[], elem_id="photo-choice")
                model = gr.Dropdown(label="Model", choices=models.names, value=models.names[0], elem_id="model")
                colour = gr.ColorPicker(label="Hint colour", value="#c0392b", elem_id="hint-colour")
                size = gr.Slider(1, 64, value=9, step=1, label="Hint size (pixels of the photo)", elem_id="hint-size")
                spread = gr.Radio(label="How far the colour goes", value="nearby", elem_id="hint-spread",
                                  choices=[(SPREAD_WORDS[value][0], value) for value in SPREADS])
                with gr.Row():
                    add_button = gr.Button("Add hint", variant="primary", elem_id="add-hint")
                    number = gr.Number(label="Hint #", value=1, precision=0, minimum=1, elem_id="hint-number")
                with gr.Row():
                    move_button = gr.Button("Move hint # here", elem_id="move-hint")
                    remove_button = gr.Button("Remove hint #", elem_id="remove-hint")
                table = gr.Dataframe(headers=HINT_COLUMNS, datatype=["number", "number", "str", "number", "str"],
                                     column_count=5, interactive=True, label="Hints", elem_id="hints")
            with gr.Column(scale=2):
                note = gr.Markdown("Drop a photo to start.", elem_id="note")
                canvas = gr.Image(label="Click to place a hint", type="pil", interactive=False, elem_id="canvas",
                                  format="png")
                tried = gr.Gallery(label="The hint, each way it can go: click one to add it so", columns=3,
                                   allow_preview=False, object_fit="contain", height=300, elem_id="hint-tries",
                                   format="jpeg")
                slider = gr.ImageSlider(label="gray | colour", type="pil", elem_id="slider", format="png")
                full_button = gr.Button("Full resolution", elem_id="full")
                result = gr.File(label="Full-resolution result", elem_id="result")
        hidden_image = gr.File(visible=False)
        hidden_model = gr.Textbox(visible=False)
        hidden_hints = gr.Textbox(visible=False)
        hidden_result = gr.File(visible=False)
        hidden_button = gr.Button(visible=False)

        redraw = {"fn": guarded(show), "inputs": [chosen, model, table], "outputs": [canvas, slider, note]}
        photos.upload(names, photos, chosen, api_visibility="private")
        chosen.change(**redraw, api_visibility="private")
        model.change(**redraw, api_visibility="private")
        table.change(**redraw, api_visibility="private")
        attempt = {"fn": guarded(tries), "inputs": [chosen, model, table, point, colour, size], "outputs": tried,
                   "api_visibility": "private", "trigger_mode": "always_last"}
        canvas.select(guarded(clicked), [chosen, model, table], [colour, point, note], api_visibility="private")
        gr.on([point.change, colour.change, size.release, model.change], **attempt)
        chosen.change(lambda: None, None, point, api_visibility="private")  # a point of another photo: forgotten
        table.change(list, None, tried, api_visibility="private")  # a new hint set: the tries are stale
        add_button.click(guarded(add), [table, point, colour, size, spread], table, api_visibility="private")
        tried.select(guarded(add_tried), [table, point, colour, size], table, api_visibility="private")
        move_button.click(guarded(move), [table, point, number], table, api_visibility="private")
        remove_button.click(guarded(remove), [table, number], table, api_visibility="private")
        full_button.click(guarded(full), [chosen, model, table], result, api_visibility="private")
        hidden_button.click(guarded(api), [hidden_image, hidden_model, hidden_hints], hidden_result,
                            api_name="colorize")
    return page.queue(default_concurrency_limit=1, max_size=32)


def marked(preview: Any, hints: Sequence[Hint], size: tuple[int, int]) -> Any:
    """A copy of ``preview`` with each hint's square outlined and numbered as in the table."""
    from PIL import ImageDraw

    image = preview.copy()
    draw = ImageDraw.Draw(image)
    scale = image.width / size[0]
    for number, hint in enumerate(hints, 1):
        left, top, right, bottom = (v * scale for v in hint.box)
        box = (left - 3, top - 3, max(right, left + 1) + 3, max(bottom, top + 1) + 3)
        draw.rectangle(box, outline="white", width=3)
        draw.rectangle(box, outline="black", width=1)
        draw.text((box[2] + 2, box[1]), str(number), fill="white", stroke_width=2, stroke_fill="black")
    return image


def _rows(rows: Any) -> list[list[Any]]:
    values = rows.values.tolist() if hasattr(rows, "values") else [list(r) for r in rows or []]
    return [list(row) for row in values if any(str(cell).strip() not in ("", "nan", "None") for cell in row)]


def _full_resolution_point(index: Sequence[int], size: tuple[int, int]) -> tuple[int, int]:
    """The photo pixel under a click on the page's preview (whose longer side is at most PREVIEW pixels)."""
    width, height = size
    scale = min(1.0, PREVIEW / max(width, height))
    shown = max(1, round(width * scale)), max(1, round(height * scale))
    x = min(width - 1, int((index[0] + 0.5) * width / shown[0]))
    y = min(height - 1, int((index[1] + 0.5) * height / shown[1]))
    return x, y


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (kill, a service manager) stops the app as Ctrl-C does


def serve(models: ModelChoices, host: str = "127.0.0.1", port: int | None = None,
          max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, echo: Callable[[str], None] = print) -> None:
    """Build the page and serve it until Ctrl-C or SIGTERM; prints the address. The photos sent to it and the
    results it wrote are deleted when it stops: all are under one temporary folder of its own (Gradio's too, unless
    ``GRADIO_TEMP_DIR`` says where; then the page's ``delete_cache`` deletes its copies)."""
    work = Path(tempfile.mkdtemp(prefix="zoo-app-"))
    os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "gradio"))  # read when the page and its server are made
    try:
        page = build_app(models, int(max_megapixels * 1e6), work)
        _, url, _ = page.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True,
                                quiet=True, max_file_size=f"{int(max_megapixels * 4)}mb", allowed_paths=[str(work)],
                                footer_links=["api"], ssr_mode=False)
        signal.signal(signal.SIGTERM, _interrupt)
        echo(f"zoo app: {url} (models: {', '.join(models.names)}; Ctrl-C stops it)")
        try:
            page.block_thread()
        finally:
            page.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
