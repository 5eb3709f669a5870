"""Graphs and scatters in plain torch (no torch-scatter / torch-cluster), all TorchScript-compatible.

Edges are ``(source, target)`` rows of a (2, E) int64 tensor; messages flow from source to target and are
aggregated at the target. Edges are returned sorted by target.
"""

from typing import Optional

import torch
from torch import Tensor


def all_pairs_edges(batch: Tensor) -> Tensor:
    """Every ordered pair of distinct atoms within the same structure.

    Args:
        batch: (N,) structure index of each atom.

    Returns:
        (2, E) edge index, E = sum_b n_b (n_b - 1).
    """
    same = batch.unsqueeze(0) == batch.unsqueeze(1)
    same.fill_diagonal_(False)
    target_source = torch.nonzero(same).t()
    return target_source.flip(0)


def radius_edges(positions: Tensor, batch: Tensor, cutoff: float) -> Tensor:
    """Ordered pairs of distinct atoms of one structure closer than ``cutoff``.

    O(N^2) in memory and time over the whole batch; adequate up to a few thousand atoms.

    Args:
        positions: (N, 3) Å.
        batch: (N,) structure index of each atom.
        cutoff: Å.

    Returns:
        (2, E) edge index.
    """
    with torch.no_grad():
        distances = torch.cdist(positions, positions)
        within = (distances < cutoff) & (batch.unsqueeze(0) == batch.unsqueeze(1))
        within.fill_diagonal_(False)
        target_source = torch.nonzero(within).t()
    return target_source.flip(0)


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` (E, ...) into ``dim_size`` rows by ``index`` (E,)."""
    out = torch.zeros((dim_size,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


def segment_softmax(
    logits: Tensor,
    index: Tensor,
    dim_size: int,
    weights: Optional[Tensor] = None,
    null_logit: Optional[Tensor] = None,
) -> Tensor:
    """Softmax of ``logits`` (E, H) over the edges that share a target ``index`` (E,).

    ``a_e = w_e exp(l_e) / (exp(l_null) + sum_e' w_e' exp(l_e'))``, the sum over the target's edges.

    Args:
        weights: (E,) optional multipliers of each exponential (default 1). Weights that vanish smoothly at a
            cutoff make the attention continuous as neighbours cross it.
        null_logit: (H,) optional logit of an implicit "null" neighbour that carries no message. Without it, a
            target's last neighbour gets weight 1 until the instant it leaves; with it, attention decays
            continuously to zero.

    Returns:
        (E, H) attention weights; a target with no edges simply has none.
    """
    num_heads = logits.shape[1]
    if null_logit is None:
        shift = torch.full((dim_size, num_heads), -1.0e30, dtype=logits.dtype, device=logits.device)
    else:
        shift = null_logit.detach().unsqueeze(0).expand(dim_size, num_heads).contiguous()
    index_h = index.unsqueeze(-1).expand_as(logits)
    shift = shift.scatter_reduce(0, index_h, logits.detach(), reduce="amax", include_self=True)
    exp = torch.exp(logits - shift.index_select(0, index))
    if weights is not None:
        exp = exp * weights.unsqueeze(-1)
    denominator = scatter_sum(exp, index, dim_size)
    if null_logit is not None:
        denominator = denominator + torch.exp(null_logit.unsqueeze(0) - shift)
    # > 0 for every target that has an edge: its largest logit contributes w * exp(0) with w > 0 inside the cutoff.
    return exp / denominator.index_select(0, index)
