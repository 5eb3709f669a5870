"""SAKE: spatial attention kinetic network (Wang & Chodera, ICLR 2023), as an energy model.

One layer (Algorithm 1 of the paper, without the velocity update, which belongs to the learned integrator,
:mod:`integrators.dynamics`):

1. edge features from the pair of node features, a continuous filter (exponential-normal radial basis times a
   linear map of the pair) and the distance: ``h_ij = MLP([h_i, h_j, rbf(d_ij) * W h_ij, d_ij])``;
2. attention over neighbours, per head: semantic ``CELU(W_a h_ij)`` plus distance ``-d_ij / l_k`` logits, with
   per-head length scales l_k initialised evenly over (0, r_max]; a softmax of the sum equals the renormalised
   product of the two attentions used in the paper;
3. spatial attention: per-head coefficients ``tanh(W_c (a_ij ⊗ h_ij))`` on the unit edge vectors, summed over
   neighbours (or averaged, as the official layer does), reduced to invariants by the squared norm and an MLP;
4. residual node update ``h_i + MLP([h_i, sum_j a_ij ⊗ h_ij, spatial invariants])``. SiLU everywhere.

The options are named as in the paper and the official code (``sake-gnn``'s ``DenseSAKELayer``): its layer is this
one with ``distance_attention=False`` and ``aggregation="mean"`` (``tests/test_sake_reference.py`` holds the two
equal in float64). Distances are guarded below by :data:`MIN_DISTANCE`, so coincident atoms give finite energies.

In cutoff mode every attention weight is multiplied by a cosine envelope and the softmax gains a learnable
"null neighbour" per head, so energies and forces are continuous as atoms cross the cutoff.
"""

from typing import Optional

import torch
from torch import Tensor, nn

from attnforce.nn import (
    MLP,
    CosineCutoff,
    ExpNormalSmearing,
    edge_vectors,
    neighbour_outer_sum,
    regular_degree,
    scatter_sum,
    segment_softmax,
    sum_over_neighbours,
)

#: Embedding rows: atomic numbers 0..118.
NUM_ELEMENTS = 119
#: Å; unit edge vectors divide by at least this, so two coincident atoms give a zero vector instead of NaN.
MIN_DISTANCE = 1.0e-6
#: How the spatial attention's vectors are reduced over neighbours: ``sum`` (this package's default), or ``mean``
#: over the atom's neighbourhood, itself included (the official layer's mean over all n atoms of a molecule).
AGGREGATIONS = ("sum", "mean")


