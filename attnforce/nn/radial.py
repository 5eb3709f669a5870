"""Exponential-normal radial basis (PhysNet; used by SAKE, TorchMD-Net and Equiformer's MD17 models)."""

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
