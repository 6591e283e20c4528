"""Downloads into the zoo's cache with pooch: named photo datasets and ImageNet encoder weights.

Everything lands under the cache (``~/.cache/colorization-zoo``, or ``$ZOO_CACHE``, or an explicit
``cache_dir``) through ``pooch.retrieve``, which fetches a file once and checks it.

``fetch(name)`` gets a dataset archive (``downloads/<file>``), extracts it once (``tarfile`` with the
``"data"`` filter, so no member can land outside the cache) behind a marker file, and returns the selected
image paths. Archives are large (COCO_SAMPLE is 3.2 GB), so pooch is given :class:`ResumingDownloader`, which
keeps a ``<file>.part`` across attempts and resumes it with an HTTP Range request, and checks the size and
checksum (fastai publishes the md5 of the first MiB only, which pooch's whole-file ``known_hash`` cannot
express). Extraction is the zoo's own: pooch's ``Untar`` passes tarfile's ``"data"`` filter only on Python
3.12 and later, and this package supports 3.11.

A :class:`DebianPhotos` dataset (``debian-external``: photos from packages no embedded photo comes from, to
check a model on) is a manifest (``zoo/datasets/NAME.tsv``: each photo's package, path, SHA-256, licence and
author) and the Debian packages that hold the photos: each package is downloaded as an archive is, the photos
are read out of its ``data.tar`` (no dpkg needed) and each is checked against its SHA-256.

``fetch_weights(name)`` gets an ImageNet weights file with pooch's own HTTP downloader and its SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pooch

from zoo.errors import ZooError, one_line
from zoo.files import write_bytes, write_text

log = logging.getLogger(__name__)

CACHE_ENV = "ZOO_CACHE"
OFFLINE_ENV = "ZOO_OFFLINE"  # set (not 0): nothing is downloaded; only what is cached is used
MARKER = ".extracted"
TIMEOUT_S = 60
SNAPSHOT = "https://snapshot.debian.org/file/{}"  # every file Debian published, by its SHA-1
_CHUNK = 1 << 20


class DatasetError(ZooError, RuntimeError):
    """A named dataset could not be downloaded, verified or extracted; the message is one line."""


@dataclass(frozen=True)
class Selection:
    """``count`` files chosen like ``np.random.seed(seed); np.random.choice(sorted_files, count, replace=False)``."""

    count: int
    seed: int


class _Published:
    """Something downloaded from ``url``: its file name is the URL's last part."""

    url: str

    @property
    def filename(self) -> str:
        """The file's name, taken from its URL."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class NamedDataset(_Published):
    """A downloadable archive of photos and which of its files to use."""

    url: str
    checksum: str  # "<hashlib algorithm>:<hex digest>"
    size: int  # bytes of the archive
    subdir: str  # folder inside the extracted archive that holds the photos
    pattern: str = "*.jpg"  # which files of ``subdir`` are photos
    selection: Selection | None = None  # None: every matching file
    checksum_bytes: int | None = None  # hash only the first N bytes (fastai's checks.txt convention)
    description: str = ""


@dataclass(frozen=True)
class DebianPackage(_Published):
    """A binary package: its URL in Debian's pool, size, SHA-256, and SHA-1, by which snapshot.debian.org keeps
    every file Debian ever published (the pool drops a version once a newer one replaces it)."""

    url: str
    sha256: str
    size: int
    sha1: str = ""

    @property
    def urls(self) -> tuple[str, ...]:
        """Where to download it: the pool, then snapshot.debian.org."""
        return (self.url, SNAPSHOT.format(self.sha1)) if self.sha1 else (self.url,)

    @property
    def name(self) -> str:
        """The package's name (``name_version_arch.deb``)."""
        return self.filename.split("_", 1)[0]


@dataclass(frozen=True)
class ManifestPhoto:
    """One row of a :class:`DebianPhotos` manifest."""

    name: str  # the file name it gets in the cache
    package: str
    path: str  # inside the package's file tree
    sha256: str
    licence: str
    author: str


@dataclass(frozen=True)
class DebianPhotos:
    """Photos picked out of Debian packages: the packages, and a manifest (a TSV: name, package, path inside it,
    SHA-256, licence, author; ``#`` comments) naming each photo and its licence."""

    packages: tuple[DebianPackage, ...]
    manifest: Path
    description: str = ""

    def photos(self) -> list[ManifestPhoto]:
        """The manifest's rows; one line naming the manifest when it is not one."""
        lines = [line for line in self.manifest.read_text(encoding="utf-8").splitlines()
                 if line and not line.startswith("#")]
        columns = [f.name for f in fields(ManifestPhoto)]
        header, *rows = (line.split("\t") for line in lines)
        if header != columns or any(len(row) != len(columns) for row in rows):
            raise DatasetError(f"{self.manifest}: not a tab-separated manifest of {', '.join(columns)}")
        photos = [ManifestPhoto(*row) for row in rows]
        if unknown := sorted({p.package for p in photos} - {package.name for package in self.packages}):
            raise DatasetError(f"{self.manifest}: names photos of {unknown[0]}, a package it does not list")
        return photos


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

