"""Models shared through the Hugging Face Hub: a folder anyone can load, ``hf:`` names, and the upload.

One path through it::

    export_folder(checkpoint, DIR)      -> DIR/model.safetensors (every tensor, float32, the zoo's header)
                                           DIR/config.json       (the resolved spec: no registry entry needed)
                                           DIR/README.md         (the Hub's model card: metadata + held-out scores)
    push(DIR, "owner/repo")             -> the folder uploaded (needs a token: `hf auth login` or HF_TOKEN)
    fetch("hf:owner/repo@rev")          -> the folder, downloaded once into huggingface_hub's cache
    folder_checkpoint(DIR)              -> DIR/model.safetensors, once config.json agrees with its header

``--model hf:OWNER/REPO[@REVISION]`` on colorize, score, bench, export and the app, and ``--checkpoint DIR``, load
through :func:`zoo.checkpoint.load_generator`: safetensors only, every tensor present (nothing rebuilt, nothing
unpickled). With ``HF_HUB_OFFLINE=1`` a repository is taken from the cache or refused in one line.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import files
from zoo.errors import ZooError, one_line

PREFIX = "hf:"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
LIBRARY = "colorization-zoo"
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class HubError(ZooError, RuntimeError):
    """A Hub folder, name or upload that does not work; the message names it, in one line."""


def is_hub_name(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


def parse_name(name: str) -> tuple[str, str | None]:
    """(``owner/repo``, revision or None) of ``hf:owner/repo[@revision]``."""
    repo, _, revision = name.removeprefix(PREFIX).partition("@")
    if not _REPO.fullmatch(repo) or (revision == "" and "@" in name):
        raise HubError(f"{name}: not a Hub model name (expected hf:OWNER/REPO or hf:OWNER/REPO@REVISION)")
    return repo, revision or None


def fetch(name: str) -> Path:
    """The local folder of Hub model ``name`` (``hf:owner/repo[@revision]``): downloaded once into
    huggingface_hub's cache, from the cache after that and whenever ``HF_HUB_OFFLINE=1``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = parse_name(name)
    try:
        folder = snapshot_download(repo, revision=revision, allow_patterns=[WEIGHTS, CONFIG, CARD])
    except LocalEntryNotFoundError:
        raise HubError(f"{name}: not in the Hugging Face cache, and it cannot be downloaded here (offline, or"
                       f" HF_HUB_OFFLINE=1): download it once on a machine that can reach the Hub") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise HubError(f"{name}: cannot be downloaded ({one_line(err, 300)})") from None
    return Path(folder)


def model_spec(name: str) -> Any:
    """The resolved spec of Hub model ``name`` (what its config.json holds)."""
    from zoo.checkpoint import read_meta
    from zoo.spec import spec_from_dict

    meta = read_meta(folder_checkpoint(fetch(name)))
    return spec_from_dict(meta["model"], meta["spec"])


def folder_checkpoint(folder: Path) -> Path:
    """The weights file of a Hub-layout folder, after checking that its config.json names the same model and
    spec as the weights' own header (:func:`zoo.checkpoint.read_meta`); CheckpointError naming the file."""
    from zoo.checkpoint import CheckpointError, read_meta

    config_path, weights = folder / CONFIG, folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS} (a Hub folder holds {WEIGHTS}, {CONFIG} and {CARD})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{config_path}: missing (a Hub folder holds {WEIGHTS}, {CONFIG} and {CARD})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path}: cannot read it as JSON ({one_line(err)})") from None
    meta = read_meta(weights)
    if not isinstance(config, Mapping) or (config.get("model"), config.get("spec")) != (meta["model"], meta["spec"]):
        raise CheckpointError(f"{config_path}: does not describe {weights} (another model or spec than its header)")
    return weights


