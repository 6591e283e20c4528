"""FID-EffL0: the Frechet distance between two image sets in the feature space of the ImageNet EfficientNet-Lite0
that the zoo ships, so a distribution-level metric runs offline.

One path through it::

    features = EfficientNetLite0Features()    # frozen; RGB (B, 3, H, W) in [0, 1] -> pooled features (B, 1280)
    metric = frechet_distance(features)       # torchmetrics' FrechetInceptionDistance on those features,
    metric.update(truth, real=True)           # its compute by frechet_distance_of
    metric.update(preds, real=False)
    metric.compute()

The images are resized (bicubic, antialiased) to the network's ImageNet input, 224 x 224, and normalised as it
was trained (mean 0.5, std 0.5); the features are the global average pool of its last 1280-channel stage,
before the classifier (the layer FID takes from InceptionV3 is its 2048-d pool). The distance is the one FID
uses, ``|mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))``, but on other features: its values are **not
comparable with Inception FID** as papers report it, only with FID-EffL0 of the same protocol and image count
(FID of any kind falls as the sets grow; published FIDs use 5,000 to 50,000 images).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812 (torch's own alias)
from torchmetrics.image.fid import FrechetInceptionDistance

INPUT_SIZE = 224  # tf_efficientnet_lite0's ImageNet input side
FEATURES = 1280  # channels of its last stage, average-pooled
MEAN = STD = 0.5  # its input normalisation


class EfficientNetLite0Features(nn.Module):
    """timm's ``tf_efficientnet_lite0`` with the ImageNet weights of :func:`zoo.pretrained.efficientnet_lite_imagenet`,
    frozen and always in eval mode: RGB in [0, 1] of any size to its pooled 1280-d features."""

    num_features = FEATURES  # read by FrechetInceptionDistance (no dummy forward)

    def __init__(self) -> None:
        import timm

        from zoo.pretrained import efficientnet_lite_imagenet

        super().__init__()
        self.net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        self.net.load_state_dict(efficientnet_lite_imagenet(0))
        self.net.reset_classifier(0)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> EfficientNetLite0Features:  # frozen: eval mode whatever is asked
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bicubic", antialias=True,
                          align_corners=False)
        return self.net((x.clamp(0, 1) - MEAN) / STD)


def frechet_distance_of(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """``|mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`` of two Gaussians, at least 0.

    ``Tr (sigma1 sigma2)^(1/2)`` is the sum of the square roots of the eigenvalues of ``R^T sigma2 R``, where
    ``sigma1 = R R^T`` on the range of sigma1 (by its symmetric eigendecomposition): the same eigenvalues as
    ``sigma1 sigma2`` has, but from two symmetric problems, the second only as large as sigma1's rank (fewer
    than the images). torchmetrics' own ``eigvals(sigma1 @ sigma2)`` solves a general 1280 x 1280 eigenproblem
    instead: the same value, 10 to 50 times slower on a CPU, and slightly negative for identical sets.
    """
    w, v = torch.linalg.eigh(sigma1)
    kept = w > w.max() * w.numel() * torch.finfo(w.dtype).eps  # sigma1's range; the rest is rounding noise
    root = v[:, kept] * w[kept].sqrt()
    cross = torch.linalg.eigvalsh(root.T @ sigma2 @ root).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * cross).clamp(min=0)


class FrechetDistance(FrechetInceptionDistance):
    """torchmetrics' FrechetInceptionDistance (its feature network, states and their reduction across
    processes), computed by :func:`frechet_distance_of`."""

    def compute(self) -> Tensor:
        if self.real_features_num_samples < 2 or self.fake_features_num_samples < 2:
            raise RuntimeError("a Frechet distance needs at least 2 images in each set")
        real = _moments(self.real_features_sum, self.real_features_cov_sum, self.real_features_num_samples)
        fake = _moments(self.fake_features_sum, self.fake_features_cov_sum, self.fake_features_num_samples)
        return frechet_distance_of(*real, *fake).to(self.orig_dtype)


def _moments(total: Tensor, products: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and sample covariance (n - 1) from the sums of the features and of their outer products."""
    mean = total / count
    return mean, (products - count * torch.outer(mean, mean)) / (count - 1)


def frechet_distance(features: nn.Module) -> FrechetDistance:
    """A Frechet distance on ``features`` (a module with ``num_features``), taking RGB in [0, 1]."""
    return FrechetDistance(feature=features, normalize=True)
