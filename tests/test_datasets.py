"""zoo.downloads offline: a tiny COCO-sample-shaped archive served from file:// and from a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import photos_path

from zoo import downloads
from zoo.cli import main
from zoo.data import resolve_source
from zoo.downloads import (
    DatasetError,
    DebianPackage,
    DebianPhotos,
    NamedDataset,
    Selection,
    cache_root,
    download,
    extract,
    verify,
)

PHOTOS = photos_path()
NAMES = ["darknet--dog.jpg", "darknet--eagle.jpg", "darknet--giraffe.jpg", "darknet--horses.jpg", "darknet--kite.jpg"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """coco_sample.tgz laid out like fastai's: coco_sample/train_sample/*.jpg plus annotations."""
    path = tmp_path_factory.mktemp("archive") / "coco_sample.tgz"
    with tarfile.open(path, "w:gz", dereference=True) as tar:  # the photos, not the links of photos_path's fallback
        for name in NAMES:
            tar.add(PHOTOS / name, arcname=f"coco_sample/train_sample/{name}")
        add_bytes(tar, "coco_sample/annotations/train_sample.json", b"{}")
    return path


def add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def register(monkeypatch: pytest.MonkeyPatch, archive: Path, **changes: object) -> NamedDataset:
    spec = NamedDataset(
        url=archive.as_uri(),
        checksum=sha256(archive),
        size=archive.stat().st_size,
        subdir="coco_sample/train_sample",
        selection=Selection(count=3, seed=123),
    )
    spec = replace(spec, **changes)
    monkeypatch.setitem(downloads.DATASETS, "tiny-coco", spec)
    return spec


