"""Score a fold model at chroma scales 0.8..1.5 (knee 11, flip average, 128 px: the default's inference), each
photo once; per-photo CIEDE2000/PSNR/SSIM/CF at every scale saved to OUT.json.
usage: ZOO_REGISTRY=... python scales.py MODEL RUN_DIR DATA OUT.json   (MODEL 'gray' scores ab = 0)"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from zoo.color import lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.harness.metrics import ciede2000, colorfulness, rgb_to_lab, structural_similarity
from zoo.harness.protocols import ProtocolImages, get_protocol
from zoo.harness.scoring import load_images, load_model

torch.set_grad_enabled(False)
name, run, data, out = sys.argv[1:5]
SCALES = [round(0.8 + 0.05 * i, 2) for i in range(15)]
method = get_protocol("zoo")
side = method.side(256)
paths = load_images(data, side)
images = ProtocolImages([(p,) for p in paths], method, side)
model = None if name == "gray" else load_model(name, Path(run), "cpu", {"chroma_scale": 1.0}).eval()
rows = {s: {"ciede": [], "psnr": [], "ssim": [], "cf": [], "cf_truth": []} for s in SCALES}
for i, path in enumerate(paths):
    rgb = images[i]
    L, truth = rgb_uint8_to_lab_normalized(rgb)
    target = rgb.float()[None] / 255 if rgb.dim() == 3 else rgb.float() / 255
    ab = torch.zeros_like(truth) if model is None else model(L).float()
    cf_truth = float(colorfulness(target).mean())
    for s in SCALES:
        pred = lab_normalized_to_rgb(L, ab * s)
        r = rows[s]
        r["ciede"].append(float(ciede2000(rgb_to_lab(pred), rgb_to_lab(target)).mean()))
        mse = float((pred - target).square().mean())
        r["psnr"].append(10 * np.log10(1 / mse))
        r["ssim"].append(float(structural_similarity(pred, target).mean()))
        r["cf"].append(float(colorfulness(pred).mean()))
        r["cf_truth"].append(cf_truth)
        if model is None:
            break
with open(out, "w") as file:
    json.dump({"model": name, "run": run, "data": data, "photos": [p.name for p in paths],
               "scales": {str(s): r for s, r in rows.items() if r["ciede"]}}, file)
