"""Radial bases: exponential-normal (PhysNet; used by SAKE, TorchMD-Net and Equiformer's MD17 models) and the
official Equiformer's trainable Gaussian one (its linear-messages MD17 model)."""

import math

import torch
from torch import Tensor, nn


class ExpNormalSmearing(nn.Module):
    """``phi_k(d) = exp(-beta_k (exp(-alpha (d - r_lo)) - mu_k)^2)`` with alpha = 5 / (r_hi - r_lo).

    The means start evenly spaced in ``exp(-alpha d)`` between the two radii; means and widths are trainable.

    Args:
        num_rbf: number of basis functions K.
        cutoff_lower, cutoff_upper: the radii (Å) the basis is spread over.
        trainable: learn ``mu`` and ``beta``.

    Shapes: ``distances`` (E,) Å -> (E, K).
    """

    def __init__(self, num_rbf: int = 50, cutoff_lower: float = 0.0, cutoff_upper: float = 5.0, trainable: bool = True):
        super().__init__()
        self.num_rbf = num_rbf
        self.cutoff_lower = cutoff_lower
        self.alpha = 5.0 / (cutoff_upper - cutoff_lower)
        start = math.exp(-self.alpha * (cutoff_upper - cutoff_lower))  # = exp(-5): the basis spans the radii
        means = torch.linspace(start, 1.0, num_rbf)
        betas = torch.full((num_rbf,), (2.0 / num_rbf * (1.0 - start)) ** -2)
        if trainable:
            self.means = nn.Parameter(means)
            self.betas = nn.Parameter(betas)
        else:
            self.register_buffer("means", means)
            self.register_buffer("betas", betas)

    def forward(self, distances: Tensor) -> Tensor:
        shifted = torch.exp(-self.alpha * (distances.unsqueeze(-1) - self.cutoff_lower))
        return torch.exp(-self.betas * (shifted - self.means) ** 2)


class GaussianRadialBasis(nn.Module):
    """The official Equiformer's trainable Gaussian basis (from Graphormer), 2K + 2 parameters:
    ``phi_k(d) = N(w d / r + b; mu_k, |sigma_k| + 1e-5)``, a normal density in the scaled distance.

    Means start uniform in [0, 1] and widths uniform in [1/K, 1] (random, as the official code draws them); the
    scale ``w`` starts at 1 and the shift ``b`` at 0.

    Args:
        num_rbf: number of basis functions K.
        cutoff: the radius r (Å) distances are divided by.

    Shapes: ``distances`` (E,) Å -> (E, K).
    """

    def __init__(self, num_rbf: int, cutoff: float):
        super().__init__()
        self.num_rbf = num_rbf
        self.cutoff = float(cutoff)
        self.means = nn.Parameter(torch.empty(num_rbf).uniform_(0.0, 1.0))
        self.stds = nn.Parameter(torch.empty(num_rbf).uniform_(1.0 / num_rbf, 1.0))
        self.scale = nn.Parameter(torch.ones(1))
        self.shift = nn.Parameter(torch.zeros(1))

    def forward(self, distances: Tensor) -> Tensor:
        x = self.scale * (distances.unsqueeze(-1) / self.cutoff) + self.shift
        stds = self.stds.abs() + 1e-5
        return torch.exp(-0.5 * ((x - self.means) / stds) ** 2) / (math.sqrt(2.0 * math.pi) * stds)