class SAKELayer(nn.Module):
    """One SAKE message-passing layer on a sparse graph.

    Args:
        hidden_features: node and edge feature size H.
        num_heads: attention heads K.
        num_rbf: size of the radial basis feeding the continuous filter.
        lengthscale_max: the largest initial distance-attention length scale, Å.
        semantic_attention, distance_attention: switch either attention logit off (ablations); with both off the
            attention is uniform over neighbours.
        spatial_attention: the vector block (step 3); off, its invariants are zeros.
        aggregation: ``sum`` or ``mean`` of the spatial attention's vectors (see :data:`AGGREGATIONS`).
        null_neighbour: add a learnable null logit per head to the softmax (cutoff mode).
    """

    def __init__(
        self,
        hidden_features: int,
        num_heads: int,
        num_rbf: int,
        lengthscale_max: float,
        semantic_attention: bool = True,
        distance_attention: bool = True,
        spatial_attention: bool = True,
        aggregation: str = "sum",
        null_neighbour: bool = False,
    ):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; choose from {list(AGGREGATIONS)}")
        width = hidden_features * num_heads
        self.num_heads = num_heads
        self.use_semantic_attention = semantic_attention
        self.use_distance_attention = distance_attention
        self.use_spatial_attention = spatial_attention
        self.average = aggregation == "mean"

        # Continuous-filter edge model. A linear map of the concatenated pair [h_i, h_j] is computed as two
        # per-node maps gathered onto the edges: the same function at N/E of the cost.
        self.filter_target = nn.Linear(hidden_features, num_rbf)
        self.filter_source = nn.Linear(hidden_features, num_rbf, bias=False)
        self.edge_in_target = nn.Linear(hidden_features, hidden_features)
        self.edge_in_source = nn.Linear(hidden_features, hidden_features, bias=False)
        self.edge_in_filter = nn.Linear(num_rbf + 1, hidden_features, bias=False)
        self.edge_out = nn.Linear(hidden_features, hidden_features)

        self.semantic_attention = nn.Sequential(nn.Linear(hidden_features, num_heads), nn.CELU(alpha=2.0))
        lengthscales = torch.linspace(lengthscale_max / num_heads, lengthscale_max, num_heads)
        self.log_inverse_lengthscale = nn.Parameter(-torch.log(lengthscales))
        if null_neighbour:
            self.null_logit = nn.Parameter(torch.full((num_heads,), -3.0))
        else:
            self.null_logit = None

        # No bias: tanh(W 0) = 0, so an edge whose attention vanishes at the cutoff contributes nothing.
        self.coefficients = nn.Linear(width, width, bias=False)
        self.post_norm_mlp = MLP([width, hidden_features, hidden_features], activate_last=True)
        self.node_mlp = MLP([2 * hidden_features + width, hidden_features, hidden_features], activate_last=True)

    def forward(
        self,
        h: Tensor,
        edge_index: Tensor,
        distances: Tensor,
        unit_vectors: Tensor,
        rbf: Tensor,
        envelope: Optional[Tensor],
        degree: int,
    ) -> Tensor:
        """Updated node features (N, H); the arguments are those of :meth:`update`."""
        return self.update(h, edge_index, distances, unit_vectors, rbf, envelope, degree)[0]

    def update(
        self,
        h: Tensor,
        edge_index: Tensor,
        distances: Tensor,
        unit_vectors: Tensor,
        rbf: Tensor,
        envelope: Optional[Tensor],
        degree: int,
    ) -> tuple[Tensor, Tensor]:
        """Update node features, and return the spatial attention's vector combinations as well.

        Args:
            h: (N, H) node features.
            edge_index: (2, E) (source, target).
            distances: (E,) Å.
            unit_vectors: (E, 3) from target to source.
            rbf: (E, num_rbf) radial basis of the distances.
            envelope: (E,) cutoff envelope, or None in all-pairs mode.
            degree: common in-degree of a regular graph, or 0 (see :func:`attnforce.nn.regular_degree`).

        Returns:
            (N, H) updated node features, and (N, 3, K*H) ``sum_j u_ij ⊗ tanh(W_c (a_ij ⊗ h_ij))`` over the
            unit edge vectors u_ij: the equivariant vectors from which the learned integrator updates velocities.
        """
        source, target = edge_index[0], edge_index[1]
        num_nodes = h.shape[0]

        kernel = (self.filter_target(h).index_select(0, target) + self.filter_source(h).index_select(0, source)) * rbf
        h_edge = (
            self.edge_in_target(h).index_select(0, target)
            + self.edge_in_source(h).index_select(0, source)
            + self.edge_in_filter(torch.cat([kernel, distances.unsqueeze(-1)], dim=-1))
        )
        h_edge = self.edge_out(nn.functional.silu(h_edge))  # (E, H)

        logits = torch.zeros((h_edge.shape[0], self.num_heads), dtype=h.dtype, device=h.device)
        if self.use_semantic_attention:
            logits = logits + self.semantic_attention(h_edge)
        if self.use_distance_attention:
            logits = logits - distances.unsqueeze(-1) * torch.exp(self.log_inverse_lengthscale)
        attention = segment_softmax(logits, target, num_nodes, envelope, self.null_logit, degree)  # (E, K)

        # Feature axes last (K*H, then 3 x K*H): broadcasts over a trailing axis of 3 or K do not vectorise.
        h_edge_att = (attention.unsqueeze(-1) * h_edge.unsqueeze(-2)).flatten(1)  # (E, K*H)
        coefficients = torch.tanh(self.coefficients(h_edge_att))  # (E, K*H)
        combinations = neighbour_outer_sum(unit_vectors, coefficients, target, num_nodes, degree)  # (N, 3, K*H)
        if self.use_spatial_attention:
            reduced = (
                combinations / self._neighbourhood_sizes(target, num_nodes, envelope, degree, h)
                if self.average
                else combinations
            )
            h_spatial = self.post_norm_mlp(reduced.pow(2).sum(1))  # (N, H)
        else:
            h_spatial = torch.zeros_like(h)
        h_aggregated = sum_over_neighbours(h_edge_att, target, num_nodes, degree)  # (N, K*H)
        return h + self.node_mlp(torch.cat([h, h_aggregated, h_spatial], dim=-1)), combinations

    def _neighbourhood_sizes(
        self, target: Tensor, num_nodes: int, envelope: Optional[Tensor], degree: int, h: Tensor
    ) -> Tensor:
        """(N, 1, 1): 1 + the number of neighbours of each atom, each weighted by its cutoff envelope so that the
        count is continuous as atoms cross the cutoff."""
        if envelope is None and degree > 0:
            return torch.full((num_nodes, 1, 1), degree + 1.0, dtype=h.dtype, device=h.device)
        weights = envelope if envelope is not None else torch.ones_like(target, dtype=h.dtype)
        return (1.0 + scatter_sum(weights, target, num_nodes)).view(-1, 1, 1)


