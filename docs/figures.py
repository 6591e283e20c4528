"""Regenerate the README's pictures and tables from the shipped models, with the commands the README shows.

    python docs/figures.py                 # everything (the speed column wants a quiet machine)
    python docs/figures.py grid curve      # some of: grid, curve, table, external, app

One path through it: each part runs a `zoo` command with ``--format json`` into a scratch folder and turns
what it prints into a file under ``docs/`` or a table of README.md between ``<!-- figures.py: NAME -->`` and
``<!-- /figures.py -->``, so no figure in the README is typed by hand.

- grid: docs/default-heldout.jpg, `zoo score`'s sample grid (gray | default | truth) of every 12th held-out
  photo, the first four (a rule fixed before looking, so not the best four).
- curve: docs/hint-curve.png and the table beside it, `zoo score DEFAULT --hints 0,1,2,5,10,20` on the held-out
  photos with each `--hint-placement` (centred, worst), gray's curves beside the default's, and the learned guided
  model's (LEARNED) with centred hints (needs matplotlib).
- table: the shipped models on the held-out photos, `zoo bench SHIPPED --checkpoints zoo/weights --data heldout`,
  in the README and each shipped model's card.
- external: each shipped model on `--data debian-external` (41 photos from packages the sample lacks; downloads
  three Debian packages, 157 MB, once), gray beside it, in its card; docs/default-external.jpg, the default's
  sample grid of every 10th of those photos, the first four.
- app: docs/app.png, the page of `zoo app` with a photo, one hint and a second tried (needs the app extra and chromium).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
HINT_COUNTS = (0, 1, 2, 5, 10, 20)
LEARNED = "unet-effnet-lite0-guided"  # the learned guided model (hints an input of its network), beside the default


def zoo_json(*args: str, cwd: Path) -> list[dict[str, str]]:
    """The rows a `zoo` command prints with --format json."""
    done = subprocess.run(["zoo", *args, "--format", "json"], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"zoo {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def heldout() -> list[Path]:
    """The held-out photos in the order heldout.txt lists them (``resolve_source("heldout")`` sorts them)."""
    from zoo.data import HELDOUT_LIST

    lines = (line.strip() for line in HELDOUT_LIST.read_text().splitlines())
    return [HELDOUT_LIST.parent / line for line in lines if line and not line.startswith("#")]


def markdown(rows: list[dict[str, str]], columns: dict[str, str]) -> str:
    """A markdown table of ``rows`` as the zoo prints one (``--format markdown``): ``columns`` maps a row key to
    its header."""
    import io

    from zoo.tables import Table, print_table

    out = io.StringIO()
    print_table(Table(list(columns.values()), [[row[key] for key in columns] for row in rows]), "markdown", out)
    return out.getvalue().rstrip("\n")


def replace_between_markers(path: Path, name: str, text: str) -> None:
    """Put ``text`` between the markdown file's markers for ``name``, written whole (a temporary file renamed)."""
    pattern = re.compile(rf"(<!-- figures.py: {name} -->\n)(?:(?!<!-- ).*?\n)??(<!-- /figures.py -->)", re.DOTALL)
    before = path.read_text()
    if not pattern.search(before):
        sys.exit(f"{path.name}: no <!-- figures.py: {name} --> ... <!-- /figures.py --> markers")
    partial = path.with_suffix(".md.partial")
    partial.write_text(pattern.sub(lambda m: m.group(1) + text + "\n" + m.group(2), before, count=1))
    partial.replace(path)


def default_name() -> str:
    from zoo.spec import default_model

    return default_model()


def grid(scratch: Path) -> None:
    sample_grid(heldout()[::12][:4], DOCS / "default-heldout.jpg", scratch)


def sample_grid(photos: list[Path], out: Path, scratch: Path) -> None:
    """`zoo score`'s sample grid (gray | default | truth) of ``photos``, as a JPEG at ``out``."""
    listing = scratch / f"{out.stem}.txt"
    listing.write_text("\n".join(str(p) for p in photos))
    model = default_name()
    zoo_json("score", model, "--data", str(listing), "--results", out.stem, cwd=scratch)
    (png,) = (scratch / out.stem / "samples").glob(f"*/{model}.png")
    from PIL import Image

    Image.open(png).convert("RGB").save(out, quality=88)


