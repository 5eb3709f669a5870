"""Graphs and scatters: the regular (reshape) path equals the scatter path."""

import torch

from attnforce.nn import (
    all_pairs_edges,
    neighbour_outer_sum,
    radius_edges,
    regular_degree,
    scatter_sum,
    segment_softmax,
    sum_over_neighbours,
)


def test_all_pairs_edges_and_regularity():
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    edges = all_pairs_edges(batch)
    assert edges.shape == (2, 12)
    assert set(map(tuple, edges.t().tolist())) == {
        (s, t) for t in range(6) for s in range(6) if s != t and s // 3 == t // 3
    }
    assert regular_degree(edges, 6) == 2
    assert regular_degree(all_pairs_edges(torch.tensor([0, 0, 0, 1, 1])), 5) == 0  # unequal sizes
    interleaved = torch.tensor([[1, 0, 2, 0], [0, 1, 0, 1]])  # equal degrees, targets not grouped
    assert regular_degree(interleaved, 2) == 0
    positions = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    assert radius_edges(positions, torch.zeros(3, dtype=torch.long), 2.0).t().tolist() == [[1, 0], [0, 1]]


def test_regular_path_equals_scatter_path():
    torch.manual_seed(0)
    batch = torch.tensor([0] * 4 + [1] * 4)
    edges = all_pairs_edges(batch)
    target, n, d = edges[1], 8, regular_degree(edges, 8)
    assert d == 3
    x, a, b = torch.randn(24, 5), torch.randn(24, 3), torch.randn(24, 7)
    torch.testing.assert_close(sum_over_neighbours(x, target, n, d), scatter_sum(x, target, n))
    torch.testing.assert_close(neighbour_outer_sum(a, b, target, n, d), neighbour_outer_sum(a, b, target, n, 0))
    logits, weights, null = torch.randn(24, 4), torch.rand(24), torch.randn(4)
    regular = segment_softmax(logits, target, n, weights, null, d)
    torch.testing.assert_close(regular, segment_softmax(logits, target, n, weights, null, 0))
    plain = segment_softmax(logits, target, n, degree=d)
    torch.testing.assert_close(scatter_sum(plain, target, n), torch.ones(n, 4))
