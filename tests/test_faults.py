"""Fault injection over every command: bad inputs, bad options and failures mid-run.

Each row of CASES runs one `zoo` command line in a fresh copy of a small world (tiny photos, a trained run, a
results file, broken checkpoints, registries and images) and checks three things: the exit status (0, 1 for a
problem with what was given, 2 for an option out of its range), one line of output that names the file at
fault and says what is wrong, and that nothing in the world changed outside the command's intended outputs
(every file, link and folder is hashed before and after). No traceback, ever.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from conftest import reset_discovery
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from zoo import checkpoint
from zoo.cli import main
from zoo.factory import create_predictor
from zoo.harness.video import AUDIO_RATE, write_clip
from zoo.spec import get_spec

TRAIN = "train simple-cnn --data photos --max-steps 2 --image-size 32 --set width=4 --set depth=2 --no-progress --workers 0"
RESUME = "train --resume run --no-progress --workers 0"
CKPT = "run/generator.safetensors"
COLORIZE = f"colorize --checkpoint {CKPT} --no-progress"
EXPORT = f"export simple-cnn --checkpoint {CKPT}"
BENCH = "bench simple-cnn --iters 1 --warmup 0 --image-size 32 --batch-size 1 --device cpu"
SCORE = "score gray --image-size 32 --workers 0"
REGISTRY_STAGE = '[models.m]\ngenerator = { arch = "simple-cnn", width = 4, depth = 2 }\n[[models.m.stages]]\nname = "s"\nloss = "l1"\n'
KILLED_AT_SECOND_CHECKPOINT = """
import os, signal, sys
real_fsync, seen = os.fsync, []
def fsync(fd):
    name = os.readlink(f"/proc/self/fd/{fd}")
    if name.endswith("last.safetensors") and ".tmp/" in name:  # written, not yet renamed into place
        seen.append(name)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    real_fsync(fd)
