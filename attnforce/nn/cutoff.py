"""Smooth cutoff envelopes."""

import math

import torch
from torch import Tensor, nn


class CosineCutoff(nn.Module):
    """``f(d) = (cos(pi d / r_c) + 1) / 2`` for d < r_c, else 0.

    f, and its first derivative, are zero at the cutoff: a model whose every pair term is weighted by f has
    energies and forces that are continuous as atoms cross r_c.

    Shapes: ``distances`` (E,) Å -> (E,).
    """

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = cutoff

    def forward(self, distances: Tensor) -> Tensor:
        envelope = 0.5 * (torch.cos(distances * (math.pi / self.cutoff)) + 1.0)
        return envelope * (distances < self.cutoff).to(distances.dtype)
