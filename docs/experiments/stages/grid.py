"""A picture grid of fold photos: gray | ciede | gan | perceptual | l1branch | truth, each at a given scale.
usage: ZOO_REGISTRY=... python grid.py FOLD OUT.jpg ciede=1.1 gan=1.0 ...  (every 12th photo of the fold; run in the OUT_DIR of chain.sh)"""
import sys
from pathlib import Path

import torch
from PIL import Image

from zoo.color import lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.harness.protocols import ProtocolImages, get_protocol
from zoo.harness.scoring import load_images, load_model

torch.set_grad_enabled(False)
fold, out = sys.argv[1], sys.argv[2]
scales = dict(a.split("=") for a in sys.argv[3:])
method = get_protocol("zoo")
side = method.side(256)
paths = load_images(f"sample-fold{fold}", side)
images = ProtocolImages([(p,) for p in paths], method, side)
models = {v: load_model(f"x-{v}", Path(f"runs/f{fold}-{v}"), "cpu", {"chroma_scale": float(s)}).eval()
          for v, s in scales.items()}
rows = []
for i in range(0, len(paths), 12):
    rgb = images[i]
    L, truth = rgb_uint8_to_lab_normalized(rgb)
    tiles = [lab_normalized_to_rgb(L, torch.zeros_like(truth))]
    tiles += [lab_normalized_to_rgb(L, m(L).float()) for m in models.values()]
    tiles.append(rgb.float() / 255)
    rows.append(torch.cat([t.reshape(3, side, side) for t in tiles], 2))
grid = (torch.cat(rows, 1).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
Image.fromarray(grid).save(out, quality=90)
print(out, grid.shape, "columns: gray |", " | ".join(scales), "| truth")
