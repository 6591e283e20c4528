"""The rule's figures: per fold and pooled, each variant at its scale (lowest CIEDE2000 with dCF <= 0.45x gray's)
and at 1.1, paired against the ciede baseline. usage: python summ.py FOLD [FOLD ...]"""
import functools
import json
import sys

import numpy as np

folds = sys.argv[1:]
VARIANTS = ("ciede", "gan", "perceptual", "l1branch")


@functools.cache
def load(f, v):
    return json.load(open(f"score-f{f}-{v}.json"))["scales"]


def at(sc, s):
    r = sc[s]
    return {"ciede": np.array(r["ciede"]), "psnr": np.mean(r["psnr"]), "ssim": np.mean(r["ssim"])}


def rule_scale(fs, v):
    """the scale over the pooled folds: lowest pooled CIEDE2000 with pooled dCF <= 0.45x pooled gray's"""
    scales = list(load(fs[0], v).keys())
    best = None
    for s in scales:
        ci = np.concatenate([at(load(f, v), s)["ciede"] for f in fs])
        cf = np.concatenate([load(f, v)[s]["cf"] for f in fs])
        cft = np.concatenate([load(f, v)[s]["cf_truth"] for f in fs])
        dcf = abs(cft.mean() - cf.mean())
        gray = cft.mean()  # gray's CF is 0, so gray's dCF is the truth's mean CF
        ok = dcf <= 0.45 * gray
        if ok and (best is None or ci.mean() < best[1]):
            best = (s, ci.mean())
    return best[0] if best else scales[-1], best is not None


for group in [[f] for f in folds] + ([folds] if len(folds) > 1 else []):
    print(f"== folds {','.join(group)}")
    base_s, _ = rule_scale(group, "ciede")
    base = np.concatenate([at(load(f, "ciede"), base_s)["ciede"] for f in group])
    for v in VARIANTS:
        try:
            s, reached = rule_scale(group, v)
        except FileNotFoundError:
            continue
        ci = np.concatenate([at(load(f, v), s)["ciede"] for f in group])
        psnr = np.mean([at(load(f, v), s)["psnr"] for f in group])
        ssim = np.mean([at(load(f, v), s)["ssim"] for f in group])
        cf = np.concatenate([load(f, v)[s]["cf"] for f in group]).mean()
        cft = np.concatenate([load(f, v)[s]["cf_truth"] for f in group]).mean()
        d = ci - base
        one = np.concatenate([at(load(f, v), "1.1")["ciede"] for f in group]).mean()
        cf11 = np.concatenate([load(f, v)["1.1"]["cf"] for f in group]).mean()
        print(f"{v:11s} scale {s}{'' if reached else ' (colour not reached)'}: CIEDE2000 {ci.mean():.2f} PSNR {psnr:.2f}"
              f" SSIM {ssim:.4f} dCF {abs(cft - cf):.2f} (gray {cft:.2f}); vs ciede {d.mean():+.2f}"
              f" (se {d.std(ddof=1) / np.sqrt(len(d)):.2f}); at 1.1: CIEDE2000 {one:.2f} CF {cf11:.1f}")
