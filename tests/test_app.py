"""`zoo app` used as a person and a script use it: the real command serving on a free port, its page driven in
headless Chromium (playwright on Debian's chromium: upload, a click on the photo, a colour typed into the picker,
Add hint, Full resolution, the download), and its /colorize endpoint through gradio_client, bad uploads included.
Colours are checked in the files that come back, against scikit-image's Lab."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from zoo.colorizer import colorize
from zoo.data import resolve_source
from zoo.hints import colour_ab

pytest.importorskip("gradio")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
FAST = "unet-effnet-lite0-ciede"
BLUE = "#2a6ad0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(folder: Path, stop: signal.Signals) -> Iterator[str]:
    """`zoo app` in a process of its own, on 127.0.0.1 and a free port, its temporary files under ``folder`` (its
    log beside them): its address while it runs. Then stopped with ``stop``, which must end it with status 0 and
    nothing left in the temporary folder: the photos sent to it, Gradio's copies and the results all deleted."""
    log, scratch = folder / "app.log", folder / "tmp"
    scratch.mkdir()
    with log.open("w") as out:  # SIGINT reaches it as from a terminal, also where a background shell ignores it
        process = subprocess.Popen([sys.executable, "-m", "zoo.cli", "app", "--port", str(free_port()),
                                    "--max-megapixels", "5"], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TMPDIR": str(scratch)},
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while not (match := re.search(r"zoo app: (http://127\.0\.0\.1:\d+/)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield match.group(1)
    finally:
        if process.poll() is None:  # else it never started, and the assertion above says why
            process.send_signal(stop)
            try:
                assert process.wait(20) == 0, log.read_text()
            except subprocess.TimeoutExpired:
                process.kill()
                pytest.fail(f"zoo app went on for 20 s after {stop.name}: {log.read_text()}")
            assert not [path for path in scratch.rglob("*") if path.is_file()], log.read_text()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app every page test uses, the fast model offered first after the default; stopped as Ctrl-C stops it."""
    with running_app(tmp_path_factory.mktemp("app"), signal.SIGINT) as url:
        yield url


def test_sigterm_stops_the_app_and_removes_its_files(tmp_path):
    with running_app(tmp_path, signal.SIGTERM) as url:
        assert urllib.request.urlopen(url, timeout=30).status == 200


def mean_ab(path: Path, x: int, y: int, half: int = 3) -> np.ndarray:
    lab = rgb2lab(np.asarray(Image.open(path).convert("RGB")))
    return lab[y - half:y + half, x - half:x + half, 1:].reshape(-1, 2).mean(0)


def open_page(playwright, app_url: str, photo: Path):
    """Chromium on the page with ``photo`` dropped on it, its colours shown: (browser, page)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page.goto(app_url)
    page.set_input_files("#photos input[type=file]", str(photo))
    page.wait_for_selector("#canvas img", timeout=120_000)
    page.wait_for_function("document.querySelector('#note').innerText.includes('0 hint(s)')", timeout=60_000)
    return browser, page


def click_photo(page, x: int, y: int, size: tuple[int, int]) -> dict[str, float]:
    """A click on pixel (x, y) of a photo of ``size`` as the page shows it; the shown image's box."""
    box = page.locator("#canvas img").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) * box["width"] / size[0], box["y"] + (y + 0.5) * box["height"] / size[1])
    page.wait_for_function("document.querySelector('#note').innerText.includes('Point (')", timeout=60_000)
    return box


def type_colour(page, colour: str) -> None:
    """The colour typed into the hint's picker, which then closes."""
    page.click("#hint-colour .dialog-button")
    page.fill("#hint-colour input[type=text]", colour)
    page.keyboard.press("Enter")
    page.click("h1")


def choose_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()


def tries_redrawn_after(page, action: Callable[[], None], timeout: int) -> None:
    """``action``, then a wait until the hint's tries show other images than before it."""
    shown = page.get_attribute("#hint-tries img", "src")
    action()
    page.wait_for_function(f"document.querySelector('#hint-tries img')?.src != {json.dumps(shown)}", timeout=timeout)


def download_full(page, folder: Path) -> Path:
    """"Full resolution", then the file the page offers, saved into ``folder``."""
    page.click("#full")
    link = page.wait_for_selector("#result a[download]", timeout=120_000)
    with page.expect_download() as download:
        link.click()
    saved = folder / "download" / download.value.suggested_filename
    download.value.save_as(saved)
    return saved


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (.ci/setup-browser.sh installs Debian's)")
def test_a_person_places_a_hint_on_the_page_and_downloads_the_colour_photo(app_url, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = resolve_source("heldout")[0]
    width, height = Image.open(photo).size
    # the person corrects the model where it is most wrong on a flat, moderately colourful patch, with the
    # patch's true colour (in gamut at its lightness, which the photo keeps)
    truth, automatic = (rgb2lab(np.asarray(image.convert("RGB"))) for image in (Image.open(photo), colorize(photo)))
    patch = 9
    windows = np.lib.stride_tricks.sliding_window_view
    error = windows(np.abs(truth[..., 1:] - automatic[..., 1:]).sum(-1), (patch, patch)).mean((-1, -2))
    flat = windows(truth[..., 0], (patch, patch)).std((-1, -2)) < 3
    chroma = windows(np.hypot(truth[..., 1], truth[..., 2]), (patch, patch)).mean((-1, -2))
    top, left = np.unravel_index(np.where(flat & (chroma > 15) & (chroma < 50), error, -1).argmax(), error.shape)
    spot_x, spot_y = left + patch // 2, top + patch // 2
    rgb = np.asarray(Image.open(photo).convert("RGB"))[top:top + patch, left:left + patch]
    colour = "#" + "".join(f"{round(v):02x}" for v in rgb.reshape(-1, 3).mean(0))
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, app_url, photo)
        # a click on that spot of the shown photo: the page says which pixel of the photo it is
        box = click_photo(page, spot_x, spot_y, (width, height))
        x, y = map(int, re.search(r"Point \((\d+), (\d+)\)", page.inner_text("#note")).groups())
        assert abs(x - spot_x) <= 1 + width / box["width"] and abs(y - spot_y) <= 1 + height / box["height"]
        proposed = page.get_attribute("#hint-colour .dialog-button", "style")
        type_colour(page, colour)  # the picker opens on the model's colour there; another is typed into it
        assert page.get_attribute("#hint-colour .dialog-button", "style") != proposed
        page.click("#add-hint")
        page.wait_for_function("document.querySelector('#note').innerText.includes('1 hint(s)')", timeout=60_000)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        saved = download_full(page, tmp_path)
        browser.close()
    assert saved.name == photo.name and Image.open(saved).size == (width, height)
    got, wanted = mean_ab(saved, x, y, half=2), np.array(colour_ab(colour))
    before = automatic[y - 2:y + 2, x - 2:x + 2, 1:].reshape(-1, 2).mean(0)
    assert np.abs(got - wanted).max() < 2.0 and np.abs(before - wanted).max() > 4.0
    assert (tmp_path / "page.png").stat().st_size > 50_000


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (.ci/setup-browser.sh installs Debian's)")
@pytest.mark.parametrize(("spread", "label", "way"), [("alike", "Everything like it", "radio"),
                                                      ("here", "Only here", "radio"),
                                                      ("alike", "Everything like it", "tries")])
def test_how_far_the_colour_goes_is_chosen_per_hint_on_the_page(app_url, tmp_path, spread, label, way):
    """The person says how far a hint's colour goes: on the radio before adding it, or by clicking the one of the
    hint's three tries (shown as soon as the colour is picked) that looks right."""
    from playwright.sync_api import sync_playwright

    from zoo.colorizer import Colorizer
    from zoo.guided import GuidedPhoto
    from zoo.hints import Hint
    from zoo.images import read_source

    # a sunset the model colours yellow: the person says the sky is pink, everywhere like it or only here. None of
    # the default's alternative colourings is pink, so the hint's choice among them (zoo.guided.choose, which a
    # nearby hint makes too and which carries a yellow-orange hint over this whole sky) leaves its reach to the spread
    photo = next(p for p in resolve_source("sample") if p.name == "gnome-control-center-data--surfer.jpg")
    width, height = Image.open(photo).size
    spot_x, spot_y, colour = width // 5, height // 6, "#e890a8"
    # in-process, the same code the page calls: where the chosen spread and the default (nearby) part most, away
    # from the spot (alike: in the far half of the photo)
    session = GuidedPhoto(Colorizer.from_checkpoint(model=FAST, device="cpu"), read_source(photo))
    hint = Hint(spot_x, spot_y, colour_ab(colour), 9, spread=spread)
    chosen, nearby = (rgb2lab(np.asarray(session.image([h])))[..., 1:] for h in (hint, replace(hint, spread="nearby")))
    apart = np.abs(chosen - nearby).sum(-1)
    if spread == "alike":
        apart[:, : width // 2] = 0
    apart[max(0, spot_y - 12):spot_y + 12, max(0, spot_x - 12):spot_x + 12] = 0
    far_y, far_x = np.unravel_index(apart.argmax(), apart.shape)
    far_x, far_y = min(max(far_x, 3), width - 4), min(max(far_y, 3), height - 4)
    with sync_playwright() as playwright:
        browser, page = open_page(playwright, app_url, photo)
        click_photo(page, spot_x, spot_y, (width, height))
        if way == "radio":
            type_colour(page, colour)
            page.locator("#hint-spread label", has_text=label).click()
            page.click("#add-hint")
        else:  # the tries of the model's own colour there, then of the colour picked
            page.wait_for_function("document.querySelectorAll('#hint-tries img').length == 3", timeout=60_000)
            tries_redrawn_after(page, lambda: type_colour(page, colour), 60_000)
            # other models' tries (the learned one runs its network on the hints), then the fast one's again: what
            # is clicked is what the page shows
            for model in ("unet-effnet-lite2-color", "unet-effnet-lite0-guided", FAST):
                tries_redrawn_after(page, lambda model=model: choose_model(page, model), 120_000)
            page.locator("#hint-tries button", has_text=label).click()
        page.wait_for_function("document.querySelector('#note').innerText.includes('1 hint(s)')", timeout=60_000)
        assert spread in page.inner_text("#hints")  # the hint's row in the table says how far it spreads
        saved = download_full(page, tmp_path)
        browser.close()
    got = mean_ab(saved, far_x, far_y, half=2)
    wanted, nearby_there = (ab[far_y - 2:far_y + 2, far_x - 2:far_x + 2].reshape(-1, 2).mean(0) for ab in (chosen, nearby))
    # JPEG keeps ab within a few units; the chosen spread moved this spot by many more than that
    assert np.abs(wanted - nearby_there).max() > 10
    assert np.abs(got - wanted).max() < 4 < np.abs(got - nearby_there).max()


def test_the_page_offers_every_shipped_colorizer_default_first_but_not_the_alternatives_hints_choose_among():
    from zoo.app import ModelChoices
    from zoo.spec import default_model, get_spec, model_specs, weights_path

    names = ModelChoices.gather().names
    shipped = {name for name in model_specs() if weights_path(name) is not None}
    alternatives = get_spec(default_model()).choices
    assert names[0] == default_model() and alternatives in shipped  # the default's hints choose among a shipped model
    assert sorted(names) == sorted(shipped - {alternatives})  # a part of the default, not a colorizer to pick


def test_scripts_colorize_through_the_api_and_bad_uploads_are_messages(app_url, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the client's downloads pass through
    client = Client(app_url, verbose=False, download_files=tmp_path / "downloads")
    photo = resolve_source("heldout")[1]
    truth = mean_ab(photo, 60, 50, half=4)  # the photo's own colour there: in gamut at its lightness
    hints = json.dumps([{"x": 60, "y": 50, "ab": truth.round(3).tolist(), "size": 8}])
    result = Path(client.predict(handle_file(str(photo)), FAST, hints, api_name="/colorize"))
    plain = Path(client.predict(handle_file(str(photo)), FAST, "", api_name="/colorize"))
    assert result.name == photo.name and Image.open(result).size == Image.open(photo).size
    assert np.abs(mean_ab(result, 60, 50) - truth).max() < 2.0 < np.abs(mean_ab(plain, 60, 50) - truth).max()
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a JPEG at all\n")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(photo.read_bytes()[: photo.stat().st_size // 3])
    huge = tmp_path / "huge.png"
    Image.new("L", (3000, 2000)).save(huge)  # 6 MP, over the 5 MP this app was started with
    for path, hint_text, says in [
        (fake, "[]", "fake.jpg: not an image"),
        (truncated, "[]", "cut.jpg: corrupt"),
        (huge, "[]", "huge.png: 3000 x 2000 is 6.0 megapixels, over this app's limit of 5"),
        (photo, "[{\"x\": 1", "hints: not JSON"),
        (photo, json.dumps([{"x": 100000, "y": 1, "color": BLUE}]), "hint 1 at x=100000, y=1 is outside the photo"),
        (photo, json.dumps([{"x": 1, "y": 1, "color": "#zz0000"}]), "hint 1: unreadable colour '#zz0000'"),
    ]:
        with pytest.raises(AppError, match=re.escape(says)):
            client.predict(handle_file(str(path)), FAST, hint_text, api_name="/colorize")
    with pytest.raises(AppError, match="unknown model 'no-such-model'"):
        client.predict(handle_file(str(photo)), "no-such-model", "[]", api_name="/colorize")
    # and the app goes on serving
    again = Path(client.predict(handle_file(str(photo)), FAST, "[]", api_name="/colorize"))
    assert Image.open(again).size == Image.open(photo).size
