"""Our SAKE layer against the official one: ``sake-gnn`` 0.0.2.post1's ``DenseSAKELayer`` (JAX/Flax, the authors'
code), with our weights copied into it, in float64.

The official layer is ours with ``distance_attention=False`` (its ``log_gamma`` length scales are created but its
``__call__`` never uses them) and ``aggregation="mean"`` (its spatial vectors are averaged over all n atoms). Its
geometry is softened: distances are ``sqrt(d^2 + 1e-5)`` and unit vectors divide by that plus 1e-5; both layers are
given that geometry here, so what is compared is the layer itself. Needs the ``reference`` extra (jax, flax,
sake-gnn); skipped without it.
"""

import numpy as np
import pytest
import torch

from attnforce.models.sake import SAKELayer
from attnforce.nn import ExpNormalSmearing, all_pairs_edges, regular_degree

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
sake_layers = pytest.importorskip("sake.layers")
jax.config.update("jax_enable_x64", True)

HIDDEN, HEADS = 8, 4
#: The official edge model's radial basis size (its ``kernel_features``) and radius, Å.
NUM_RBF, RBF_CUTOFF = 50, 5.0
#: The official layer's softening of distances (``sake.functional.EPSILON``).
EPSILON = 1.0e-5


def _official_parameters(ours: SAKELayer, rbf: ExpNormalSmearing) -> dict:
    """Flax parameters of a ``DenseSAKELayer`` that computes what ``ours`` computes.

    Flax kernels are (in, out), torch weights (out, in). The official edge input is ``[h_j, h_i]`` (source, then
    target); its attention-weighted features are ordered feature-major (``h * K + k``), ours head-major
    (``k * H + h``), so the rows that read them are permuted.
    """

    def t(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().numpy().T

    head_major_to_feature_major = np.array([h * HEADS + k for k in range(HEADS) for h in range(HIDDEN)])

    def dense(linear: torch.nn.Linear) -> dict:
        return {"kernel": t(linear.weight), "bias": linear.bias.detach().numpy()}

    x_mixing = np.zeros((HEADS * HIDDEN, HEADS * HIDDEN))
    x_mixing[head_major_to_feature_major] = t(ours.coefficients.weight)
    node_in = ours.node_mlp.net[0].weight.detach().numpy()  # (H, H + K*H + H): [h, aggregated, spatial]
    node_kernel = np.zeros((2 * HIDDEN + HEADS * HIDDEN, HIDDEN))
    node_kernel[:HIDDEN] = node_in[:, :HIDDEN].T
    node_kernel[HIDDEN + head_major_to_feature_major] = node_in[:, HIDDEN : HIDDEN + HEADS * HIDDEN].T
    node_kernel[HIDDEN + HEADS * HIDDEN :] = node_in[:, HIDDEN + HEADS * HIDDEN :].T
    return {
        "params": {
            "edge_model": {
                "kernel": {"means": rbf.means.detach().numpy(), "betas": rbf.betas.detach().numpy()},
                "mlp_in": {
                    "kernel": np.concatenate([t(ours.filter_source.weight), t(ours.filter_target.weight)]),
                    "bias": ours.filter_target.bias.detach().numpy(),
                },
                "mlp_out": {
                    "layers_0": {
                        "kernel": np.concatenate(
                            [
                                t(ours.edge_in_source.weight),
                                t(ours.edge_in_target.weight),
                                t(ours.edge_in_filter.weight),
                            ]
                        ),
                        "bias": ours.edge_in_target.bias.detach().numpy(),
                    },
                    "layers_2": dense(ours.edge_out),
                },
            },
            "log_gamma": ours.log_inverse_lengthscale.detach().numpy(),  # unused by the official __call__
            "semantic_attention_mlp": {"layers_0": dense(ours.semantic_attention[0])},
            "x_mixing": {"layers_0": {"kernel": x_mixing}},
            "post_norm_mlp": {
                "layers_0": dense(ours.post_norm_mlp.net[0]),
                "layers_2": dense(ours.post_norm_mlp.net[2]),
            },
            "node_mlp": {
                "layers_0": {"kernel": node_kernel, "bias": ours.node_mlp.net[0].bias.detach().numpy()},
                "layers_2": dense(ours.node_mlp.net[2]),
            },
        }
    }


def _ours(h: np.ndarray, positions: np.ndarray, layer: SAKELayer, rbf: ExpNormalSmearing) -> np.ndarray:
    """Our layer's output on one molecule, given the official layer's softened geometry."""
    x = torch.from_numpy(positions)
    edge_index = all_pairs_edges(torch.zeros(len(x), dtype=torch.int64))
    source, target = edge_index
    vectors = x[source] - x[target]
    distances = torch.sqrt((vectors**2).sum(-1) + EPSILON)
    unit_vectors = vectors / (distances + EPSILON).unsqueeze(-1)
    degree = regular_degree(edge_index, len(x))
    with torch.no_grad():
        out = layer(torch.from_numpy(h), edge_index, distances, unit_vectors, rbf(distances), None, degree)
    return out.numpy()


@pytest.mark.parametrize("num_atoms,seed", [(2, 0), (9, 1), (21, 2)])
def test_layer_equals_the_official_dense_sake_layer(num_atoms, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    layer = SAKELayer(HIDDEN, HEADS, NUM_RBF, RBF_CUTOFF, distance_attention=False, aggregation="mean").double()
    rbf = ExpNormalSmearing(NUM_RBF, 0.0, RBF_CUTOFF).double()
    with torch.no_grad():  # away from their initial values, so that every parameter is held to the official use
        for parameter in list(layer.parameters()) + list(rbf.parameters()):
            parameter.mul_(torch.empty_like(parameter).uniform_(0.5, 1.5))
    h = rng.normal(size=(num_atoms, HIDDEN))
    positions = rng.normal(scale=1.5, size=(num_atoms, 3))

    official = sake_layers.DenseSAKELayer(out_features=HIDDEN, hidden_features=HIDDEN, n_heads=HEADS, update=False)
    expected, _, _ = official.apply(
        _official_parameters(layer, rbf), jax.numpy.asarray(h), jax.numpy.asarray(positions)
    )

    np.testing.assert_allclose(_ours(h, positions, layer, rbf), np.asarray(expected), rtol=1e-12, atol=1e-12)


def test_the_comparison_can_fail():
    """The official options matter: our default (distance attention on, vectors summed) differs from the official
    layer by far more than the tolerance, so the test above would catch a wrong option or a wrong weight map."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rbf = ExpNormalSmearing(NUM_RBF, 0.0, RBF_CUTOFF).double()
    h, positions = rng.normal(size=(9, HIDDEN)), rng.normal(scale=1.5, size=(9, 3))
    official = sake_layers.DenseSAKELayer(out_features=HIDDEN, hidden_features=HIDDEN, n_heads=HEADS, update=False)
    for options in (dict(), dict(distance_attention=False), dict(aggregation="mean")):
        layer = SAKELayer(HIDDEN, HEADS, NUM_RBF, RBF_CUTOFF, **options).double()
        expected, _, _ = official.apply(_official_parameters(layer, rbf), h, positions)
        assert np.abs(_ours(h, positions, layer, rbf) - np.asarray(expected)).max() > 1e-6, options
