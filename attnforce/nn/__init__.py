"""Building blocks shared by the architectures: radial bases, cutoffs, graphs, neighbour lists and scatters."""

from attnforce.nn.cutoff import CosineCutoff
from attnforce.nn.graph import (
    all_pairs_edges,
    edge_vectors,
    neighbour_outer_sum,
    radius_edges,
    regular_degree,
    scatter_sum,
    segment_softmax,
    sum_over_neighbours,
)
from attnforce.nn.mlp import MLP
from attnforce.nn.neighbours import cell_list_edges, check_minimum_image, perpendicular_widths
from attnforce.nn.radial import ExpNormalSmearing, GaussianRadialBasis

__all__ = [
    "CosineCutoff",
    "ExpNormalSmearing",
    "GaussianRadialBasis",
    "MLP",
    "all_pairs_edges",
    "cell_list_edges",
    "check_minimum_image",
    "edge_vectors",
    "neighbour_outer_sum",
    "perpendicular_widths",
    "radius_edges",
    "regular_degree",
    "scatter_sum",
    "segment_softmax",
    "sum_over_neighbours",
]