class SAKE(nn.Module):
    """SAKE energy model: per-atom energies (before the dataset's scale and shifts) from a graph.

    Args:
        hidden_features: feature size H (paper, MD17: 64).
        num_layers: SAKE layers (paper: 6).
        num_heads: attention heads (paper: 4).
        num_rbf: exponential-normal radial basis functions (paper: 50).
        rbf_cutoff: upper radius of the radial basis, Å (paper: 5).
        cutoff: None for all-pairs graphs (the paper on MD17), or a radius in Å with a smooth envelope.
        semantic_attention, distance_attention, spatial_attention, aggregation: see :class:`SAKELayer`.

    Shapes: ``positions`` (N, 3) Å, ``atomic_numbers`` (N,), ``edge_index`` (2, E), ``shift_vectors`` (E, 3) Å or
    None (periodic images: the edge vector is ``x[source] - x[target] + shift``), ``degree`` the graph's common
    in-degree when the caller knows it, which spares a check that would synchronise a GPU (-1: checked here)
    -> (N,).
    """

    def __init__(
        self,
        hidden_features: int = 64,
        num_layers: int = 6,
        num_heads: int = 4,
        num_rbf: int = 50,
        rbf_cutoff: float = 5.0,
        cutoff: Optional[float] = None,
        semantic_attention: bool = True,
        distance_attention: bool = True,
        spatial_attention: bool = True,
        aggregation: str = "sum",
    ):
        super().__init__()
        self.cutoff = cutoff
        self.min_distance = MIN_DISTANCE  # an attribute: TorchScript cannot read a module-level float
        self.embedding = nn.Embedding(NUM_ELEMENTS, hidden_features)
        self.rbf = ExpNormalSmearing(num_rbf, 0.0, rbf_cutoff)
        self.envelope = CosineCutoff(cutoff) if cutoff is not None else None
        self.layers = nn.ModuleList(
            [
                SAKELayer(
                    hidden_features,
                    num_heads,
                    num_rbf,
                    lengthscale_max=rbf_cutoff,
                    semantic_attention=semantic_attention,
                    distance_attention=distance_attention,
                    spatial_attention=spatial_attention,
                    aggregation=aggregation,
                    null_neighbour=cutoff is not None,
                )
                for _ in range(num_layers)
            ]
        )
        self.readout = MLP([hidden_features, hidden_features, 1])

    def forward(
        self,
        positions: Tensor,
        atomic_numbers: Tensor,
        edge_index: Tensor,
        shift_vectors: Optional[Tensor] = None,
        degree: int = -1,
    ) -> Tensor:
        vectors = edge_vectors(positions, edge_index, shift_vectors)
        distances = torch.linalg.vector_norm(vectors, dim=-1)
        unit_vectors = vectors / distances.clamp_min(self.min_distance).unsqueeze(-1)
        rbf = self.rbf(distances)
        envelope: Optional[Tensor] = None
        if self.envelope is not None:
            envelope = self.envelope(distances)

        h = self.embedding(atomic_numbers)
        if degree < 0:
            degree = regular_degree(edge_index, h.shape[0])
        for layer in self.layers:
            h = layer(h, edge_index, distances, unit_vectors, rbf, envelope, degree)
        return self.readout(h).squeeze(-1)