def export_folder(checkpoint: Path, out: Path, scores: list[Mapping[str, Any]] | None = None,
                  data: str = "the zoo's sample-train photos", model: str | None = None) -> Path:
    """Write the Hub folder of ``checkpoint`` (any form the zoo loads) to ``out``, which must not exist yet:
    written beside it under a temporary name, then renamed, so a failed export leaves nothing. ``scores``: rows
    of ``zoo score`` (the model's and gray's) for the card."""
    from zoo.checkpoint import load_generator, save

    spec, predictor = load_generator(Path(checkpoint), model=model)
    meta = {"model": spec.name, "spec": spec.to_dict()}
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)  # then renamed onto ``out`` (new, or an empty folder) when whole
    try:
        save(staging / WEIGHTS, predictor.state_dict(), meta)
        files.write_text(staging / CONFIG, json.dumps({"library_name": LIBRARY, **meta}, indent=1) + "\n")
        files.write_text(staging / CARD, model_card(spec, scores or [], data))
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def score_for_card(model: str | None, checkpoint: Path) -> list[dict[str, Any]]:
    """``zoo score``'s rows (the model's, gray's, the truth's) of ``checkpoint`` on the held-out photos, for the
    card."""
    from zoo.checkpoint import load_generator
    from zoo.harness.scoring import load_model, score_models

    name = model or load_generator(Path(checkpoint))[0].name
    predictor = load_model(name, Path(checkpoint), "cpu")
    return score_models({name: predictor}, data="heldout", image_size=256, echo=lambda line: None).rows


def model_card(spec: Any, scores: list[Mapping[str, Any]], data: str) -> str:
    """The folder's README.md: the Hub's YAML metadata (library, licence, tags, the held-out scores as a
    model-index) and a short card."""
    ours = next((row for row in scores if row["model"] not in ("gray", "truth") and row.get("hints") is None), None)
    gray = next((row for row in scores if row["model"] == "gray" and row.get("hints") is None), None)
    encoder = spec.generator.settings.get("encoder", spec.generator.arch)
    metrics = [("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("ciede2000", "CIEDE2000"), ("dcf", "dCF")]
    lines = ["---", f"library_name: {LIBRARY}", "license: other", "license_name: mixed-training-photo-licences",
             "pipeline_tag: image-to-image",
             f"tags: [image-colorization, {LIBRARY}, {spec.generator.arch}]"]
    if ours is not None:
        lines += ["model-index:", f"- name: {spec.name}", "  results:", "  - task: {type: image-to-image, name: colorization}",
                  "    dataset: {type: colorization-zoo-heldout, name: colorization-zoo held-out photos}", "    metrics:"]
        lines += [f"    - {{type: {key}, value: {ours[key]:.4g}, name: {label}}}" for key, label in metrics
                  if ours.get(key) is not None]
    weights = spec.generator.settings.get("encoder_weights") or "random"
    lines += ["---", "", f"# {spec.name}", "", spec.description or "A colorization-zoo model.", "",
              f"- generator: `{spec.generator.arch}`, encoder `{encoder}` ({weights} initial weights)",
              f"- trained on: {data}",
              (f"- inference: short side {spec.working_size} px, flip average {spec.flip_average},"
               f" chroma knee {spec.chroma_knee:g}, chroma scale {spec.chroma_scale:g}"),
              ("- licence: the weights are derived from photos under their own licences (public domain, CC0, CC-BY,"
               " CC-BY-SA, GPL, ...), listed per photo in colorization-zoo's zoo/sample_photos/"),
              "", "```", f"pip install {LIBRARY}", "zoo colorize photo.jpg --model hf:OWNER/REPO --out colour/", "```"]
    if ours is not None and gray is not None:
        lines += ["", f"Held-out photos ({ours.get('images')}, `zoo score`, 256 px), gray (ab = 0) beside it:", "",
                  "| | " + " | ".join(label for _, label in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for name, row in ((spec.name, ours), ("gray", gray)):
            lines.append(f"| {name} | " + " | ".join(f"{row[key]:.4g}" for key, _ in metrics) + " |")
    return "\n".join(lines) + "\n"


def push(folder: Path, repo: str, private: bool = False) -> str:
    """Upload a Hub folder to model repository ``repo`` (made if missing); returns its URL. Needs a token."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    folder_checkpoint(folder)  # a folder that would not load is not uploaded
    if not _REPO.fullmatch(repo):
        raise HubError(f"{repo}: not a repository name (expected OWNER/REPO)")
    if get_token() is None:
        raise HubError(f"{repo}: no Hugging Face token (run `hf auth login` or set HF_TOKEN), so nothing is uploaded")
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                                 allow_patterns=[WEIGHTS, CONFIG, CARD], commit_message=f"{LIBRARY}: upload {folder.name}")
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise HubError(f"{repo}: upload failed ({one_line(err, 300)})") from None
    return str(getattr(info, "repo_url", None) or f"https://huggingface.co/{repo}")
