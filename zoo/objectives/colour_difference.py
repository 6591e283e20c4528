"""``ciede2000``: the mean CIEDE2000 colour difference between the predicted and the true colour of each pixel.

One path through it::

    Lab_pred = (L, ab_pred), Lab_true = (L, ab) in CIE units       (the same L: the model predicts only ab)
    loss     = mean over pixels of ciede2000(Lab_pred, Lab_true)   (``zoo.color.ciede2000`` with eps = 1e-4)

Why: L1 on ab charges an error the same whatever the colour, where CIEDE2000, the difference the scores report
and the one the eye sees, discounts chroma and hue errors of saturated colours (S_C = 1 + 0.045 C') and weighs hue
by hue. A pixel whose hue the model cannot know costs less near gray than at a wrong hue, so the estimate that
minimises it is paler there and keeps its colour where the hue is sure. The value is in CIEDE2000 units (a
gray prediction of the sample photos scores about 11), about a hundred times an L1 on normalised ab.

It fine-tunes; it does not train from scratch. From random weights a model trained on it alone goes to gray and
stays there (measured: a 600-step EfficientNet-Lite2 U-Net scored exactly gray's CIEDE2000 and colourfulness):
while hues are random, the hue difference (which grows with the predicted chroma) outweighs the chroma difference
(which shrinks with it), so the chroma shrinks; at gray the hue has no gradient left. After an L1 stage, with hues
mostly right, it does what it is for. A recipe puts it after an ``l1`` stage.
"""

from __future__ import annotations

from torch import Tensor

from zoo.color import ciede2000, denormalize_lab
from zoo.objectives.base import Batch, Critic, Objective
from zoo.registry import register_objective

EPS = 1e-4  # squared Lab units under each square root: 0.01 CIEDE2000 at equal colours, finite gradients there


@register_objective("ciede2000")
class CIEDE2000Loss(Objective):
    """Mean CIEDE2000 (kL = kC = kH = 1) between Lab from the input L and the predicted and the true ab."""

    def forward(self, batch: Batch, critic: Critic | None = None) -> Tensor:
        L = batch.L.float()
        return ciede2000(denormalize_lab(L, batch.ab_pred), denormalize_lab(L, batch.ab.float()), eps=EPS).mean()