os.fsync = fsync
from zoo.cli import main
main(sys.argv[1:])
"""


# ------------------------------------------------------------------------------------------- the world


def colour_photo(rng: np.random.Generator, height: int = 40, width: int = 48) -> Image.Image:
    """A smooth, colourful photo-like image: gradients of random colours plus a little noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    corners = rng.uniform(0, 255, (4, 3))
    image = (corners[0] * (1 - x[..., None]) * (1 - y[..., None]) + corners[1] * x[..., None] * (1 - y[..., None])
             + corners[2] * (1 - x[..., None]) * y[..., None] + corners[3] * x[..., None] * y[..., None])
    return Image.fromarray((image + rng.normal(0, 8, image.shape)).clip(0, 255).astype(np.uint8))


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims ``width`` x ``height`` pixels (a decompression bomb's header) and holds none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def with_header(source: Path, target: Path, zoo_header: str | None = None, nan: bool = False) -> None:
    """A copy of checkpoint ``source`` with another ``zoo`` header, or with one weight set to NaN."""
    tensors = load_file(source)
    with safe_open(str(source), "pt") as f:
        metadata = dict(f.metadata())
    if zoo_header is not None:
        metadata["zoo"] = zoo_header
    if nan:
        key = next(k for k in sorted(tensors) if k.endswith("weight") and tensors[k].is_floating_point())
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float("nan")
    save_file(tensors, target, metadata=metadata)


class MakesAFile:
    """Unpickled without ``weights_only``, it would write ``path``: what a malicious weights file does."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return open, (self.path, "w")


def invoke(args: str) -> Result:
    return CliRunner().invoke(main, shlex.split(args))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world every case starts from (copied for each)."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(11)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for folder, count in (("photos", 6), ("nest", 2)):
            Path(folder).mkdir()
            for i in range(count):
                colour_photo(rng).save(f"{folder}/p{i}.png")
        trained = invoke(f"{TRAIN} --out run")
        assert trained.exit_code == 0, trained.output
        scored = invoke(f"{SCORE} --data photos --results results")
        assert scored.exit_code == 0, scored.output
        [results] = Path("results").glob("score-*.json")
        results.rename("results/score.json")

        bad = Path("bad")
        bad.mkdir()
        colour_photo(rng).save("bad/source.jpg", quality=90)
        jpeg = Path("bad/source.jpg").read_bytes()
        Path("bad/source.jpg").unlink()
        (bad / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
        (bad / "fake.jpg").write_text("not a JPEG at all\n")
        (bad / "empty.png").write_bytes(b"")
        png_header_only(bad / "bomb.png", 200_000, 200_000)

        odd = Path("odd")
        odd.mkdir()
        photo = colour_photo(rng, 40, 56)
        photo.convert("CMYK").save(odd / "cmyk.jpg", quality=95)
        photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(odd / "palette.png")
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned a quarter clockwise
        photo.save(odd / "rotated.jpg", exif=exif, quality=95)
        gray16 = (rng.random((300, 240)) * 65535).astype(np.uint16)  # large enough for PIL's quick reduction
        Image.fromarray(gray16).save(odd / "gray16.png")
        Image.fromarray(gray16).save(odd / "gray16.tif")
        tall = np.tile(np.linspace(0, 255, 100_000, dtype=np.float64)[:, None], (1, 32)).astype(np.uint8)
        Image.fromarray(tall).save(odd / "tall.png")  # 32 x 100,000: an (h, h) matrix would be 40 GB

        Path("loop").mkdir()
        colour_photo(rng).save("loop/p0.png")
        os.symlink(".", "loop/again")  # a folder that holds itself

        ckpt = Path("ckpt")
        ckpt.mkdir()
        with_header(Path(CKPT), ckpt / "nan.safetensors", nan=True)
        with_header(Path(CKPT), ckpt / "nokeys.safetensors", zoo_header=json.dumps({"step": 2}))
        with_header(Path(CKPT), ckpt / "notjson.safetensors", zoo_header="{step: 2")
        with_header(Path(CKPT), ckpt / "list.safetensors", zoo_header="[1, 2]")
        (ckpt / "truncated.safetensors").write_bytes(Path(CKPT).read_bytes()[:3000])
        torch.save(load_file(CKPT), ckpt / "pickle.pt")
        with open(ckpt / "evil.pt", "wb") as f:
            pickle.dump(MakesAFile(str(root / "pwned.txt")), f)
        (ckpt / "trap.pt").write_bytes(b"reading this file is a bug\n")
        trap = get_spec("unet-resnet18").with_overrides(generator={
            "encoder": "tu-mobilenetv3_small_050", "decoder_channels": [16, 8, 8, 8, 8],
            "encoder_weights": str(root / "ckpt" / "trap.pt")})
        checkpoint.save(ckpt / "trap.safetensors", create_predictor(trap, pretrained=False).state_dict(),
                        {"model": trap.name, "spec": trap.to_dict()})
        Path("ckpts").mkdir()
        shutil.copy(ckpt / "list.safetensors", "ckpts/broken.safetensors")
        shutil.copy(CKPT, "ckpts/simple-cnn.safetensors")

        registries = {
            "bad": "[models.m\n",
            "models5": "models = 5\n",
            "epochs": REGISTRY_STAGE + "epochs = -3\n",
            "image_size": REGISTRY_STAGE + "epochs = 1\nimage_size = 0\n",
            "batch_size": REGISTRY_STAGE + "epochs = 1\nbatch_size = 0\n",
            "time_share": REGISTRY_STAGE + "epochs = 1\ntime_share = 0\n",
            "crop": REGISTRY_STAGE + "epochs = 1\ncrop_scale = [0.9, 0.2]\n",
            "inference": REGISTRY_STAGE.replace("[[models.m.stages]]", "inference_size = 8\n[[models.m.stages]]") + "epochs = 1\n",
            "wide": REGISTRY_STAGE.replace("width = 4", 'width = "wide"') + "epochs = 1\n",
        }
        Path("reg").mkdir()
        for name, text in registries.items():
            Path(f"reg/{name}.toml").write_text(text)
        Path("reg/binary.toml").write_bytes(bytes(range(256)) * 4)
        Path("bin.dat").write_bytes(bytes(range(256)) * 4)
        Path("notjson.json").write_text("{rows: []\n")
        Path("list.json").write_text("[1, 2]\n")
        Path("hints").mkdir()  # photos are 48 x 40
        Path("hints/good.json").write_text('[{"x": 10, "y": 12, "color": "#c0392b"}, {"x": 40, "y": 30, "ab": [-20, 40]}]')
        Path("hints/broken.json").write_text('[{"x": 10, "y": 12, "color": "#c0392b"')
        Path("hints/outside.json").write_text('[{"x": 10, "y": 12, "color": "#c0392b", "size": 3}, {"x": 48, "y": 5,'
                                              ' "color": "#00ff00"}]')
        Path("hints/size0.json").write_text('[{"x": 10, "y": 12, "color": "#c0392b", "size": 0}]')
        Path("hints/alike-yes.json").write_text('[{"x": 10, "y": 12, "color": "#c0392b", "alike": "yes"}]')
        Path("hints/spread-far.json").write_text('[{"x": 10, "y": 12, "color": "#c0392b", "spread": "far"}]')
        Path("hints/folder").mkdir()
        Path("hints/folder/p0.json").write_text('[{"x": 1, "y": 2, "color": "#2040c0"}]')
        Path("hints/folder/p9.json").write_text('[{"x": 1, "y": 2, "color": "#2040c0"}]')  # there is no p9
        Path("hints/outside-in-folder").mkdir()
        Path("hints/outside-in-folder/p1.json").write_text('[{"x": 5, "y": 40, "color": "#2040c0"}]')
        Path("cache/downloads").mkdir(parents=True)
        Path("cache/downloads/coco_sample.tgz").write_bytes(b"an interrupted download" * 10)
        interrupted = b"an interrupted download" * 10
        Path("cache/downloads/plasma-workspace-wallpapers_5.27.5-2_all.deb").write_bytes(interrupted)
        video_world(rng)
    return root


def video_world(rng: np.random.Generator) -> None:
    """Clips (gray, 48 x 40 unless said): good ones, bad ones, and a folder of a photo and both."""
    frames = [np.asarray(colour_photo(rng).convert("L").convert("RGB")) for _ in range(8)]
    tone = np.sin(np.linspace(0, 2 * np.pi * 440 / 3, AUDIO_RATE // 3))  # 1/3 s of sound for 8 frames at 24/s
    Path("clips").mkdir()
    write_clip(Path("clips/good.mp4"), frames, 24, audio=tone)
    write_clip(Path("clips/vfr.mp4"), frames[:6], 24, pts=[0, 1, 3, 4, 9, 10])  # frame times 0, 1/24, 1/8, ...
    odd = np.asarray(colour_photo(rng, 241, 321).convert("L").convert("RGB"))
    write_clip(Path("clips/odd.mp4"), [odd] * 4, 24, pix_fmt="yuv444p")  # 4:2:0 needs even sides
    Path("badclips").mkdir()
    with av.open("badclips/audio-only.mp4", "w") as container:  # an .mp4 with sound alone
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone[None].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, 0
        container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    good = Path("clips/good.mp4").read_bytes()
    Path("badclips/truncated.mp4").write_bytes(good[: len(good) // 2])  # its index (moov) comes last: lost
    write_clip(Path("badclips/empty.avi"), [], 24)  # a video stream without a frame
    Path("badclips/still.mp4").write_bytes(Path("photos/p0.png").read_bytes())
    Path("mixed").mkdir()
    shutil.copy("photos/p0.png", "mixed/p0.png")
    shutil.copy("clips/good.mp4", "mixed/good.mp4")
    shutil.copy("badclips/truncated.mp4", "mixed/broken.mp4")


def snapshot(root: Path) -> dict[str, str]:
    """Every folder, link and file under ``root`` (by relative path) with what it holds."""
    found = {}
    for parent, folders, names in os.walk(root):
        for name in folders + names:
            path = Path(parent) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[key] = "link " + os.readlink(path)
            elif path.is_dir():
                found[key] = "folder"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp")]


@contextlib.contextmanager
def file_size_limit(size: int | None) -> Iterator[None]:
    """Writes past ``size`` bytes fail with EFBIG, as they fail with ENOSPC on a full disk."""
    if size is None:
        yield
        return
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


# ------------------------------------------------------------------------------------------- preparations


def existing_output(world: Path) -> None:
    (world / "out").mkdir()
    (world / "out" / "p0.png").write_bytes(b"kept")


def colorized_once(world: Path) -> None:
    with contextlib.chdir(world):
        assert invoke(f"{COLORIZE} nest --out nest/colour").exit_code == 0


def a_gif_among_the_photos(world: Path) -> None:
    colour_photo(np.random.default_rng(3)).save(world / "photos" / "anim.gif")


def existing_file(name: str) -> Callable[[Path], None]:
    def make(world: Path) -> None:
        (world / name).write_text("an earlier export\n")
    return make


def corrupt_run_file(world: Path) -> None:
    (world / "run" / "run.json").write_text('{"model": "simple-cnn", "spec": ')


def no_checkpoint(world: Path) -> None:
    (world / "run" / "checkpoints" / "last.safetensors").unlink()


def nan_checkpoint(world: Path) -> None:
    last = world / "run" / "checkpoints" / "last.safetensors"
    with_header(last, world / "nan-last.safetensors", nan=True)
    os.replace(world / "nan-last.safetensors", last)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stale_temporaries(world: Path) -> None:
    """What writers killed mid-write leave: a temporary folder of a dead process holding safetensors' own
    temporary, and one of the old single-file kind; and one of a running process (this one), to be kept."""
    pid = dead_pid()
    folder = world / "run" / "checkpoints" / f".last.safetensors.{pid}-0123abcd.tmp"
    folder.mkdir()
    (folder / ".tmpX6C8bQ").write_bytes(b"\0" * 4096)
    (world / "run" / f".generator.safetensors.{pid}-4567cdef.tmp").write_bytes(b"")
    (world / "run" / f".run.json.{os.getpid()}-89abcdef.tmp").write_bytes(b"in progress")


def unreadable_photo(world: Path) -> None:
    (world / "unreadable").mkdir()
    shutil.copy(world / "photos" / "p0.png", world / "unreadable" / "p0.png")
    (world / "unreadable" / "p0.png").chmod(0)


def stale_colorize_temporary(world: Path) -> None:
    (world / "out" / "sub").mkdir(parents=True)
    (world / "out" / "sub" / f".p0.png.{dead_pid()}-0123abcd.tmp").write_bytes(b"half a PNG")


def killed_mid_checkpoint(world: Path) -> None:
    """A run SIGKILLed after writing its second checkpoint's bytes and before renaming them into place."""
    args = shlex.split(TRAIN.replace("--max-steps 2", "--max-steps 4")) + ["--out", "killed", "--checkpoint-every", "1"]
    child = subprocess.run([sys.executable, "-c", KILLED_AT_SECOND_CHECKPOINT, *args], cwd=world,
                           capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert temporaries(world / "killed" / "checkpoints")  # the half-finished checkpoint is there


# ------------------------------------------------------------------------------------------- checks


def no_temporaries(folder: str) -> Callable[[Path, Result], None]:
    def check(world: Path, result: Result) -> None:
        assert not temporaries(world / folder)
    return check


def outputs_are(*names: str) -> Callable[[Path, Result], None]:
    def check(world: Path, result: Result) -> None:
        assert sorted(p.relative_to(world / "out").as_posix() for p in (world / "out").rglob("*") if p.is_file()) \
            == sorted(names)
    return check


def upright(world: Path, result: Result) -> None:
    source = Image.open(world / "odd" / "rotated.jpg")
    assert Image.open(world / "out" / "rotated.jpg").size == source.size[::-1]


def same_size(name: str) -> Callable[[Path, Result], None]:
    def check(world: Path, result: Result) -> None:
        assert Image.open(world / "out" / name).size == Image.open(world / "odd" / name).size
    return check


def same_frames(name: str) -> Callable[[Path, Result], None]:
    """The colour clip has the gray clip's frame times (seconds, exact) and size."""
    def check(world: Path, result: Result) -> None:
        def frames(path: Path) -> list[tuple[Fraction, int, int]]:
            with av.open(str(path)) as container:
                return [(f.pts * f.time_base, f.width, f.height) for f in container.decode(video=0)]
        assert frames(world / "out" / name) == frames(world / "clips" / name)
    return check


def not_colorized_again(world: Path, result: Result) -> None:
    assert not (world / "nest" / "colour" / "colour").exists()
    assert sorted(p.name for p in (world / "nest" / "colour").iterdir()) == ["p0.png", "p1.png"]


def kept_existing(world: Path, result: Result) -> None:
    assert (world / "out" / "p0.png").read_bytes() == b"kept"
    assert len(list((world / "out").iterdir())) == 6


def live_temporary_kept(world: Path, result: Result) -> None:
    assert [p.name for p in temporaries(world / "run")] == [f".run.json.{os.getpid()}-89abcdef.tmp"]


def finished(folder: str, steps: int) -> Callable[[Path, Result], None]:
    def check(world: Path, result: Result) -> None:
        assert checkpoint.read_meta(world / folder / "checkpoints" / "last.safetensors")["position"]["step"] == steps
        assert not temporaries(world / folder)
    return check


def measured_despite_the_broken(world: Path, result: Result) -> None:
    """The broken file is passed over; the model is measured and scored with the good checkpoint."""
    [doc] = (world / "results").glob("bench-*.json")
    rows = {row["model"]: row for row in json.loads(doc.read_text())["rows"]}
    assert list(rows) == ["simple-cnn", "gray", "truth"]
    assert rows["simple-cnn"]["infer_img_s"] > 0 and rows["simple-cnn"]["psnr"] > 0
    assert rows["simple-cnn"]["checkpoint"] == "ckpts/simple-cnn.safetensors"


# ------------------------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One fault: the command line, its exit status, the file its message names (None: no file is at fault),
    what the message says, and the paths (files or folders) the command may write."""

    id: str
    args: str
    code: int
    names: str | None
    says: str
    writes: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    check: Callable[[Path, Result], None] | None = None
    file_size_limit: int | None = None
    needs: str | None = None  # why the case cannot run here, if it cannot


def registry(name: str, args: str = "list", code: int = 1, says: str = "") -> Case:
    return Case(f"registry-{name}-{args.split()[0]}", args, code, None if code == 0 else f"reg/{name}.toml", says,
                env={"ZOO_REGISTRY": f"reg/{name}.toml"})


UNREADABLE = "root reads every file" if os.geteuid() == 0 else None

CASES = [
    # zoo list / zoo info: the registry and its values
    registry("bad", says="not valid TOML"),
    registry("missing", says="no such model registry file"),
    registry("binary", says="cannot read it as a model registry"),
    registry("models5", says="models: expected tables"),
    registry("epochs", says="stages[0].epochs: expected a value >= 1, got -3"),
    registry("image_size", says="stages[0].image_size: expected a value >= 16 and <= 4096, got 0"),
    registry("batch_size", says="stages[0].batch_size: expected a value >= 1, got 0"),
    registry("time_share", says="stages[0].time_share: expected a value > 0"),
    registry("crop", says="stages[0].crop_scale: expected numbers in increasing order"),
    registry("inference", says="inference_size: expected a value >= 16"),
    registry("epochs", "info m", says="epochs: expected a value >= 1"),
    Case("registry-wide-list", "list", 0, None, "cannot build: SpecError: model 'm': generator.width: expected int",
         env={"ZOO_REGISTRY": "reg/wide.toml"}),
    Case("registry-wide-info", "info m", 1, None, "model 'm': generator.width: expected int, got str 'wide'",
         env={"ZOO_REGISTRY": "reg/wide.toml"}),
    Case("registry-wide-train", "train m --data photos --out new --max-steps 1 --workers 0", 1, None,
         "generator.width: expected int", env={"ZOO_REGISTRY": "reg/wide.toml"}),
    Case("info-image-size-0", "info simple-cnn --image-size 0", 2, None, "Invalid value for '--image-size'"),
    Case("info-image-size-huge", "info simple-cnn --image-size 100000", 2, None, "Invalid value for '--image-size'"),
    Case("info-unknown-model", "info unet-resnet81", 1, None, "unknown model 'unet-resnet81'"),
    Case("list-unknown-format", "list --format xml", 2, None, "Invalid value for '--format'"),
    Case("list-csv-keeps-names", "list simple-cnn --format csv", 0, None, "simple-cnn,simple-cnn,-,"),
    # zoo train: options
    Case("train-max-time-abc", f"{TRAIN} --out new --max-time abc", 2, None, "not a duration: 'abc'"),
    Case("train-max-time-negative", f"{TRAIN} --out new --max-time -5m", 2, None, "Invalid value for '--max-time'"),
    Case("train-max-time-zero", f"{TRAIN} --out new --max-time 0s", 2, None, "'0s' is not a positive duration"),
    Case("train-set-width-abc", f"{TRAIN} --out new --set width=abc", 1, None,
         "model 'simple-cnn': generator.width: expected int, got str 'abc'"),
    Case("train-set-width-1e9", f"{TRAIN} --out new --set width=1e9", 1, None,
         "generator.width: expected int, got float 1000000000.0"),
    Case("train-set-decoder-channels-5", "train unet-resnet18 --data photos --out new --set decoder_channels=5", 1,
         None, "generator.decoder_channels: expected a list, got int 5"),
    Case("train-set-encoder-weights-passwd", "train unet-resnet18 --data photos --out new"
         " --set encoder_weights=/etc/passwd", 1, "/etc/passwd", "cannot be built"),
    Case("train-set-encoder-weights-pickle", "train unet-resnet18 --data photos --out new"
         " --set encoder_weights=ckpt/evil.pt", 1, "ckpt/evil.pt", "UnpicklingError"),
    Case("train-set-without-value", f"{TRAIN} --out new --set width", 2, None, "expected KEY=VALUE, got 'width'"),
    Case("train-set-unknown-key", f"{TRAIN} --out new --set widht=4", 1, None, "'simple-cnn' has no setting 'widht'"),
    Case("train-image-size-huge", f"{TRAIN} --out new --image-size 100000", 2, None, "Invalid value for '--image-size'"),
    Case("train-batch-size-0", f"{TRAIN} --out new --batch-size 0", 2, None, "Invalid value for '--batch-size'"),
    Case("train-lr-nan", f"{TRAIN} --out new --lr nan", 2, None, "'nan' is not a finite number above 0"),
    Case("train-lr-negative", f"{TRAIN} --out new --lr -0.1", 2, None, "'-0.1' is not a finite number above 0"),
    Case("train-checkpoint-every-0", f"{TRAIN} --out new --checkpoint-every 0", 2, None,
         "Invalid value for '--checkpoint-every'"),
    Case("train-device-gpu", f"{TRAIN} --out new --device gpu", 2, None, "'gpu' is not a device"),
    Case("train-no-model", "train --data photos", 1, None, "give a model NAME"),
    # zoo train: where it writes
    Case("train-out-existing-run", f"{TRAIN} --out run", 1, "run", "holds another run; give a new --out, or"
         " continue that run with --resume run"),
    Case("train-out-not-empty", f"{TRAIN} --out odd", 1, "odd", "is not empty"),
    Case("train-out-is-file", f"{TRAIN} --out bin.dat", 1, "bin.dat", "is a file, not a folder"),
    Case("train-out-under-file", f"{TRAIN} --out bin.dat/run", 1, "bin.dat/run", "cannot be made: bin.dat is a file"),
    Case("train-out-inside-data", f"{TRAIN} --out photos/run", 1, "photos/run", "lies inside the photo folder photos"),
    # zoo train: what it reads
    Case("train-data-binary", f"{TRAIN} --out new --data bin.dat", 1, "bin.dat", "neither an image nor a text list"),
    Case("train-data-missing", f"{TRAIN} --out new --data nowhere", 1, "nowhere", "unknown image source"),
    Case("train-data-nothing-usable", f"{TRAIN} --out new --data bad", 1, "bad", "no usable images"),
    Case("train-data-named-offline", f"{TRAIN} --out new --data coco-10k", 1, "coco-10k",
         "ZOO_OFFLINE forbids downloading"),
    Case("train-data-named-junk-archive", f"{TRAIN} --out new --data coco-10k", 1,
         "cache/downloads/coco_sample.tgz", "expected 3,245,877,008; delete it to download it again",
         env={"ZOO_CACHE": "cache"}),
    Case("train-init-pickle", f"{TRAIN} --out new --init ckpt/pickle.pt", 1, "ckpt/pickle.pt",
         "not a safetensors checkpoint"),
    Case("train-init-nan", f"{TRAIN} --out new --init ckpt/nan.safetensors", 1, "ckpt/nan.safetensors",
         "holds NaN or infinite values"),
    # zoo train --resume
    Case("resume-max-steps", f"{RESUME} --max-steps 5", 1, "run", "max_steps 5 (the run's: 2)"),
    Case("resume-epochs", f"{RESUME} --epochs 3", 1, "run", "epochs 3 (the run's: None)"),
    Case("resume-data", f"{RESUME} --data nest", 1, "run", "data 'nest' (the run's: 'photos')"),
    Case("resume-setting", f"{RESUME} --set width=8", 1, "run", "generator {'width': 8}"),
    Case("resume-other-model", "train unet-resnet18 --resume run", 1, "run",
         "model 'unet-resnet18' (the run trains 'simple-cnn')"),
    Case("resume-how-not-what", f"{RESUME} --device cpu --max-steps 2 --image-size 32", 0, None, "resuming simple-cnn",
         writes=("run",)),
    Case("resume-corrupt-run-json", RESUME, 1, "run/run.json", "cannot read the run's run.json",
         writes=("run/run.json",), prepare=corrupt_run_file),
    Case("resume-no-checkpoint", RESUME, 1, "run/checkpoints/last.safetensors", "no checkpoint to resume from",
         writes=("run/checkpoints",), prepare=no_checkpoint),
    Case("resume-nan-checkpoint", RESUME, 1, "run/checkpoints/last.safetensors", "holds NaN or infinite values",
         writes=("run/checkpoints",), prepare=nan_checkpoint),
    Case("resume-not-a-run", "train --resume photos", 1, "photos", "holds no run to resume"),
    Case("resume-cleans-stale-temporaries", RESUME, 0, None, "resuming simple-cnn", writes=("run",),
         prepare=stale_temporaries, check=live_temporary_kept),
    Case("resume-after-sigkill-mid-checkpoint", "train --resume killed --no-progress --workers 0", 0, None,
         "resuming simple-cnn", writes=("killed",), prepare=killed_mid_checkpoint, check=finished("killed", 4),
         needs=None if sys.platform == "linux" else "/proc/self/fd"),
    # zoo train: a full disk
    Case("train-disk-full-at-checkpoint", TRAIN.replace("width=4", "width=16") + " --out new", 1,
         "new/checkpoints/last.safetensors", "File too large", writes=("new", "scans"), env={"ZOO_CACHE": "scans"},
         file_size_limit=20_000, check=no_temporaries("new")),
    Case("resume-disk-full-keeps-the-generator", RESUME, 1, "run/generator.safetensors", "File too large",
         file_size_limit=5_000),
    # zoo colorize: inputs
    Case("colorize-truncated", f"{COLORIZE} photos/p0.png bad/truncated.jpg --out out", 1, "bad/truncated.jpg",
         "corrupt", writes=("out",), check=outputs_are("p0.png")),
    Case("colorize-fake", f"{COLORIZE} photos/p0.png bad/fake.jpg --out out", 1, "bad/fake.jpg", "not an image",
         writes=("out",), check=outputs_are("p0.png")),
    Case("colorize-empty", f"{COLORIZE} bad/empty.png photos/p1.png --out out", 1, "bad/empty.png", "not an image",
         writes=("out",), check=outputs_are("p1.png")),
    Case("colorize-bomb", f"{COLORIZE} bad/bomb.png --out out", 1, "bad/bomb.png", "too large", writes=("out",)),
    Case("colorize-missing", f"{COLORIZE} nowhere.jpg photos/p0.png --out out", 1, "nowhere.jpg", "missing",
         writes=("out",), check=outputs_are("p0.png")),
    Case("colorize-unreadable", f"{COLORIZE} unreadable/p0.png --out out", 1, "unreadable/p0.png", "corrupt",
         writes=("out",), prepare=unreadable_photo, needs=UNREADABLE),
    Case("colorize-cmyk", f"{COLORIZE} odd/cmyk.jpg --out out", 0, None, "colorized 1 image(s)", writes=("out",),
         check=same_size("cmyk.jpg")),
    Case("colorize-palette", f"{COLORIZE} odd/palette.png --out out", 0, None, "colorized 1 image(s)",
         writes=("out",), check=same_size("palette.png")),
    Case("colorize-exif-rotated", f"{COLORIZE} odd/rotated.jpg --out out", 0, None, "colorized 1 image(s)",
         writes=("out",), check=upright),
    Case("colorize-16-bit-png", f"{COLORIZE} odd/gray16.png photos/p0.png --out out", 0, None, "colorized 2 image(s)",
         writes=("out",), check=same_size("gray16.png")),
    Case("colorize-16-bit-tiff", f"{COLORIZE} odd/gray16.tif --out out", 0, None, "colorized 1 image(s)",
         writes=("out",), check=same_size("gray16.tif")),
    Case("colorize-extreme-aspect-ratio", f"{COLORIZE} odd/tall.png --out out", 0, None, "colorized 1 image(s)",
         writes=("out",), check=same_size("tall.png")),
    Case("colorize-symlink-loop", f"{COLORIZE} loop --out out", 0, None, "colorized 1 image(s)", writes=("out",),
         check=outputs_are("p0.png")),
    Case("colorize-named-dataset-offline", f"{COLORIZE} coco-10k --out out", 1, "coco-10k",
         "ZOO_OFFLINE forbids downloading", writes=("out",)),
    Case("colorize-size-huge", f"{COLORIZE} photos --out out --size 100000", 2, None, "Invalid value for '--size'"),
    # zoo colorize: videos
    Case("colorize-video-no-video-stream", f"{COLORIZE} badclips/audio-only.mp4 clips/good.mp4 --out out", 1,
         "badclips/audio-only.mp4", "no video stream", writes=("out",), check=outputs_are("good.mp4")),
    Case("colorize-video-truncated", f"{COLORIZE} badclips/truncated.mp4 --out out", 1, "badclips/truncated.mp4",
         "corrupt or truncated", writes=("out",), check=outputs_are()),
    Case("colorize-video-zero-frames", f"{COLORIZE} badclips/empty.avi --out out", 1, "badclips/empty.avi",
         "no frames", writes=("out",), check=outputs_are()),
    Case("colorize-video-still-image", f"{COLORIZE} badclips/still.mp4 --out out", 1, "badclips/still.mp4",
         "a still image (png_pipe), not a video", writes=("out",), check=outputs_are()),
    Case("colorize-video-variable-frame-rate", f"{COLORIZE} clips/vfr.mp4 --out out", 0, None,
         "1 video(s) (6 frames)", writes=("out",), check=same_frames("vfr.mp4")),
    Case("colorize-video-odd-size", f"{COLORIZE} clips/odd.mp4 --out out", 0, None, "1 video(s) (4 frames)",
         writes=("out",), check=same_frames("odd.mp4")),
    Case("colorize-video-folder-goes-on", f"{COLORIZE} mixed --out out", 1, "mixed/broken.mp4",
         "corrupt or truncated", writes=("out",), check=outputs_are("good.mp4", "p0.png")),
    Case("colorize-video-hint-without-frame", f"{COLORIZE} clips/good.mp4 --out out --hint 4,5,#c0392b", 1,
         "--hint", "hint 1 has no \"frame\""),
    # zoo colorize: hints
    Case("colorize-hint-outside", f"{COLORIZE} photos/p0.png --out out --hint 48,5,#c0392b", 1, "--hint",
         "hint 1 at x=48, y=5 is outside the photo (48 x 40 pixels"),
    Case("colorize-hint-unreadable-colour", f"{COLORIZE} photos/p0.png --out out --hint 4,5,#zz0000", 1, "--hint",
         "unreadable colour '#zz0000'"),
    Case("colorize-hint-not-a-point", f"{COLORIZE} photos/p0.png --out out --hint 4,#c0392b", 1, "--hint",
         "expected X,Y,#RRGGBB"),
    Case("colorize-hints-malformed-json", f"{COLORIZE} photos/p0.png --out out --hints hints/broken.json", 1,
         "hints/broken.json", "not JSON"),
    Case("colorize-hints-one-outside", f"{COLORIZE} photos/p0.png --out out --hints hints/outside.json", 1,
         "hints/outside.json", "hint 2 at x=48, y=5 is outside the photo"),
    Case("colorize-hints-size-0", f"{COLORIZE} photos/p0.png --out out --hints hints/size0.json", 1,
         "hints/size0.json", "size must be at least 1 pixel"),
    Case("colorize-hints-alike-not-true-or-false", f"{COLORIZE} photos/p0.png --out out --hints hints/alike-yes.json",
         1, "hints/alike-yes.json", "\"alike\" must be true or false"),
    Case("colorize-hints-spread-unknown", f"{COLORIZE} photos/p0.png --out out --hints hints/spread-far.json",
         1, "hints/spread-far.json", "\"spread\" must be one of nearby, here, alike"),
    Case("colorize-hints-file-with-no-photo", f"{COLORIZE} photos --out out --hints hints/folder", 1,
         "hints/folder/p9.json", "a hint file with no photo"),
    Case("colorize-hints-outside-in-a-folder", f"{COLORIZE} photos --out out --hints hints/outside-in-folder", 1,
         "hints/outside-in-folder/p1.json", "hint 1 at x=5, y=40 is outside the photo"),
    Case("colorize-hints-for-several-photos", f"{COLORIZE} photos --out out --hints hints/good.json", 1,
         "hints/good.json", "hints for one photo, given 6"),
    Case("colorize-hint-and-hints", f"{COLORIZE} photos/p0.png --out out --hint 1,1,#fff --hints hints/good.json",
         1, None, "give hints with --hint or with --hints, not both"),
    Case("colorize-hints-good", f"{COLORIZE} photos/p0.png --out out --hints hints/good.json", 0, None,
         "colorized 1 image(s)", writes=("out",), check=outputs_are("p0.png")),
    # zoo colorize: outputs
    Case("colorize-onto-the-inputs", f"{COLORIZE} photos --out photos --overwrite", 1, "photos/p0.png",
         "not written: its output photos/p0.png is an input of this command"),
    Case("colorize-onto-an-input-file", f"{COLORIZE} photos/p3.png --out photos --overwrite", 1, "photos/p3.png",
         "is an input of this command"),
    Case("colorize-output-folder-inside-input", f"{COLORIZE} nest --out nest/colour --overwrite", 0, None,
         "colorized 2 image(s)", writes=("nest/colour",), prepare=colorized_once, check=not_colorized_again),
    Case("colorize-existing-skipped", f"{COLORIZE} photos --out out", 0, "p0.png",
         "skipped 1 existing output(s) (--overwrite replaces them)", writes=("out",), prepare=existing_output,
         check=kept_existing),
    Case("colorize-out-is-file", f"{COLORIZE} photos --out bin.dat", 1, "bin.dat", "is a file, not a folder"),
    Case("colorize-cleans-stale-temporaries", f"{COLORIZE} photos/p0.png --out out", 0, None, "colorized 1 image(s)",
         writes=("out",), prepare=stale_colorize_temporary, check=outputs_are("p0.png")),
    # zoo colorize: checkpoints
    Case("colorize-nan-weights", "colorize photos --out out --checkpoint ckpt/nan.safetensors", 1,
         "ckpt/nan.safetensors", "holds NaN or infinite values"),
    Case("colorize-header-without-keys", "colorize photos --out out --checkpoint ckpt/nokeys.safetensors", 1,
         "ckpt/nokeys.safetensors", "its zoo header is not an object naming the model and spec"),
    Case("colorize-header-not-json", "colorize photos --out out --checkpoint ckpt/notjson.safetensors", 1,
         "ckpt/notjson.safetensors", "its zoo header is not JSON"),
    Case("colorize-header-a-list", "colorize photos --out out --checkpoint ckpt/list.safetensors", 1,
         "ckpt/list.safetensors", "its zoo header is not an object"),
    Case("colorize-truncated-checkpoint", "colorize photos --out out --checkpoint ckpt/truncated.safetensors", 1,
         "ckpt/truncated.safetensors", "not a safetensors checkpoint"),
    Case("colorize-pickle-refused", "colorize photos --out out --checkpoint ckpt/pickle.pt", 1, "ckpt/pickle.pt",
         "not a safetensors checkpoint"),
    Case("colorize-missing-checkpoint", "colorize photos --out out --checkpoint nowhere.safetensors", 1,
         "nowhere.safetensors", "no such checkpoint"),
    Case("colorize-other-architecture", f"{COLORIZE} photos --out out --model unet-resnet18", 1, CKPT,
         "holds a 'simple-cnn' generator (simple-cnn), not one of model 'unet-resnet18'"),
    Case("colorize-no-weights", "colorize photos --out out --model simple-cnn", 1, None,
         "model 'simple-cnn' needs trained weights"),
    Case("colorize-gif-listed-as-skipped", f"{COLORIZE} photos --out out", 0, "anim.gif",
         "skipped 1 file(s) of image types the zoo does not read", writes=("out",), prepare=a_gif_among_the_photos),
    Case("colorize-unknown-model", "colorize photos --out out --model simple-cnm", 1, None,
         "unknown model 'simple-cnm'; did you mean simple-cnn"),
    Case("colorize-hub-name-offline", "colorize photos --out out --model hf:someone/nothing", 1, "hf:someone/nothing",
         "not in the Hugging Face cache"),
    Case("export-hub-into-a-full-folder", "export simple-cnn --checkpoint run/generator.safetensors --format hub"
         " --out photos", 1, "photos", "is not empty"),
    Case("colorize-checkpoint-names-a-weights-file", "colorize photos/p0.png --out out --checkpoint"
         " ckpt/trap.safetensors --no-progress", 0, None, "colorized 1 image(s)", writes=("out",)),
    # zoo export
    Case("export-onto-the-checkpoint", f"{EXPORT} --out {CKPT} --overwrite", 1, CKPT, "is an input of this command"),
    Case("export-existing", f"{EXPORT} --out model.onnx", 1, "model.onnx", "exists (--overwrite replaces it)",
         writes=("model.onnx",), prepare=existing_file("model.onnx")),
    Case("export-existing-overwrite", f"{EXPORT} --out model.onnx --overwrite", 0, None, "wrote model.onnx",
         writes=("model.onnx",), prepare=existing_file("model.onnx")),
    Case("export-default-beside-existing", EXPORT, 1, "run/generator.onnx", "exists (--overwrite replaces it)",
         writes=("run/generator.onnx",), prepare=existing_file("run/generator.onnx")),
    Case("export-out-under-file", f"{EXPORT} --out bin.dat/model.onnx", 1, "bin.dat/model.onnx",
         "cannot be made: bin.dat is a file"),
    Case("export-out-is-folder", f"{EXPORT} --out photos", 1, "photos", "is a folder; give a file name"),
    Case("export-nan-weights", "export simple-cnn --checkpoint ckpt/nan.safetensors --out m.onnx", 1,
         "ckpt/nan.safetensors", "holds NaN"),
    Case("export-header-a-list", "export simple-cnn --checkpoint ckpt/list.safetensors --out m.onnx", 1,
         "ckpt/list.safetensors", "its zoo header is not an object"),
    # zoo report
    Case("report-out-under-file", "report results/score.json --out bin.dat/r.html", 1, "bin.dat/r.html",
         "cannot be made: bin.dat is a file"),
    Case("report-onto-its-results", "report results/score.json --out results/score.json --overwrite", 1,
         "results/score.json", "is an input of this command"),
    Case("report-existing", "report results/score.json --out r.html", 1, "r.html", "exists (--overwrite replaces it)",
         writes=("r.html",), prepare=existing_file("r.html")),
    Case("report-existing-overwrite", "report results/score.json --out r.html --overwrite", 0, None, "wrote r.html",
         writes=("r.html",), prepare=existing_file("r.html")),
    Case("report-not-json", "report notjson.json --out r.html", 1, "notjson.json", "cannot read results"),
    Case("report-json-list", "report list.json --out r.html", 1, "list.json", "not a zoo results file"),
    # zoo bench
    Case("bench-compare-not-json", f"{BENCH} --compare notjson.json", 1, "notjson.json",
         "cannot read it as results JSON"),
    Case("bench-results-under-file", f"{BENCH} --results bin.dat/results", 1, "bin.dat/results",
         "cannot be made: bin.dat is a file"),
    Case("bench-image-size-huge", "bench simple-cnn --image-size 100000", 2, None, "Invalid value for '--image-size'"),
    Case("bench-unknown-model", "bench simple-cnm", 1, None, "unknown model 'simple-cnm'; did you mean simple-cnn"),
    Case("bench-broken-checkpoint-among-others", f"{BENCH} --checkpoints ckpts --data photos", 0,
         "ckpts/broken.safetensors", "its zoo header is not an object", writes=("results",),
         check=measured_despite_the_broken),
    # zoo score
    Case("score-data-binary", f"{SCORE} --data bin.dat", 1, "bin.dat", "neither an image nor a text list"),
    Case("score-nan-weights", "score simple-cnn --checkpoint ckpt/nan.safetensors --data photos", 1,
         "ckpt/nan.safetensors", "holds NaN"),
    Case("score-image-size-0", f"{SCORE} --data photos --image-size 0", 2, None, "Invalid value for '--image-size'"),
    Case("score-results-under-file", f"{SCORE} --data photos --results bin.dat/r", 1, "bin.dat/r",
         "cannot be made: bin.dat is a file"),
    Case("score-named-dataset-offline", f"{SCORE} --data coco-10k", 1, "coco-10k", "ZOO_OFFLINE forbids downloading"),
    Case("score-debian-photos-offline", f"{SCORE} --data debian-external", 1, "debian-external",
         "ZOO_OFFLINE forbids downloading https://deb.debian.org/"),
    Case("score-debian-photos-junk-package", f"{SCORE} --data debian-external", 1,
         "cache/downloads/plasma-workspace-wallpapers_5.27.5-2_all.deb",
         "expected 94,047,772; delete it to download it again", env={"ZOO_CACHE": "cache"}),
]


def test_the_catalogue_is_large_and_every_case_is_named_once():
    assert len(CASES) >= 60
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault(case: Case, template: Path, tmp_path: Path) -> None:
    if case.needs:
        pytest.skip(case.needs)
    world = tmp_path / "world"
    shutil.copytree(template, world, symlinks=True)
    if case.prepare is not None:
        case.prepare(world)
    before = snapshot(world)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(world)
        for key, value in case.env.items():
            patch.setenv(key, value)
        reset_discovery()
        try:
            with file_size_limit(case.file_size_limit):
                result = invoke(case.args)
        finally:
            patch.undo()
            reset_discovery()
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    assert result.exit_code == case.code, output
    lines = [line for line in output.splitlines() if case.says in line and (case.names is None or case.names in line)]
    assert lines, f"no line says {case.says!r} naming {case.names!r}:\n{output}"
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert errors == [] if case.code == 0 else (errors == [] or (len(errors) == 1 and errors[0] in lines)), output
    after = snapshot(world)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    unexpected = sorted(p for p in changed if not any(p == w or p.startswith(w + "/") for w in case.writes))
    assert not unexpected, f"changed outside {case.writes}: {unexpected}"
    assert not (world / "pwned.txt").exists() and not (template / "pwned.txt").exists()
    if case.check is not None:
        case.check(world, result)


def test_loading_a_checkpoint_never_opens_a_file_its_spec_names(template: Path, monkeypatch: pytest.MonkeyPatch):
    """A checkpoint's spec names encoder_weights = <a .pt file>: loading builds the model without initial weights
    and fills it from the checkpoint, so that file is never read (here, reading it would raise)."""
    import builtins

    import zoo.models.smp_unet as smp_unet

    trap = str(template / "ckpt" / "trap.pt")
    opened: list[str] = []
    real_open, real_load, real_load_file = builtins.open, torch.load, smp_unet.load_file

    def recording(real: Callable) -> Callable:
        def call(file: object, *args: object, **kwargs: object) -> object:
            opened.append(str(file))
            return real(file, *args, **kwargs)
        return call

    monkeypatch.setattr(builtins, "open", recording(real_open))
    monkeypatch.setattr(torch, "load", recording(real_load))
    monkeypatch.setattr(smp_unet, "load_file", recording(real_load_file))
    spec, predictor = checkpoint.load_generator(template / "ckpt" / "trap.safetensors")
    monkeypatch.undo()
    assert spec.generator.settings["encoder_weights"] == trap  # the spec does name it
    assert trap not in opened
    assert predictor(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)
