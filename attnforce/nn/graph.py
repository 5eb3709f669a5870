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


def edge_vectors(positions: Tensor, edge_index: Tensor, shift_vectors: Optional[Tensor] = None) -> Tensor:
    """(E, 3) vector of each edge, from its target to its source: ``x[source] - x[target]``, plus the edge's
    periodic image shift (E, 3) when given (see :mod:`attnforce.nn.neighbours`). Same units as ``positions``."""
    vectors = positions.index_select(0, edge_index[0]) - positions.index_select(0, edge_index[1])
    if shift_vectors is not None:
        vectors = vectors + shift_vectors
    return vectors


def regular_degree(edge_index: Tensor, num_nodes: int) -> int:
    """The common in-degree d if the edges come in runs of d per target, in target order (all-pairs graphs of
    equal-size structures); 0 otherwise. Regular graphs let sums over neighbours be reshapes."""
    num_edges = edge_index.shape[1]
    if num_nodes == 0 or num_edges == 0 or num_edges % num_nodes != 0:
        return 0
    degree = num_edges // num_nodes
    expected = torch.arange(num_nodes, device=edge_index.device).repeat_interleave(degree)
    return degree if bool(torch.equal(edge_index[1], expected)) else 0


def sum_over_neighbours(src: Tensor, target: Tensor, num_nodes: int, degree: int) -> Tensor:
    """Sum edge rows ``src`` (E, ...) into their targets: a reshape when the graph is regular (``degree`` > 0,
    see :func:`regular_degree`), a scatter otherwise."""
    if degree > 0:
        return src.reshape((num_nodes, degree) + src.shape[1:]).sum(1)
    return scatter_sum(src, target, num_nodes)


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum rows of ``src`` (E, ...) into ``dim_size`` rows by ``index`` (E,)."""
    if dim_size == 1:  # one structure: a plain sum (also avoids a torch.compile CPU code-generation failure)
        return src.sum(0, keepdim=True)
    out = torch.zeros((dim_size,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


def neighbour_outer_sum(a: Tensor, b: Tensor, target: Tensor, num_nodes: int, degree: int) -> Tensor:
    """``sum_j a_ij ⊗ b_ij`` per target: (E, P) and (E, Q) -> (N, P, Q); a batched matrix product when the graph
    is regular (``degree`` > 0), a scatter of outer products otherwise."""
    if degree > 0:
        return torch.bmm(a.reshape(num_nodes, degree, -1).transpose(1, 2), b.reshape(num_nodes, degree, -1))
    return scatter_sum(a.unsqueeze(-1) * b.unsqueeze(-2), target, num_nodes)


def _shifting_logits(logits: Tensor, weights: Optional[Tensor]) -> Tensor:
    """The logits that may set a softmax's shift: edges of weight 0 (beyond a cutoff, in a graph that holds them)
    must not, since a large logit there would underflow every other term of their target."""
    if weights is None:
        return logits.detach()
    return torch.where(weights.unsqueeze(-1) > 0, logits.detach(), torch.full_like(logits, -1.0e30))


def segment_softmax(
    logits: Tensor,
    index: Tensor,
    dim_size: int,
    weights: Optional[Tensor] = None,
    null_logit: Optional[Tensor] = None,
    degree: int = 0,
) -> Tensor:
    """Softmax of ``logits`` (E, H) over the edges that share a target ``index`` (E,).

    ``a_e = w_e exp(l_e) / (exp(l_null) + sum_e' w_e' exp(l_e'))``, the sum over the target's edges.

    Args:
        weights: (E,) optional multipliers of each exponential (default 1). Weights that vanish smoothly at a
            cutoff make the attention continuous as neighbours cross it.
        null_logit: (H,) optional logit of an implicit "null" neighbour that carries no message. Without it, a
            target's last neighbour gets weight 1 until the instant it leaves; with it, attention decays
            continuously to zero.
        degree: see :func:`regular_degree`; > 0 groups by reshaping instead of scattering.

    Returns:
        (E, H) attention weights; a target with no edges simply has none.
    """
    num_heads = logits.shape[1]
    if null_logit is None:
        shift = torch.full((dim_size, num_heads), -1.0e30, dtype=logits.dtype, device=logits.device)
    else:
        shift = null_logit.detach().unsqueeze(0).expand(dim_size, num_heads).contiguous()
    shifting = _shifting_logits(logits, weights)
    if degree > 0:
        shift = torch.maximum(shift, shifting.reshape(dim_size, degree, num_heads).amax(1))
    else:
        index_h = index.unsqueeze(-1).expand_as(logits)
        shift = shift.scatter_reduce(0, index_h, shifting, reduce="amax", include_self=True)
    exp = torch.exp(logits - shift.index_select(0, index))
    if weights is not None:
        exp = exp * weights.unsqueeze(-1)
    denominator = sum_over_neighbours(exp, index, dim_size, degree)
    if null_logit is not None:
        denominator = denominator + torch.exp(null_logit.unsqueeze(0) - shift)
    # > 0 for every target that has an edge: with a null logit its term is > 0; without one the largest logit's
    # edge contributes w * exp(0), and callers pass weights only with a null logit (SAKE's cutoff mode).
    return exp / denominator.index_select(0, index)