def curve(scratch: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = default_name()
    placements = {"centred": "random hints", "worst": "hints where most wrong"}
    lines = {(model, "centred"): ("o-", "C0"), (model, "worst"): ("o:", "C0"), (LEARNED, "centred"): ("^-", "C1"),
             ("gray", "centred"): ("s--", "gray"), ("gray", "worst"): ("s:", "gray")}
    rows = [r | {"placement": placement}
            for name, placement in lines if name != "gray"  # gray is in each score; kept from the default's
            for r in zoo_json("score", name, "--hints", ",".join(map(str, HINT_COUNTS)), "--hint-placement",
                              placement, "--results", "curve", cwd=scratch)
            if r["hints"] != "-" and (r["model"] == name or (r["model"] == "gray" and name == model))]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.4), dpi=110)
    for (name, placement), (style, colour) in lines.items():
        mine = [r for r in rows if r["model"] == name and r["placement"] == placement]
        for axis, key in zip(axes, ("PSNR (dB)", "CIEDE2000")):
            axis.plot([int(r["hints"]) for r in mine], [float(r[key]) for r in mine], style, color=colour,
                      label=f"{name}, {placements[placement]}")
    for axis, key, better in zip(axes, ("PSNR (dB)", "CIEDE2000"), ("higher", "lower")):
        axis.set(xlabel="hints per photo", ylabel=f"{key} ({better} is better)", xscale="symlog",
                 xticks=HINT_COUNTS, xticklabels=[str(n) for n in HINT_COUNTS])
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{len(heldout())} held-out photos; each hint the truth's mean over 6 x 6 px, placed at random "
                     "as Zhang et al. place them, or where the colours are most wrong", size=8)
    figure.tight_layout()
    figure.savefig(DOCS / "hint-curve.png")
    table = [{"what": f"{name}, {placements[placement]}: {key}",
              **{r["hints"]: r[key] for r in rows if r["model"] == name and r["placement"] == placement}}
             for name, placement in lines for key in ("PSNR (dB)", "CIEDE2000")]
    columns = {"what": "hints per photo", **{str(n): str(n) for n in HINT_COUNTS}}
    replace_between_markers(README, "hint-curve", markdown(table, columns))


def table(scratch: Path) -> None:
    from zoo.spec import model_specs, weights_path

    shipped = [name for name in model_specs() if weights_path(name) is not None]
    rows = zoo_json("bench", *shipped, "--checkpoints", str(ROOT / "zoo" / "weights"), "--data", "heldout",
                    "--results", "table", cwd=scratch)
    rows = [r for r in rows if r["model"] != "truth"]
    columns = {"model": "model", "PSNR (dB)": "PSNR (dB)", "SSIM": "SSIM", "CIEDE2000": "CIEDE2000 (lower is better)",
               "dCF": "dCF (lower is better)", "infer img/s": "photos/s at 256 px", "params (M)": "parameters"}
    replace_between_markers(README, "models", markdown(rows, columns))
    for name in shipped:  # each model card: its own row and gray's
        replace_between_markers(ROOT / "zoo" / "weights" / f"{name}.md", "held-out",
                                markdown([r for r in rows if r["model"] in (name, "gray")], columns))


def external(scratch: Path) -> None:
    """Each shipped model on photos from packages the sample lacks (`--data debian-external`, downloaded once),
    gray beside it, in its card; the default's sample grid of every 10th of them, the first four."""
    from zoo.spec import model_specs, weights_path

    columns = {"model": "model", "PSNR (dB)": "PSNR (dB)", "SSIM": "SSIM", "CIEDE2000": "CIEDE2000 (lower is better)",
               "dCF": "dCF (lower is better)"}
    for name in (name for name in model_specs() if weights_path(name) is not None):
        rows = zoo_json("score", name, "--data", "debian-external", "--results", "external", cwd=scratch)
        replace_between_markers(ROOT / "zoo" / "weights" / f"{name}.md", "debian-external",
                                markdown([r for r in rows if r["model"] in (name, "gray")], columns))
    from zoo.data import resolve_source

    sample_grid(resolve_source("debian-external")[::10][:4], DOCS / "default-external.jpg", scratch)


def app(scratch: Path) -> None:
    """The page as a person uses it: a held-out photo dropped on it, a hint placed, a second one being tried."""
    import socket
    import time
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["zoo", "app", "--port", str(port)], cwd=scratch, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        photo = heldout()[24]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.set_input_files("#photos input[type=file]", str(photo))
            page.wait_for_selector("#canvas img", timeout=120_000)
            page.wait_for_function("document.querySelector('#note').innerText.includes('0 hint(s)')")
            box = page.locator("#canvas img").bounding_box()

            def click_and_pick(across: float, down: float, colour: str) -> None:  # a point of the photo, a colour
                page.mouse.click(box["x"] + across * box["width"], box["y"] + down * box["height"])
                page.wait_for_function("document.querySelector('#note').innerText.includes('Point (')")
                page.wait_for_function("document.querySelectorAll('#hint-tries img').length == 3")
                shown = page.get_attribute("#hint-tries img", "src")
                page.click("#hint-colour .dialog-button")
                page.fill("#hint-colour input[type=text]", colour)
                page.keyboard.press("Enter")
                page.click("h1")
                page.wait_for_function(f"document.querySelector('#hint-tries img')?.src != {json.dumps(shown)}")

            click_and_pick(0.5, 0.12, "#3f7fd0")  # the sky
            page.click("#add-hint")
            page.wait_for_function("document.querySelector('#note').innerText.includes('1 hint(s)')")
            page.wait_for_timeout(1500)  # the photo redrawn with the hint
            click_and_pick(0.5, 0.6, "#c0704a")  # the rock: its three tries shown
            page.wait_for_timeout(1500)
            page.screenshot(path=str(DOCS / "app.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(20)


PARTS = {"grid": grid, "curve": curve, "table": table, "external": external, "app": app}

if __name__ == "__main__":
    wanted = sys.argv[1:] or list(PARTS)
    unknown = [name for name in wanted if name not in PARTS]
    if unknown:
        sys.exit(f"no part {unknown[0]!r}: choose from {', '.join(PARTS)}")
    with tempfile.TemporaryDirectory() as scratch:
        for name in wanted:
            PARTS[name](Path(scratch))
            print(f"{name}: done")
