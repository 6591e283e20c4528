"""The shipped default's hints on a list of photos, paired photo by photo: spread alone, or choosing among the
default's alternatives first (zoo.guided.choose), as `zoo score --hints` computes them (256 px, protocol zoo,
random hints at Zhang et al.'s places seeded by file name; a person's: each next where the colours are most wrong).

usage: python docs/experiments/choices/paired.py [DATA]     # DATA: heldout (default), debian-external, a folder
Prints the mean CIEDE2000 of each and their paired difference (standard error) at each count.
"""
import functools
import sys

import numpy as np
import torch

from zoo.color import L_SCALE, lab_normalized_to_rgb, rgb_uint8_to_lab_normalized
from zoo.guided import choose, spread_hints
from zoo.harness.metrics import CIEDE2000
from zoo.harness.protocols import ProtocolImages, get_protocol
from zoo.harness.scoring import load_images, load_model
from zoo.hints import photo_seed, simulated_hints, worst_hint
from zoo.propagate import Propagation, PropagationSettings
from zoo.spec import default_model, weights_path

RANDOM, PERSON = (1, 2, 5, 10), (1, 2, 5)

torch.set_grad_enabled(False)
data = sys.argv[1] if len(sys.argv) > 1 else "heldout"
name = default_model()
model = load_model(name, weights_path(name), "cpu").eval()
settings = PropagationSettings()
method = get_protocol("zoo")
side = method.side(256)
paths = load_images(data, side)
images = ProtocolImages([(p,) for p in paths], method, side)
errors: dict[str, list[float]] = {}


def ciede(L: torch.Tensor, ab: torch.Tensor, rgb: torch.Tensor) -> float:
    metric = CIEDE2000()
    metric.update(lab_normalized_to_rgb(L, ab[None].to(L)), rgb.float() / 255)
    return float(metric.compute())


for index, path in enumerate(paths):
    rgb = images[index]
    L, truth = rgb_uint8_to_lab_normalized(rgb)
    automatic = model(L).float()[0]
    colourings = torch.cat([automatic[None], model.alternatives(L)[0]])
    lightness = ((L[0, 0].double() + 1) * L_SCALE).numpy()
    grid = functools.cache(functools.partial(Propagation, lightness, settings))

    def colours(how: str, hints: list) -> torch.Tensor:
        if not hints:
            return automatic
        base = choose(colourings, hints, (side, side), settings.choice) if how == "choose" else automatic
        return spread_hints(base, hints, (side, side), grid)

    hints = simulated_hints(truth[0], max(RANDOM), 6, photo_seed(path.name))
    for how in ("spread", "choose"):
        for count in RANDOM:
            errors.setdefault(f"{how} random {count}", []).append(ciede(L, colours(how, hints[:count]), rgb))
        placed, ab = [], automatic
        for count in range(1, max(PERSON) + 1):
            placed.append(worst_hint(ab, truth[0], 6))
            ab = colours(how, placed)
            if count in PERSON:
                errors.setdefault(f"{how} person {count}", []).append(ciede(L, ab, rgb))

for key in (k for k in errors if k.startswith("spread")):
    alone, chosen = np.array(errors[key]), np.array(errors[key.replace("spread", "choose")])
    difference = chosen - alone
    print(f"{key[7:]:10s} spread {alone.mean():.2f}  choose {chosen.mean():.2f}  difference {difference.mean():+.2f}"
          f" (standard error {difference.std(ddof=1) / np.sqrt(len(difference)):.2f}), {len(difference)} photos")
