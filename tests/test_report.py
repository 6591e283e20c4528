"""`zoo report`: results merged into one self-contained page, checked as a reader sees it in headless Chromium
(driven over the DevTools protocol): no console errors or outside requests, a leaderboard that sorts on click and
fits the page, values worse than gray marked as such, reference lines on every plot, working before/after
sliders, a real screenshot. The error catcher is itself proved on a broken page."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zoo.cli.harness import report as report_command
from zoo.color import rgb_uint8_to_lab_normalized
from zoo.harness import schema
from zoo.harness.report import ReportError, load_results, merge_rows, split_grid, write_report
from zoo.harness.schema import numeric_keys
from zoo.images import GRID_PADDING, write_sample_grid

PHOTOS = ("darknet--dog.jpg", "darknet--giraffe.jpg", "darknet--eagle.jpg")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium_path() -> str | None:
    return shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if os.access(p, os.X_OK)), None)


# ------------------------------------------------------------------------------------------- DevTools client


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
    messages ending in NUL on file descriptors 3 and 4), which needs no websocket library."""

    def __init__(self, executable: str, user_data_dir: Path) -> None:
        to_browser, self._write_end = os.pipe()
        self._read_end, from_browser = os.pipe()

        def give_pipes() -> None:  # in the child: the browser reads fd 3 and writes fd 4
            ours = os.dup(to_browser), os.dup(from_browser)
            os.dup2(ours[0], 3)
            os.dup2(ours[1], 4)

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=give_pipes, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send a command (to the attached page, if any) and return its result; events are kept in ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._write_end, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._read_end], [], [], remaining)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._read_end, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str, width: int = 1200, height: int = 900) -> None:
        """Open ``url`` in a new page and wait until it has loaded (every image decoded)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.events.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not self.evaluate("document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (exceptions raised here)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str, x_fraction: float = 0.5) -> None:
        """A real mouse click (press and release) inside the element, ``x_fraction`` of its width from the left."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                            f" const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }})()")
        x, y = box[0] + box[2] * x_fraction, box[1] + box[3] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def problems(self, page_url: str) -> list[str]:
        """Console errors and warnings, uncaught exceptions, error log entries and requests for anything but
        the page itself and data: URIs, since the page was opened."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value', a.get('description')) for a in params['args']]}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"exception: {details.get('exception', {}).get('description', details['text'])}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(f"log {params['entry']['level']}: {params['entry']['text']}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if url != page_url and not url.startswith("data:"):
                    found.append(f"request: {url}")
        return found

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Closed as its window is (it then deletes its temporary files); terminated if it does not answer."""
        self.session = None
        try:
            self.call("Browser.close", timeout=10)
            self.process.wait(timeout=10)
        except (TimeoutError, RuntimeError, OSError, subprocess.TimeoutExpired):
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self._write_end)
        os.close(self._read_end)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed in CI: .ci/setup-browser.sh should have installed it")
        pytest.skip("chromium is not installed (bash .ci/setup-browser.sh installs Debian's)")
    chromium = Chromium(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


# ------------------------------------------------------------------------------------------- results files


def sample_grid(path: Path, photos_dir: Path, size: int = 64) -> None:
    """A gray | model | truth grid as training writes it, from real photos; "model" has half the true chroma."""
    images = [Image.open(photos_dir / name).convert("RGB").resize((size, size)) for name in PHOTOS]
    batch = torch.from_numpy(np.stack([np.asarray(i) for i in images])).permute(0, 3, 1, 2).contiguous()
    L, ab = rgb_uint8_to_lab_normalized(batch)
    write_sample_grid(path, L, ab * 0.5, ab)


@pytest.fixture(scope="module")
def results(photos_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("results")
    (root / "grids").mkdir()
    sample_grid(root / "grids" / "unet.png", photos_dir)
    sample_grid(root / "grids" / "cnn.png", photos_dir, size=48)
    bench = {
        "kind": "bench", "created": "2026-11-24T10:00:00+00:00", "machine": {"cpu": "2 cores", "torch": "2.14.1"},
        "settings": {"image_size": 256, "batch_size": 8},
        "rows": [
            {"model": "simple-cnn", "error": None, "generator": "simple-cnn", "params": 1_234_567, "gflops": 1.21,
             "infer_img_s": 85.3, "latency_ms_median": 93.8},
            {"model": "unet-resnet18", "error": None, "generator": "smp-unet", "params": 14_320_000, "gflops": 10.6,
             "infer_img_s": 9.8, "latency_ms_median": 816.3},
            {"model": "pix2pix-unet-gan", "error": "RuntimeError: out of memory", "params": 54_409_858, "gflops": 18.2,
             "infer_img_s": None},
        ],
        "samples": {},
    }
    score = {
        "kind": "score", "created": "2026-11-24T11:00:00+00:00", "machine": {"cpu": "2 cores"},
        "settings": {"data": "sample"}, "protocol": {"split": "val, 12 photos", "metrics": ["psnr", "ssim"]},
        "rows": [
            {"model": "unet-resnet18", "error": None, "psnr": 23.4, "ssim": 0.93, "ciede2000": 7.5, "hue_bins": 11},
            {"model": "simple-cnn", "error": None, "checkpoint": "runs/x/generator.safetensors", "psnr": 22.1,
             "ssim": 0.91, "ciede2000": 9.1},
            {"model": "gray", "error": None, "checkpoint": None, "psnr": 21.0, "ssim": 0.9, "ciede2000": 12.0},
            {"model": "truth", "error": None, "checkpoint": None, "psnr": None, "ssim": 1.0, "ciede2000": 0.0},
        ],
        "samples": {"unet-resnet18": "grids/unet.png", "simple-cnn": "grids/cnn.png"},
        "grids": {"columns": 3, "padding": GRID_PADDING},
    }
    paths = [root / "bench.json", root / "score.json"]
    for path, data in zip(paths, (bench, score)):
        path.write_text(json.dumps(data))
    return paths


def write_page(results: list[Path], out: Path) -> Path:
    result = CliRunner().invoke(report_command, [*map(str, results), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    return out


@pytest.fixture(scope="module")
def page(results: list[Path]) -> Path:
    return write_page(results, results[0].parent / "report" / "report.html")


MODELS = ("simple-cnn", "pix2pix-unet-gan", "unet-resnet18-gan", "unet-effnet-lite0-gan", "external-ddcolor-large")


@pytest.fixture(scope="module")
def below_gray_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bench and a score file where every model scores below gray, every field of the schema has a value
    (the widest leaderboard there is) and one model failed with a long error."""
    root = tmp_path_factory.mktemp("below-gray")
    rng = np.random.default_rng(0)

    def value(unit: str) -> float:  # magnitudes as real runs write them: parameter counts, fractions, the rest
        return float({"M": rng.uniform(1e6, 6e7), "%": rng.uniform(0, 1)}.get(unit, rng.uniform(1, 999)))

    def values(kind: str) -> dict[str, float]:
        return {f.key: value(f.unit) for f in schema.FIELDS
                if kind in f.kinds and f.key not in ("checkpoint", "generator", "registry_model", "predictions", "hints")}

    bench = [{"model": m, "error": None, **values("bench")} for m in MODELS]
    bench[1]["error"] = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"
    quality = {"psnr": 18.0, "ssim": 0.80, "ciede2000": 16.5, "dcf": 30.0, "fid_effl0": 150.0}
    gray = {"model": "gray", "error": None, "psnr": 20.96, "ssim": 0.9215, "ciede2000": 11.85, "cf": 0.0,
            "cf_truth": 46.14, "cf_hasler": 0.0, "dcf": 46.14, "dcf_per_image": 46.14, "fid_effl0": 112.0}
    truth = {"model": "truth", "error": None, "psnr": None, "ssim": 1.0, "ciede2000": 0.0, "cf": 46.14,
             "cf_truth": 46.14, "cf_hasler": 51.02, "dcf": 0.0, "dcf_per_image": 0.0, "fid_effl0": 0.0}
    score = [{"model": m, "error": None, **{k: v - 0.1 * i if k != "dcf" else 50 + i for k, v in quality.items()}}
             for i, m in enumerate(MODELS)]
    docs = {"bench.json": {"kind": "bench", "created": "2026-11-24T10:00:00+00:00", "rows": bench},
            "score.json": {"kind": "score", "created": "2026-11-24T11:00:00+00:00", "rows": [*score, gray, truth]}}
    for name, doc in docs.items():
        (root / name).write_text(json.dumps(doc))
    return write_page([root / name for name in docs], root / "report.html")


# ------------------------------------------------------------------------------------------- without a browser


def test_rows_merge_by_model_and_every_numeric_field_is_a_column(results):
    loaded = [load_results(p) for p in results]
    rows = {row["model"]: row for row in merge_rows(loaded)}
    assert rows["unet-resnet18"]["psnr"] == 23.4 and rows["unet-resnet18"]["params"] == 14_320_000
    assert rows["pix2pix-unet-gan"]["error"] == "bench: RuntimeError: out of memory"
    assert list(rows) == ["simple-cnn", "unet-resnet18", "pix2pix-unet-gan", "gray", "truth"]
    assert numeric_keys(list(rows.values())) == ["psnr", "ssim", "ciede2000", "infer_img_s", "latency_ms_median",
                                                    "params", "gflops", "hue_bins"]
    assert loaded[1].samples["simple-cnn"] == results[1].parent / "grids" / "cnn.png"


def test_sample_grids_split_into_their_panels(tmp_path, photos_dir):
    sample_grid(tmp_path / "grid.png", photos_dir, size=40)
    grid = Image.open(tmp_path / "grid.png")
    rows = split_grid(grid, {"columns": 3, "padding": GRID_PADDING})
    assert len(rows) == len(PHOTOS) and all(len(row) == 3 and row[0].size == (40, 40) for row in rows)
    truth = np.asarray(Image.open(photos_dir / PHOTOS[1]).convert("RGB").resize((40, 40)), dtype=float)
    assert np.abs(np.asarray(rows[1][2], dtype=float) - truth).mean() < 2  # the truth panel is the photo
    gray = np.asarray(rows[1][0], dtype=int)
    assert (gray.max(-1) - gray.min(-1)).max() <= 1  # the gray panel has no colour
    assert split_grid(Image.open(photos_dir / PHOTOS[0]), {"columns": 3, "padding": GRID_PADDING}) == []  # no grid
    assert split_grid(grid, None) == []  # results that do not say how their grids are laid out: shown whole


def test_page_is_self_contained(page):
    text = page.read_text()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert references and all(ref.startswith(("data:image/", "#")) for ref in references)  # inline or in-page
    assert any(ref.startswith("data:image/") for ref in references)
    assert "@import" not in text
    assert all(target.startswith("#") for target in re.findall(r"url\(([^)]*)\)", text))  # in-page clip paths only
    assert "<script src" not in text


def test_unreadable_results_are_refused_naming_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "bench"}')
    with pytest.raises(ReportError, match="bad.json: not a zoo results file"):
        write_report([bad], tmp_path / "r.html")
    result = CliRunner().invoke(report_command, [str(bad), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and "bad.json" in result.output and not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------------------------------- in Chromium


def test_the_error_catcher_catches_a_broken_page(browser, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>broken</p><img src='missing.png'>"
                      "<script>console.error('deliberate'); undefinedFunction();</script></body></html>")
    browser.open(broken.as_uri())
    found = browser.problems(broken.as_uri())
    assert any("deliberate" in p for p in found), found
    assert any("undefinedFunction" in p for p in found), found
    assert any("missing.png" in p for p in found), found


def test_report_loads_without_errors_sorts_slides_and_renders(browser, page, tmp_path):
    url = page.as_uri()
    browser.open(url)
    assert browser.problems(url) == []
    assert browser.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0)")
    plots = browser.evaluate("Array.from(document.querySelectorAll('.plots svg'), p => p.id)")
    assert plots == ["plot-psnr", "plot-ssim", "plot-ciede2000"]  # one per quality field with a direction
    for plot in plots:
        markers = f"document.querySelectorAll('#{plot} #{plot}-points use').length"
        assert browser.evaluate(markers) == 2  # a marker a model
        assert browser.evaluate(f"document.querySelectorAll('#{plot} #{plot}-reference-gray path').length") == 1
    truth_lines = "document.querySelectorAll('#plot-ssim-reference-truth, #plot-ciede2000-reference-truth').length"
    assert browser.evaluate(truth_lines) == 2  # PSNR's truth is infinite: no line
    assert browser.evaluate("document.querySelectorAll('.gallery .sample').length") == 2 * len(PHOTOS)
    best = "Array.from(document.querySelectorAll('#leaderboard td.best'), c => c.parentElement.dataset.model)"
    assert "truth" not in browser.evaluate(best)  # the references (truth has SSIM 1) are never "best"
    assert sorted(set(browser.evaluate(best))) == ["simple-cnn", "unet-resnet18"]

    def order() -> list[str]:
        return browser.evaluate("Array.from(document.querySelectorAll('#leaderboard tbody tr'), r => r.dataset.model)")

    assert order() == ["simple-cnn", "unet-resnet18", "pix2pix-unet-gan", "gray", "truth"]  # as first seen
    browser.click("#leaderboard th[data-key=psnr]")  # best first: higher PSNR, missing values last
    assert order() == ["unet-resnet18", "simple-cnn", "gray", "pix2pix-unet-gan", "truth"]
    browser.click("#leaderboard th[data-key=psnr]")  # again: reversed, missing still last
    assert order() == ["gray", "simple-cnn", "unet-resnet18", "pix2pix-unet-gan", "truth"]
    browser.click("#leaderboard th[data-key=params]")  # fewer parameters first
    assert order() == ["simple-cnn", "unet-resnet18", "pix2pix-unet-gan", "gray", "truth"]
    browser.click("#leaderboard th[data-key=params]")
    assert order() == ["pix2pix-unet-gan", "unet-resnet18", "simple-cnn", "gray", "truth"]
    browser.click("#leaderboard thead th:first-child")
    assert order() == ["gray", "pix2pix-unet-gan", "simple-cnn", "truth", "unet-resnet18"]
    assert browser.evaluate("document.querySelector('#leaderboard th[aria-sort]').textContent") == "model"

    slider = ".gallery[data-model=simple-cnn] .compare input"
    clip = "getComputedStyle(document.querySelector('.gallery[data-model=simple-cnn] .compare .color')).clipPath"
    assert browser.evaluate(clip) == "inset(0px 50% 0px 0px)"
    browser.click(slider, x_fraction=0.9)
    value = int(browser.evaluate(f"document.querySelector({json.dumps(slider)}).value"))
    assert 80 <= value <= 100
    assert browser.evaluate(clip) == f"inset(0px {100 - value}% 0px 0px)"
    assert browser.problems(url) == []

    shot = tmp_path / "report.png"
    browser.screenshot(shot)
    image = Image.open(shot)
    assert image.format == "PNG" and 1100 <= image.width <= 1200 and image.height > 1500
    pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 20  # text, plot and photos, not a blank page
    saved = os.environ.get("ZOO_REPORT_SCREENSHOT")
    if saved:  # keep it to look at
        shutil.copy(shot, saved)


def test_a_report_where_every_model_is_below_gray_says_so(browser, below_gray_page):
    url = below_gray_page.as_uri()
    browser.open(url, width=1400)
    assert browser.problems(url) == []
    quality = ("psnr", "ssim", "ciede2000", "dcf", "fid_effl0")
    for key in quality:  # no model beats gray anywhere: nothing is "best", every model's value looks worse
        index = browser.evaluate(f"Array.from(document.querySelectorAll('#leaderboard thead th')).findIndex("
                                 f"h => h.dataset.key === '{key}') + 1")
        cells = browser.evaluate(f"Array.from(document.querySelectorAll('#leaderboard tbody tr'), r => "
                                 f"[r.dataset.model, r.cells[{index - 1}].className])")
        assert index > 0 and all("best" not in mark for _, mark in cells), (key, cells)
        assert {model for model, mark in cells if "worse-than-gray" in mark} == set(MODELS), (key, cells)
    struck = "getComputedStyle(document.querySelector('#leaderboard td.worse-than-gray')).textDecorationLine"
    assert browser.evaluate(struck) == "line-through"
    assert "worse than gray (20.96)" in browser.evaluate(
        "document.querySelector('#leaderboard tr[data-model=simple-cnn] td.worse-than-gray').title")
    assert browser.evaluate("document.querySelectorAll('#leaderboard td.best').length") > 0  # speed still ranks

    browser.click("#leaderboard th[data-key=psnr]")  # best first: gray, then every model below it, truth (inf) last
    order = browser.evaluate("Array.from(document.querySelectorAll('#leaderboard tbody tr'), r => r.dataset.model)")
    assert order == ["gray", *MODELS, "truth"]

    # The widest leaderboard fits a 1400 px window: no horizontal scroll, the last column on screen.
    fits = browser.evaluate("(() => { const t = document.getElementById('leaderboard');"
                            " return [t.scrollWidth, t.parentElement.clientWidth, t.getBoundingClientRect().right,"
                            " document.documentElement.clientWidth]; })()")
    widths = browser.evaluate("Array.from(document.querySelectorAll('#leaderboard thead th'),"
                              " h => h.textContent + ' ' + Math.round(h.getBoundingClientRect().width))")
    assert fits[0] <= fits[1] and fits[2] <= fits[3], (fits, widths)
    headline = browser.evaluate("document.querySelectorAll('#leaderboard thead th').length")
    every = browser.evaluate("document.querySelectorAll('#all-fields thead th').length")
    assert every > headline  # the rest of the fields, folded
    assert browser.evaluate("document.querySelector('#leaderboard th[data-key=fid_effl0]').title").endswith(
        "not comparable with Inception FID")
