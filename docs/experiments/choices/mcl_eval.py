"""Experiment: can a hint choose among a model's K alternative colourings (mcl_train.py)?

usage: ZOO_REGISTRY=reg.toml python mcl_eval.py RUN_DIR MCL.safetensors DATA OUT.json [K] [LIMIT]
Scores, on DATA at 256 px (protocol zoo), PSNR / CIEDE2000 as the harness computes them:
  shipped    the fold model's ab, hints spread (zoo.guided.spread_hints, plain hints)
  mix-s      a posterior over {fold model, K alternatives} from the hints' squared a*b* errors (width s),
             the mixture, then the hints' remaining differences spread the same way
  oracle     the best of those colourings per photo, no hints (a bound on what choosing can give)
with random hints (Zhang et al.'s centred placement, as `zoo score --hints`) and a person's (each next hint
where the current colours are most wrong).
"""
import functools
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file
from torchmetrics.image import PeakSignalNoiseRatio

from zoo.checkpoint import load_generator
from zoo.color import AB_SCALE, L_SCALE, lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.colorizer import working_shape
from zoo.guided import spread_hints
from zoo.harness.metrics import CIEDE2000
from zoo.harness.protocols import ProtocolImages, get_protocol
from zoo.harness.scoring import load_images, load_model
from zoo.hints import hint_cells, photo_seed, simulated_hints, worst_hint
from zoo.propagate import Propagation, PropagationSettings

torch.set_grad_enabled(False)
run, mcl_path, data, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
K = int(sys.argv[5]) if len(sys.argv) > 5 else 4
LIMIT = int(sys.argv[6]) if len(sys.argv) > 6 else 10**9
COUNTS = (0, 1, 2, 5, 10)
PERSON = (1, 2, 5)
WIDTHS = (5.0, 10.0, 20.0)
settings = PropagationSettings()

base_model = load_model("fold-ciede-1", run / "generator.safetensors", "cpu").eval()
spec, predictor = load_generator(run / "generator.safetensors")
gen = predictor.generator
head = gen.segmentation_head[0]
gen.segmentation_head[0] = nn.Conv2d(head.in_channels, 2 * K, head.kernel_size, padding=head.padding)
gen.load_state_dict(load_file(str(mcl_path)))
gen.eval()


def alternatives(L):  # (1, 1, S, S) -> (K, 2, S, S), run as the colorizer runs a model: 128 px, flip average
    h, w = L.shape[-2:]
    ws, hs = working_shape((w, h), spec.working_size, 32)
    small = F.interpolate(L, size=(hs, ws), mode="bicubic", align_corners=False).clamp(-1, 1)
    both = gen(torch.cat([small, small.flip(-1)])).float()
    ab = (both[:1] + both[1:].flip(-1)) / 2
    ab = F.interpolate(ab, size=(h, w), mode="bilinear", align_corners=False)
    return ab.view(K, 2, h, w)


def posterior(hyps, hints, size, width):  # hyps (M, 2, h, w) normalised; weights (M,)
    if not hints:
        return torch.zeros(len(hyps)).index_fill_(0, torch.tensor([0]), 1.0)
    energy = torch.zeros(len(hyps), dtype=torch.float64)
    for hint in hints:
        rows, cols = hint_cells(hint, size, tuple(hyps.shape[-2:]))
        at = hyps[:, :, rows, cols].double().mean(dim=(2, 3)) * AB_SCALE
        energy += ((at - torch.tensor(hint.ab, dtype=torch.float64)) ** 2).sum(1)
    return torch.softmax(-energy / (2 * width ** 2), 0).float()


method = get_protocol("zoo")
side = method.side(256)
paths = load_images(data, side)[:LIMIT]
images = ProtocolImages([(p,) for p in paths], method, side)
names = ["shipped", *(f"mix-{w:g}" for w in WIDTHS)]
metrics = {}
per_photo = {}


def score(key, ab, L, truth_rgb):
    if key not in metrics:
        metrics[key] = (PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)), CIEDE2000())
    pred = lab_normalized_to_rgb(L, ab[None].to(L))
    for m in metrics[key]:
        m.update(pred, truth_rgb)
    one = CIEDE2000()
    one.update(pred, truth_rgb)
    per_photo.setdefault(f"{key[0]} @{key[1]}", []).append(float(one.compute()))


chosen = torch.zeros(K + 1)
for index, path in enumerate(paths):
    rgb = images[index]  # (1, 3, S, S) uint8
    L, truth = rgb_uint8_to_lab_normalized(rgb)
    truth_rgb = rgb.float() / 255
    size = (side, side)
    base = base_model(L).float()[0]
    hyps = torch.cat([base[None], alternatives(L)])
    lightness = ((L[0, 0].double() + 1) * L_SCALE).numpy()
    grid = functools.cache(functools.partial(Propagation, lightness, settings))

    def colours(name, hints):
        if name == "shipped":
            start = base
        else:
            weights = posterior(hyps, hints, size, float(name.split("-")[1]))
            start = (weights.view(-1, 1, 1, 1) * hyps).sum(0)
        return spread_hints(start.cpu(), hints, size, grid)

    errs = []
    for k in range(len(hyps)):
        m = CIEDE2000()
        m.update(lab_normalized_to_rgb(L, hyps[k:k + 1]), truth_rgb)
        errs.append(float(m.compute()))
    best = int(torch.tensor(errs).argmin())
    chosen[best] += 1
    score(("oracle", 0), hyps[best], L, truth_rgb)
    for k in range(len(hyps)):
        score((f"h{k}", 0), hyps[k], L, truth_rgb)
    hints = simulated_hints(truth[0], max(COUNTS), 6, photo_seed(path.name))
    for name in names:
        for count in COUNTS:
            score((name, count), colours(name, hints[:count]), L, truth_rgb)
        placed, ab = [], colours(name, [])
        for count in range(1, max(PERSON) + 1):
            placed.append(worst_hint(ab, truth[0], 6))
            ab = colours(name, placed)
            if count in PERSON:
                score((name + " person", count), ab, L, truth_rgb)
    if index % 10 == 0:
        print(index, flush=True)

result = {f"{k[0]} @{k[1]}": [float(m.compute()) for m in v] for k, v in metrics.items()}
result["oracle chose"] = chosen.tolist()
result["photos"] = len(paths)
out.write_text(json.dumps(result, indent=1))
out.with_suffix('.per-photo.json').write_text(json.dumps(per_photo))
for key, value in result.items():
    print(key, value)