def test_named_dataset_downloads_extracts_and_selects_like_the_tutorial(archive, tmp_path, monkeypatch):
    register(monkeypatch, archive)
    cache = tmp_path / "cache"
    paths = resolve_source("tiny-coco", cache_dir=cache)

    np.random.seed(123)  # the tutorial's own selection, over the sorted file list
    expected = np.random.choice(np.array(sorted(NAMES)), 3, replace=False)
    assert [p.name for p in paths] == sorted(expected)
    assert all(p.read_bytes() == (PHOTOS / p.name).read_bytes() for p in paths)
    assert (cache / "downloads" / "coco_sample.tgz").read_bytes() == archive.read_bytes()
    assert (cache / "coco_sample" / downloads.MARKER).exists()
    assert not list(cache.rglob("*.part")) and not list(cache.glob("*.extracting"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded or extracted again")

    monkeypatch.setattr(downloads, "_fetch_into", refuse)
    monkeypatch.setattr(tarfile, "open", refuse)
    assert resolve_source("tiny-coco", cache_dir=cache) == paths


def test_without_selection_every_photo_is_used(archive, tmp_path, monkeypatch):
    register(monkeypatch, archive, selection=None)
    assert [p.name for p in resolve_source("tiny-coco", cache_dir=tmp_path)] == sorted(NAMES)


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("ZOO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "colorization-zoo"


def test_checksum_mismatch_deletes_the_download(archive, tmp_path, monkeypatch):
    register(monkeypatch, archive, checksum="sha256:" + "0" * 64)
    expected = r"^checksum mismatch for file://\S+/coco_sample.tgz: sha256 [0-9a-f]{64}, expected 0+; deleted"
    with pytest.raises(DatasetError, match=expected):
        resolve_source("tiny-coco", cache_dir=tmp_path)
    assert not list((tmp_path / "downloads").iterdir()) and not (tmp_path / "coco_sample").exists()


def test_size_mismatch_is_refused(archive, tmp_path):
    with pytest.raises(DatasetError, match=r"has [\d,]+ bytes, expected 1,000"):
        download(archive.as_uri(), tmp_path / "a.tgz", checksum=sha256(archive), size=1000)
    assert not list(tmp_path.iterdir())


def test_checksum_of_the_first_bytes_only(tmp_path):
    """fastai's checks.txt convention: the exact size plus the md5 of the first MiB."""
    blob = bytearray(np.random.default_rng(0).bytes(5 << 19))  # 2.5 MiB
    path = tmp_path / "blob"
    path.write_bytes(bytes(blob))
    head_md5 = "md5:" + hashlib.md5(blob[: 1 << 20]).hexdigest()
    verify(path, head_md5, len(blob), checksum_bytes=1 << 20)
    blob[2 << 20] ^= 0xFF  # after the first MiB: not covered
    path.write_bytes(bytes(blob))
    verify(path, head_md5, len(blob), checksum_bytes=1 << 20)
    blob[1000] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        verify(path, head_md5, len(blob), checksum_bytes=1 << 20)


# ---------------------------------------------------------------------------------------------------- HTTP


class RangeServer(ThreadingHTTPServer):
    """Serves one payload on 127.0.0.1, honouring ``Range: bytes=N-`` unless told not to; logs each request."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.payload = payload
        self.honour_range = True
        self.requests: list[tuple[str | None, int]] = []  # (Range header, bytes sent)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/coco_sample.tgz"


class RangeHandler(BaseHTTPRequestHandler):
    server: RangeServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        payload, asked = self.server.payload, self.headers.get("Range")
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and self.server.honour_range else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(payload) - start))
        self.end_headers()
        self.server.requests.append((asked, len(payload) - start))
        self.wfile.write(payload[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(archive: Path) -> Iterator[RangeServer]:
    srv = RangeServer(archive.read_bytes())
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def test_download_resumes_a_partial_file(server, archive, tmp_path):
    payload = archive.read_bytes()
    half = len(payload) // 2
    dest = tmp_path / "coco_sample.tgz"
    (tmp_path / "coco_sample.tgz.part").write_bytes(payload[:half])
    download(server.url, dest, checksum=sha256(archive), size=len(payload))
    assert server.requests == [(f"bytes={half}-", len(payload) - half)]
    assert dest.read_bytes() == payload and not (tmp_path / "coco_sample.tgz.part").exists()


def test_download_restarts_when_the_server_ignores_range(server, archive, tmp_path):
    payload = archive.read_bytes()
    server.honour_range = False
    dest = tmp_path / "coco_sample.tgz"
    (tmp_path / "coco_sample.tgz.part").write_bytes(b"\0" * (len(payload) // 2))  # would corrupt an append
    download(server.url, dest, checksum=sha256(archive), size=len(payload))
    assert server.requests == [(f"bytes={len(payload) // 2}-", len(payload))]
    assert dest.read_bytes() == payload


def test_offline_download_error_names_url_and_where_to_put_the_file(tmp_path):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/coco_sample.tgz"
    dest = tmp_path / "downloads" / "coco_sample.tgz"
    with pytest.raises(DatasetError) as info:
        download(url, dest, checksum="sha256:" + "0" * 64, size=10)
    message = str(info.value)
    assert message.startswith(f"could not download {url} (") and f"save it as {dest}" in message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("kind", ["dot-dot", "symlink-out"])
def test_extraction_refuses_members_outside_the_destination(tmp_path, kind):
    bad = tmp_path / "evil.tgz"
    with tarfile.open(bad, "w:gz") as tar:
        add_bytes(tar, "coco_sample/train_sample/fine.txt", b"ok")
        if kind == "symlink-out":
            link = tarfile.TarInfo("coco_sample/escape")
            link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path / "outside")
            tar.addfile(link)
        else:
            add_bytes(tar, "../evil.txt", b"pwned")
    dest = tmp_path / "cache" / "evil"
    dest.parent.mkdir()
    with pytest.raises(DatasetError, match="^refusing to extract evil.tgz: "):
        extract(bad, dest)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "cache" / "evil.txt").exists()
    assert not list((tmp_path / "cache").iterdir())  # nothing half-extracted left behind


def test_absolute_member_lands_inside_the_destination(tmp_path):
    archive = tmp_path / "abs.tgz"
    outside = tmp_path / "outside.txt"
    with tarfile.open(archive, "w:gz") as tar:
        add_bytes(tar, str(outside), b"pwned")
    dest = extract(archive, tmp_path / "out")
    assert not outside.exists()
    assert (dest / str(outside).lstrip("/")).read_bytes() == b"pwned"


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.tgz"
    bad.write_bytes(b"not a tar archive")
    with pytest.raises(DatasetError, match="^could not extract broken.tgz: .*delete it to download it again$") as info:
        extract(bad, tmp_path / "out")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- photos out of Debian packages


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Debian package, built by dpkg-deb: two sample photos in its tree, a link to one, and a text file."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb (Debian's dpkg) builds the test package")
    tree = tmp_path_factory.mktemp("deb") / "wallpapers"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text("Package: wallpapers\nVersion: 1.0-1\nArchitecture: all\n"
                                             "Maintainer: zoo <zoo@example.org>\nDescription: two photos\n")
    photos = tree / "usr" / "share" / "backgrounds"
    photos.mkdir(parents=True)
    for name in NAMES[:2]:
        shutil.copyfile(PHOTOS / name, photos / name)
    (photos / "link.jpg").symlink_to(NAMES[0])
    (photos / "README").write_text("not a photo")
    built = tree.with_name("wallpapers_1.0-1_all.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(built)], check=True,
                   capture_output=True)
    return built


def debian_photos(monkeypatch: pytest.MonkeyPatch, deb: Path, tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    """Register ``tiny-debian``: ``deb`` by its file URL and a manifest of ``rows`` (a name and a path in it)."""
    manifest = tmp_path / "manifest.tsv"
    lines = ["# a comment", "name\tpackage\tpath\tsha256\tlicence\tauthor"]
    for name, path in rows:
        digest = hashlib.sha256((PHOTOS / Path(path).name).read_bytes()).hexdigest() if Path(path).name in NAMES \
            else "0" * 64
        lines.append(f"{name}\twallpapers\t{path}\t{digest}\tCC0-1.0\tsomeone")
    manifest.write_text("\n".join(lines) + "\n")
    package = DebianPackage(url=deb.as_uri(), sha256=sha256(deb).removeprefix("sha256:"), size=deb.stat().st_size)
    monkeypatch.setitem(downloads.DATASETS, "tiny-debian", DebianPhotos(packages=(package,), manifest=manifest))


def test_debian_photos_are_read_out_of_their_package_checked_and_kept(deb, tmp_path, monkeypatch):
    debian_photos(monkeypatch, deb, tmp_path, [("a--dog.jpg", f"usr/share/backgrounds/{NAMES[0]}"),
                                               ("b--eagle.jpg", f"usr/share/backgrounds/{NAMES[1]}")])
    cache = tmp_path / "cache"
    paths = resolve_source("tiny-debian", cache_dir=cache)
    assert [p.name for p in paths] == ["a--dog.jpg", "b--eagle.jpg"]
    assert [p.read_bytes() for p in paths] == [(PHOTOS / name).read_bytes() for name in NAMES[:2]]
    kept = sorted(p.name for p in (cache / "tiny-debian").iterdir())
    assert kept == [downloads.MARKER, *(p.name for p in paths)]
    (cache / "downloads" / deb.name).unlink()  # once extracted, the folder is what is used
    assert resolve_source("tiny-debian", cache_dir=cache) == paths


def test_the_command_line_says_what_it_downloads_once(deb, tmp_path, monkeypatch):
    debian_photos(monkeypatch, deb, tmp_path, [("a--dog.jpg", f"usr/share/backgrounds/{NAMES[0]}")])
    command = ["score", "gray", "--data", "tiny-debian", "--image-size", "32", "--workers", "0", "--results",
               str(tmp_path / "results")]
    runner = CliRunner(env={"ZOO_CACHE": str(tmp_path / "cache")})
    first, again = runner.invoke(main, command), runner.invoke(main, command)
    assert first.exit_code == again.exit_code == 0, first.output
    said = f"downloading {deb.as_uri()} to {tmp_path / 'cache' / 'downloads' / deb.name}"
    assert first.stderr.splitlines().count(said) == 1 and said not in again.stderr


def test_a_package_the_pool_has_dropped_comes_from_snapshot_by_its_sha1(deb, tmp_path, monkeypatch):
    debian_photos(monkeypatch, deb, tmp_path, [("a--dog.jpg", f"usr/share/backgrounds/{NAMES[0]}")])
    spec = downloads.DATASETS["tiny-debian"]
    sha1 = hashlib.sha1(deb.read_bytes()).hexdigest()  # noqa: S324 - snapshot.debian.org's own name for a file
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    shutil.copyfile(deb, snapshot / sha1)
    monkeypatch.setattr(downloads, "SNAPSHOT", f"{snapshot.as_uri()}/{{}}")
    gone = replace(spec.packages[0], url=(tmp_path / "pool" / deb.name).as_uri(), sha1=sha1)
    monkeypatch.setitem(downloads.DATASETS, "tiny-debian", replace(spec, packages=(gone,)))
    assert gone.urls == (gone.url, (snapshot / sha1).as_uri())
    paths = resolve_source("tiny-debian", cache_dir=tmp_path / "cache")
    assert [p.read_bytes() for p in paths] == [(PHOTOS / NAMES[0]).read_bytes()]

    (snapshot / sha1).unlink()  # gone from both: one line that names both places
    with pytest.raises(DatasetError, match=rf"^could not download {re.escape((snapshot / sha1).as_uri())} .*"
                                           rf"\(also tried {re.escape(gone.url)}\)$"):
        resolve_source("tiny-debian", cache_dir=tmp_path / "other-cache")


@pytest.mark.parametrize(("path", "message"), [
    ("usr/share/backgrounds/link.jpg", r": has no usr/share/backgrounds/link.jpg$"),  # a link is not a photo
    ("usr/share/backgrounds/missing.jpg", r": has no usr/share/backgrounds/missing.jpg$"),
    ("usr/share/backgrounds/README", r": usr/share/backgrounds/README is not the photo manifest.tsv names \(SHA-256"),
])
def test_a_photo_the_package_does_not_hold_as_named_is_one_line_and_leaves_nothing(deb, tmp_path, monkeypatch,
                                                                                   path, message):
    debian_photos(monkeypatch, deb, tmp_path, [("a--dog.jpg", f"usr/share/backgrounds/{NAMES[0]}"), ("x.jpg", path)])
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=rf"^\S+wallpapers_1.0-1_all.deb{message}") as info:
        resolve_source("tiny-debian", cache_dir=cache)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in cache.iterdir()) == ["downloads"]  # the checked package only: no half folder


def test_debian_external_offline_names_the_package_url_and_downloads_nothing(tmp_path):
    with pytest.raises(DatasetError, match=r"^debian-external is not in \S+ and \$ZOO_OFFLINE forbids downloading "
                                           r"https://deb\.debian\.org/debian/pool/main/p/plasma-workspace-wallpapers/"):
        resolve_source("debian-external", cache_dir=tmp_path)
    assert not list(tmp_path.rglob("*.deb*"))


def test_the_debian_external_manifest_names_each_photo_its_package_and_licence():
    spec = downloads.DATASETS["debian-external"]
    photos = spec.photos()
    assert len(photos) == 41 and len({p.name for p in photos}) == 41
    assert {p.package for p in photos} == {package.name for package in spec.packages}
    assert all(re.fullmatch("[0-9a-f]{40}", package.sha1) for package in spec.packages)  # snapshot.debian.org's
    for p in photos:
        assert p.name == f"{p.package}--{p.name.split('--')[1]}" and Path(p.name).suffix == Path(p.path).suffix
        assert re.fullmatch("[0-9a-f]{64}", p.sha256) and p.licence and p.author and p.path.startswith("usr/share/")


# ---------------------------------------------------------------------------------------------------- weights


def test_weights_download_through_pooch_is_checked_and_cached(server, archive, tmp_path, monkeypatch):
    """fetch_weights: pooch downloads once (from a local server), checks the SHA-256, then uses the cached file;
    a wrong checksum leaves nothing behind; offline with nothing cached is one line."""
    payload = archive.read_bytes()  # any bytes stand in for a weights file
    good = downloads.WeightsFile(url=server.url, sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(downloads.WEIGHTS, "stand-in", good)
    monkeypatch.delenv("ZOO_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = downloads.fetch_weights("stand-in", cache_dir=tmp_path / "cache")
    assert path == tmp_path / "cache" / "weights" / "coco_sample.tgz" and path.read_bytes() == payload
    assert downloads.fetch_weights("stand-in", cache_dir=tmp_path / "cache") == path
    assert len(server.requests) == 1  # the second call used the cache

    monkeypatch.setitem(downloads.WEIGHTS, "stand-in", replace(good, sha256="0" * 64))
    with pytest.raises(DatasetError, match=r"^could not download http://127\.0\.0\.1:\d+/coco_sample\.tgz \(.*\); "):
        downloads.fetch_weights("stand-in", cache_dir=tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.tgz"))

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"ZOO_OFFLINE forbids downloading") as info:
        downloads.fetch_weights("stand-in", cache_dir=tmp_path / "offline")
    assert "\n" not in str(info.value) and len(server.requests) == 2
