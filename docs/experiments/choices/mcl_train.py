"""Experiment: K alternative colourings on a fold model's U-Net, trained by min-of-K CIEDE2000 (relaxed
winner-takes-all, Guzman-Rivera et al. 2012 / Lee et al. 2016), so that a hint can choose among them.

usage: ZOO_REGISTRY=reg.toml python mcl_train.py RUN_DIR DATA OUT.safetensors [K] [STEPS]
"""
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

from zoo.checkpoint import load_generator
from zoo.color import ciede2000, denormalize_lab, rgb_uint8_to_lab_normalized
from zoo.data import ColorizationDataset, EpochSampler, make_loader
from zoo.harness.scoring import load_images

torch.manual_seed(0)
run, data, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
K = int(sys.argv[4]) if len(sys.argv) > 4 else 4
STEPS = int(sys.argv[5]) if len(sys.argv) > 5 else 1100
EPS = 0.05
SCALES = [1.0, 0.6, 1.5, 2.0, 0.8, 1.25, 0.4, 3.0][:K]

spec, predictor = load_generator(run / "generator.safetensors")
gen = predictor.generator
head = gen.segmentation_head[0]
multi = nn.Conv2d(head.in_channels, 2 * K, head.kernel_size, padding=head.padding)
with torch.no_grad():
    for k, s in enumerate(SCALES):
        multi.weight[2 * k:2 * k + 2] = head.weight * s
        multi.bias[2 * k:2 * k + 2] = head.bias * s
gen.segmentation_head[0] = multi
for p in gen.encoder.parameters():
    p.requires_grad_(False)
params = [p for p in gen.parameters() if p.requires_grad]
opt = torch.optim.Adam(params, lr=2e-4, betas=(0.9, 0.999))

paths = load_images(data, 96)
dataset = ColorizationDataset(paths, 96, train=True, crop_scale=(0.25, 1.0))
epoch, step, start = 0, 0, time.time()
wins = torch.zeros(K)
while step < STEPS:
    loader = make_loader(dataset, 16, sampler=EpochSampler(len(paths), 1234, epoch), workers=1, drop_last=True)
    for batch in loader:
        gen.train()
        gen.encoder.eval()
        L, ab = rgb_uint8_to_lab_normalized(batch)
        pred = gen(L).float()  # (B, 2K, H, W)
        B = L.shape[0]
        hyp = pred.view(B, K, 2, *pred.shape[-2:])
        true = denormalize_lab(L, ab).unsqueeze(1).expand(-1, K, -1, -1, -1)
        Lk = L.unsqueeze(1).expand(-1, K, -1, -1, -1)
        d = ciede2000(denormalize_lab(Lk.flatten(0, 1), hyp.flatten(0, 1)), true.flatten(0, 1), eps=1e-4)
        per = d.view(B, K, -1).mean(-1)  # (B, K)
        winner = per.detach().argmin(1)
        w = torch.full_like(per, EPS / (K - 1))
        w[torch.arange(B), winner] = 1 - EPS
        loss = (w * per).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        wins += torch.bincount(winner, minlength=K).float()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} min {per.min(1).values.mean().item():.3f} "
                  f"wins {(wins / wins.sum()).tolist()} {time.time() - start:.0f}s", flush=True)
            wins.zero_()
        if step >= STEPS:
            break
    epoch += 1
save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(out))
print("saved", out)