DATASETS: dict[str, NamedDataset | DebianPhotos] = {
    "coco-10k": replace(
        COCO_SAMPLE,
        selection=Selection(count=10_000, seed=123),
        description="10,000 COCO photos drawn from fastai's COCO_SAMPLE as the U-Net + GAN colorization tutorial does",
    ),
    "coco-sample": COCO_SAMPLE,
    "debian-external": DebianPhotos(
        packages=(
            DebianPackage(
                url="https://deb.debian.org/debian/pool/main/p/plasma-workspace-wallpapers/"
                    "plasma-workspace-wallpapers_5.27.5-2_all.deb",
                sha256="32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
                sha1="8fac93e594ffa538f58b695e3c5d45267f6809c8",
                size=94_047_772,
            ),
            DebianPackage(
                url="https://deb.debian.org/debian/pool/main/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
                sha256="7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
                sha1="00dc62fcfd2f45c98fe8ee348a333d43c053faca",
                size=46_638_500,
            ),
            DebianPackage(
                url="https://deb.debian.org/debian/pool/main/p/plasma-workspace/"
                    "plasma-workspace-data_5.27.5-2+deb12u2_all.deb",
                sha256="057cda470bd0baf616b3e873bcaf993018d96c8ad30b09535c487f88554e6ea2",
                sha1="c95c4c2493529025e3053d2be2891e2cdc1c56bb",
                size=16_249_852,
            ),
        ),
        manifest=Path(__file__).parent / "datasets" / "debian-external.tsv",
        description="41 photos from three Debian packages (wallpapers, KDE's avatars) no sample photo comes from",
    ),
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
    if isinstance(spec, DebianPhotos):
        return fetch_debian_photos(name, spec, root)
    extracted = root / spec.filename.split(".")[0]
    if not (extracted / MARKER).exists():
        archive = root / "downloads" / spec.filename
        obtain(archive, (spec.url,), spec.checksum, spec.size, spec.checksum_bytes, name=name)
        extract(archive, extracted)
    return select(extracted / spec.subdir, spec.pattern, spec.selection)


def obtain(archive: Path, urls: Sequence[str], checksum: str, size: int | None, checksum_bytes: int | None = None,
           *, name: str) -> Path:
    """``archive`` checked against ``checksum`` and ``size``, downloaded when it is not there yet from the first of
    ``urls`` that gives it (a partial download resumes from the next: it is the same file). ``name`` is the
    dataset's, for the offline error."""
    if archive.exists():  # pooch would take it as it is: check it first
        verify(archive, checksum, size, checksum_bytes, label=str(archive), hint="delete it to download it again")
        return archive
    if offline() and not urls[0].startswith("file:"):
        raise DatasetError(f"{name} is not in {archive.parent.parent} and ${OFFLINE_ENV} forbids downloading {urls[0]}")
    downloader = ResumingDownloader(archive, checksum, size, checksum_bytes)
    errors: list[DatasetError] = []
    for url in urls:
        try:
            with _quiet_pooch():  # it would log the archive's hash as advice: the zoo checks its own
                pooch.retrieve(url, known_hash=None, fname=archive.name, path=archive.parent, downloader=downloader,
                               progressbar=False)
            return archive
        except DatasetError as err:
            errors.append(err)
            if len(errors) < len(urls):
                log.info("%s; trying %s", err, urls[len(errors)])
    also = f" (also tried {', '.join(urls[:-1])})" if len(urls) > 1 else ""
    raise DatasetError(f"{errors[-1]}{also}") from errors[-1]


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """pooch's logger at WARNING for the block (it reports each download at INFO on stderr)."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class ResumingDownloader:
    """A pooch downloader that resumes ``<dest>.part`` across attempts and checks size and checksum before
    handing the file to pooch (which moves it to ``dest``)."""

    def __init__(self, dest: Path, checksum: str, size: int | None, checksum_bytes: int | None = None) -> None:
        self.dest, self.checksum, self.size, self.checksum_bytes = Path(dest), checksum, size, checksum_bytes

    def __call__(self, url: str, output_file: str, pooch_object: object, check_only: bool = False) -> bool | None:
        if check_only:
            return True
        part = self.dest.with_name(self.dest.name + ".part")  # the same name at every attempt, so it resumes
        download(url, Path(output_file), checksum=self.checksum, size=self.size, checksum_bytes=self.checksum_bytes,
                 part=part, label=self.dest)
        return None


def download(
    url: str, dest: Path, *, checksum: str, size: int | None = None, checksum_bytes: int | None = None,
    part: Path | None = None, label: Path | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``part`` (default ``dest.part``), resuming a partial file; verify,
    then rename into place. Messages name ``label`` (default ``dest``) as where to put a hand download."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part or dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        have = 0  # not a prefix of this file: start again
    if size is None or have < size:
        _fetch_into(url, part, have, label or dest)
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
    with built_whole(dest, f"{archive.name}\n") as staging:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, OSError) as err:
            detail = one_line(err)  # tarfile's messages can span lines
            if isinstance(err, tarfile.FilterError):
                raise DatasetError(f"refusing to extract {archive.name}: {detail}") from err
            raise DatasetError(f"could not extract {archive.name}: {detail}; delete it to download it again") from err
    return dest


@contextlib.contextmanager
def built_whole(dest: Path, marker: str) -> Iterator[Path]:
    """A folder to fill in place of ``dest``: a staging twin that, when the block ends well, gets the marker file
    (``marker`` its text) and replaces ``dest`` (a stale extraction without its marker); when it fails, is removed.
    So ``dest`` appears whole or not at all."""
    staging = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_text(staging / MARKER, marker)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(staging, dest)


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


# ------------------------------------------------------------------------------ photos out of Debian packages


def fetch_debian_photos(name: str, spec: DebianPhotos, root: Path) -> list[Path]:
    """The photos of ``spec``, read out of its packages (downloaded into ``root/downloads`` and checked) into
    ``root/name`` once, each checked against its SHA-256; the folder appears whole or not at all."""
    folder = root / name
    photos = spec.photos()
    if not (folder / MARKER).exists():
        with built_whole(folder, "".join(f"{p.url}\n" for p in spec.packages)) as staging:
            for package in spec.packages:
                deb = obtain(root / "downloads" / package.filename, package.urls, f"sha256:{package.sha256}",
                             package.size, name=name)
                wanted = {p.path: p for p in photos if p.package == package.name}
                for path, data in read_deb_files(deb, set(wanted)).items():
                    photo, digest = wanted[path], hashlib.sha256(data).hexdigest()
                    if digest != photo.sha256:
                        raise DatasetError(f"{deb}: {path} is not the photo {spec.manifest.name} names "
                                           f"(SHA-256 {digest[:12]}..., expected {photo.sha256[:12]}...)")
                    write_bytes(staging / photo.name, data)
    return sorted(folder / photo.name for photo in photos)


def read_deb_files(deb: Path, paths: set[str]) -> dict[str, bytes]:
    """The regular files ``paths`` (as in the installed tree: ``usr/share/...``) of Debian package ``deb``: an
    ar archive whose ``data.tar.*`` member holds the tree. A path it lacks is a :class:`DatasetError`."""
    found: dict[str, bytes] = {}
    try:
        with open(deb, "rb") as f:
            if f.read(8) != b"!<arch>\n":
                raise DatasetError(f"{deb}: not a Debian package (no ar archive header)")
            while len(header := f.read(60)) == 60 and header[58:60] == b"`\n":
                member, size = header[:16].decode("ascii").strip().rstrip("/"), int(header[48:58])
                if not member.startswith("data.tar"):
                    f.seek(size + size % 2, os.SEEK_CUR)  # members are padded to an even length
                    continue
                with tarfile.open(fileobj=f, mode="r|*") as tar:  # the tree, streamed: it is the last member
                    for info in tar:
                        path = info.name.removeprefix("./")
                        if path in paths and info.isfile():
                            found[path] = tar.extractfile(info).read()  # type: ignore[union-attr]
                break
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError) as err:
        raise DatasetError(f"could not read {deb}: {one_line(err)}; delete it to download it again") from err
    if missing := sorted(paths - set(found)):
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{deb}: has no {missing[0]}{more}")
    return found


# ---------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WeightsFile(_Published):
    """A published weights file: where it is and its SHA-256 (which names it, torchvision-style)."""

    url: str
    sha256: str
    description: str = ""


WEIGHTS: dict[str, WeightsFile] = {
    # torchvision's ResNet18_Weights.IMAGENET1K_V1 (BSD-3-Clause): the ResNet18 of smp's "resnet18" encoder.
    "resnet18-imagenet": WeightsFile(
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        sha256="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
        description="torchvision ResNet18 IMAGENET1K_V1 (69.76% top-1)",
    ),
}


def torch_hub_checkpoints() -> Path:
    """Where torch keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    """Whether ``$ZOO_OFFLINE`` forbids downloads (the tests set it)."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def fetch_weights(name: str, cache_dir: Path | str | None = None) -> Path:
    """The local file of the weights called ``name``: torch's hub cache if torchvision already fetched it, else
    the zoo's cache, downloaded there (and checked) when missing. Raises :class:`DatasetError` in one line
    when it cannot be had (offline)."""
    spec = WEIGHTS[name]
    hub = torch_hub_checkpoints() / spec.filename
    if hub.is_file():
        return hub
    folder = cache_root(cache_dir) / "weights"
    if offline() and not (folder / spec.filename).is_file():
        raise DatasetError(f"{spec.filename} is not in {folder} or {hub.parent} and ${OFFLINE_ENV} forbids"
                           f" downloading {spec.url}")
    try:
        with _quiet_pooch():
            return Path(pooch.retrieve(spec.url, known_hash=f"sha256:{spec.sha256}", fname=spec.filename,
                                       path=folder, progressbar=False))
    except Exception as err:  # noqa: BLE001 - requests, OS and pooch's hash errors alike: one line
        detail = one_line(err, 200)
        raise DatasetError(f"could not download {spec.url} ({detail}); download it on a machine with internet"
                           f" and save it as {folder / spec.filename}") from err
