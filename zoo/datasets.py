"""Named public datasets: resumable checksummed downloads, safe extraction and a deterministic selection.

``fetch(name)`` downloads the archive into the cache (``~/.cache/colorization-zoo``, or ``$ZOO_CACHE``, or an
explicit ``cache_dir``) as ``<file>.part``, resuming with an HTTP Range request where a previous attempt left
off; checks its size and checksum; renames it into place; extracts it once (``tarfile`` with the ``"data"``
filter, so no member can land outside the cache) behind a marker file; and returns the selected image paths.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_ENV = "ZOO_CACHE"
MARKER = ".extracted"
TIMEOUT_S = 60
_CHUNK = 1 << 20


class DatasetError(RuntimeError):
    """A named dataset could not be downloaded, verified or extracted; the message is one line."""


@dataclass(frozen=True)
class Selection:
    """``count`` files chosen like ``np.random.seed(seed); np.random.choice(sorted_files, count, replace=False)``."""

    count: int
    seed: int


@dataclass(frozen=True)
class NamedDataset:
    """A downloadable archive of photos and which of its files to use."""

    url: str
    checksum: str  # "<hashlib algorithm>:<hex digest>"
    size: int  # bytes of the archive
    subdir: str  # folder inside the extracted archive that holds the photos
    pattern: str = "*.jpg"  # which files of ``subdir`` are photos
    selection: Selection | None = None  # None: every matching file
    checksum_bytes: int | None = None  # hash only the first N bytes (fastai's checks.txt convention)
    description: str = ""

    @property
    def filename(self) -> str:
        """The archive's file name, taken from its URL."""
        return self.url.rsplit("/", 1)[-1]


# fastai's URLs.COCO_SAMPLE; size and checksum from fastai/data/checks.txt, where the md5 is that of the first
# MiB only (fastai's _check_file hashes f.read(2**20)), so together with the exact size that is what we check.
COCO_SAMPLE = NamedDataset(
    url="https://s3.amazonaws.com/fast-ai-coco/coco_sample.tgz",
    checksum="md5:006cd55d633d94b36ecaf661467830ec",
    checksum_bytes=2**20,
    size=3_245_877_008,
    subdir="coco_sample/train_sample",
    description="all of fastai's COCO_SAMPLE train_sample photos (about 20,000)",
)

DATASETS: dict[str, NamedDataset] = {
    "coco-10k": replace(
        COCO_SAMPLE,
        selection=Selection(count=10_000, seed=123),
        description="10,000 COCO photos drawn from fastai's COCO_SAMPLE as the U-Net + GAN colorization tutorial does",
    ),
    "coco-sample": COCO_SAMPLE,
}


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$ZOO_CACHE``, else ``~/.cache/colorization-zoo``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "colorization-zoo")


def fetch(name: str, cache_dir: Path | str | None = None) -> list[Path]:
    """Download and extract the named dataset if needed; return its selected photos, sorted."""
    spec = DATASETS[name]
    root = cache_root(cache_dir)
    extracted = root / spec.filename.split(".")[0]
    if not (extracted / MARKER).exists():
        archive = root / "downloads" / spec.filename
        if archive.exists():
            verify(archive, spec.checksum, spec.size, spec.checksum_bytes, hint="delete it to download it again")
        else:
            download(spec.url, archive, checksum=spec.checksum, size=spec.size, checksum_bytes=spec.checksum_bytes)
        extract(archive, extracted)
    return select(extracted / spec.subdir, spec.pattern, spec.selection)


def download(
    url: str, dest: Path, *, checksum: str, size: int | None = None, checksum_bytes: int | None = None
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file; verify, then rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        have = 0  # not a prefix of this file: start again
    if size is None or have < size:
        _fetch_into(url, part, have, dest)
    try:
        verify(part, checksum, size, checksum_bytes, label=url, hint="deleted the download")
    except DatasetError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, have: int, dest: Path) -> None:
    """Write ``url`` into ``part``, asking only for the bytes after its first ``have`` bytes."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    log.info("downloading %s to %s%s", url, dest, f" (resuming at byte {have:,})" if have else "")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            resumed = have > 0 and response.status == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise DatasetError(f"{url} answered the range request for bytes {have}- with another range")
            with open(part, "ab" if resumed else "wb") as out:  # a server that ignores Range sends it all
                shutil.copyfileobj(response, out, _CHUNK)
    except (urllib.error.URLError, OSError) as err:
        reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise DatasetError(
            f"could not download {url} ({str(reason).strip()}); "
            f"run again to resume, or download it by hand and save it as {dest}"
        ) from err


def verify(
    path: Path, checksum: str, size: int | None, checksum_bytes: int | None = None, *, label: str = "", hint: str = ""
) -> None:
    """Raise DatasetError unless ``path`` has ``size`` bytes and the ``"algorithm:hexdigest"`` ``checksum``.

    The message names ``label`` (default: the file name) and ends with ``hint``.
    """
    actual = path.stat().st_size
    label = label or path.name
    suffix = f"; {hint}" if hint else ""
    if size is not None and actual != size:
        raise DatasetError(f"{label} has {actual:,} bytes, expected {size:,}{suffix}")
    algorithm, _, expected = checksum.partition(":")
    digest = hashlib.new(algorithm)
    remaining = actual if checksum_bytes is None else checksum_bytes
    with open(path, "rb") as f:
        while remaining > 0 and (chunk := f.read(min(_CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    if digest.hexdigest() != expected.lower():
        raise DatasetError(
            f"checksum mismatch for {label}: {algorithm} {digest.hexdigest()}, expected {expected}{suffix}"
        )


def extract(archive: Path, dest: Path) -> Path:
    """Extract a tar archive into ``dest`` once; members that would land outside it are refused."""
    if (dest / MARKER).exists():
        return dest
    staging = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        detail = " ".join(str(err).split())  # tarfile's messages can span lines
        if isinstance(err, tarfile.FilterError):
            raise DatasetError(f"refusing to extract {archive.name}: {detail}") from err
        raise DatasetError(f"could not extract {archive.name}: {detail}; delete it to download it again") from err
    (staging / MARKER).write_text(f"{archive.name}\n")
    shutil.rmtree(dest, ignore_errors=True)  # a stale extraction without its marker
    os.replace(staging, dest)
    return dest


def select(folder: Path, pattern: str, selection: Selection | None) -> list[Path]:
    """The files of ``folder`` matching ``pattern``, narrowed by ``selection``; sorted."""
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    wanted = len(files) if selection is None else selection.count
    if not files or len(files) < wanted:
        raise DatasetError(f"{folder} has {len(files)} files matching {pattern!r}, expected at least {max(wanted, 1)}")
    if selection is None:
        return files
    picked = np.random.RandomState(selection.seed).choice(len(files), selection.count, replace=False)
    return sorted(files[i] for i in picked)
