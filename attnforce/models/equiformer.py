"""Equiformer: equivariant graph attention transformer (Liao & Smidt, ICLR 2023), as an energy model.

Per structure: atom embedding plus an edge-degree embedding, then pre-norm Transformer blocks
``h + Attention(LayerNorm(h))`` and ``h + FeedForward(LayerNorm(h))``, a final layer norm, a scalar head and a
per-atom output that :class:`~attnforce.models.Potential` scales and sums with the training set's statistics.

Equivariant graph attention (per edge j -> i, H heads):

1. the message starts from linear maps of the source and target features, ``x_ij = W_s h_j + W_t h_i``;
2. a depthwise tensor product with the spherical harmonics of the edge, weighted per edge by an MLP of the
   radial basis, then a linear map;
3. ``attention="mlp"`` (the paper's): logits ``a_k . SmoothLeakyReLU(f_ij,k)`` from scalar channels of the
   message;
   ``"dot_product"``: the scaled dot product of a query from ``h_i`` with a key from the message;
4. values: ``nonlinear_messages=True`` gates the message and applies a second depthwise tensor product (the
   paper's non-linear message passing); ``False`` takes the values from the same linear map as the logits;
5. softmax over the incoming edges, sum of the weighted values, a linear projection.

Smoothness at the cutoff, which the published model lacks (its radial MLP and softmax do not vanish there):
every softmax term is multiplied by a cosine envelope and the softmax has a fixed "null neighbour" of logit 0,
and the edge-degree embedding is weighted by the same envelope, so energies and forces are continuous as atoms
cross the cutoff. Neither adds a parameter: the ``equiformer-md17`` preset counts exactly the official build's
3,496,001 parameters.
"""

from typing import Optional

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import Tensor, nn

from attnforce.nn import (
    CosineCutoff,
    ExpNormalSmearing,
    GaussianRadialBasis,
    edge_vectors,
    scatter_sum,
    segment_softmax,
)
from attnforce.nn.equivariant import (
    SCALAR,
    DepthwiseTensorProduct,
    EquivariantLayerNorm,
    HeadIndex,
    SphericalHarmonics,
    gated,
    sort_even_first,
)

ATTENTION_KINDS = ("mlp", "dot_product")
#: Radial bases of the distances: the official MD17 models use ``exp_normal`` except the linear one (``gaussian``).
RADIAL_BASES = ("exp_normal", "gaussian")


def smooth_leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """``(1+a)/2 x + (1-a)/2 x (2 sigmoid(x) - 1)``: leaky-ReLU-like, infinitely differentiable."""
    return 0.5 * (1.0 + negative_slope) * x + 0.5 * (1.0 - negative_slope) * x * (2.0 * torch.sigmoid(x) - 1.0)


#: e3nn's second-moment normalisation (as its activations and the paper's): unit-variance outputs for N(0, 1) inputs.
SMOOTH_LEAKY_RELU_SCALE = float(normalize2mom(smooth_leaky_relu).cst)
SILU_SCALE = float(normalize2mom(nn.functional.silu).cst)


class ScaledSiLU(nn.Module):
    """SiLU with e3nn's second-moment normalisation. Shapes: any -> same."""

    def __init__(self):
        super().__init__()
        self.scale = SILU_SCALE

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.silu(x) * self.scale


def check_sorted(irreps: o3.Irreps, what: str) -> o3.Irreps:
    """``irreps`` if sorted by l (even before odd) with each irrep once; ValueError otherwise (gates and
    tensor-product outputs come out in that order, so features must be laid out in it too)."""
    irreps = o3.Irreps(irreps)
    expected = sort_even_first(irreps)[0].simplify()
    if irreps != expected:
        raise ValueError(f"{what} must be sorted by l, even first, each irrep once (like {expected}), got {irreps}")
    return irreps


class GraphAttention(nn.Module):
    """Equivariant graph attention, see the module docstring.

    Args:
        irreps_node: node feature irreps (input and output).
        irreps_sh: spherical harmonics of the edges.
        irreps_head: feature irreps of one head's values.
        num_heads: H.
        radial_neurons: widths of the radial MLP, starting with the number of radial basis functions.
        attention: "mlp" or "dot_product".
        nonlinear_messages: gate + second depthwise tensor product in the value path (MLP attention only).

    Shapes: h (N, irreps_node.dim), sh (E, irreps_sh.dim), rbf (E, num_rbf), envelope (E,) -> like h.
    """

    def __init__(
        self,
        irreps_node: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_head: o3.Irreps,
        num_heads: int,
        radial_neurons: list[int],
        attention: str,
        nonlinear_messages: bool,
    ):
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        if attention == "dot_product" and nonlinear_messages:
            raise ValueError("non-linear messages are defined for MLP attention only")
        self.num_heads = num_heads
        self.dot_product = attention == "dot_product"
        self.nonlinear_messages = nonlinear_messages
        self.heads = HeadIndex(irreps_head, num_heads)
        irreps_values = self.heads.irreps
        alpha_per_head = sum(mul for mul, ir in o3.Irreps(irreps_head) if ir == SCALAR)
        self.alpha_per_head = alpha_per_head
        self.activation_scale = SMOOTH_LEAKY_RELU_SCALE

        self.merge_source = o3.Linear(irreps_node, irreps_node, biases=True)
        self.merge_target = o3.Linear(irreps_node, irreps_node, biases=False)

        # Unused branches are None; TorchScript needs every attribute to exist.
        self.query: Optional[nn.Module] = None
        self.alpha_linear: Optional[nn.Module] = None
        self.gate: Optional[nn.Module] = None
        self.value_tensor_product: Optional[nn.Module] = None
        self.value_linear: Optional[nn.Module] = None
        if self.dot_product:
            # Keys and values from one linear map: every irrep block holds the keys' channels, then the values'.
            irreps_key_value = o3.Irreps([(2 * mul, ir) for mul, ir in irreps_values])
            self.query = o3.Linear(irreps_node, irreps_values, biases=True)
            self.message_tensor_product = DepthwiseTensorProduct(
                irreps_node, irreps_sh, irreps_key_value, radial_neurons
            )
            self.message_linear = o3.Linear(self.message_tensor_product.irreps_out, irreps_key_value, biases=True)
            key_index, value_index, start = [], [], 0
            for mul, ir in irreps_values:
                key_index.append(torch.arange(start, start + mul * ir.dim))
                value_index.append(torch.arange(start + mul * ir.dim, start + 2 * mul * ir.dim))
                start += 2 * mul * ir.dim
            self.register_buffer("key_index", torch.cat(key_index), persistent=False)
            self.register_buffer("value_index", torch.cat(value_index), persistent=False)
            # The paper's scale: 1 / sqrt(irreps per head) and 1 / sqrt(2l+1) for each component.
            scale = torch.cat(
                [torch.full((num_heads * mul * ir.dim,), ir.dim**-0.5) for mul, ir in o3.Irreps(irreps_head)]
            ) * (o3.Irreps(irreps_head).num_irreps ** -0.5)
            self.register_buffer("query_scale", scale, persistent=False)
            self.alpha_dot = None
        else:
            self.register_buffer("key_index", torch.zeros(0, dtype=torch.long), persistent=False)
            self.register_buffer("value_index", torch.zeros(0, dtype=torch.long), persistent=False)
            self.register_buffer("query_scale", torch.zeros(0), persistent=False)
            irreps_alpha = o3.Irreps(f"{alpha_per_head * num_heads}x0e")
            self.alpha_dot = nn.Parameter(torch.empty(num_heads, alpha_per_head))
            bound = (6.0 / (num_heads + alpha_per_head)) ** 0.5  # Glorot, as GATv2 and the paper
            nn.init.uniform_(self.alpha_dot, -bound, bound)
            if nonlinear_messages:
                self.message_tensor_product = DepthwiseTensorProduct(
                    irreps_node, irreps_sh, irreps_node, radial_neurons
                )
                self.alpha_linear = o3.Linear(self.message_tensor_product.irreps_out, irreps_alpha, biases=True)
                gate = gated(irreps_node)
                self.message_linear = o3.Linear(self.message_tensor_product.irreps_out, gate.irreps_in, biases=True)
                self.gate = gate
                self.value_tensor_product = DepthwiseTensorProduct(irreps_node, irreps_sh, irreps_values, None)
                self.value_linear = o3.Linear(self.value_tensor_product.irreps_out, irreps_values, biases=True)
            else:
                irreps_all = (irreps_alpha + irreps_values).simplify()
                self.message_tensor_product = DepthwiseTensorProduct(irreps_node, irreps_sh, irreps_all, radial_neurons)
                self.message_linear = o3.Linear(self.message_tensor_product.irreps_out, irreps_all, biases=True)
        self.register_buffer("null_logit", torch.zeros(num_heads), persistent=False)
        self.projection = o3.Linear(irreps_values, irreps_node, biases=True)

    def forward(self, h: Tensor, edge_index: Tensor, sh: Tensor, rbf: Tensor, envelope: Tensor) -> Tensor:
        source, target = edge_index[0], edge_index[1]
        num_nodes = h.shape[0]
        message = self.merge_source(h).index_select(0, source) + self.merge_target(h).index_select(0, target)
        message = self.message_tensor_product(message, sh, rbf)

        if self.dot_product:
            assert self.query is not None
            key_value = self.message_linear(message)
            query = self.query(h).index_select(0, target) * self.query_scale
            logits = (query * key_value.index_select(1, self.key_index)) @ self.heads.head_matrix
            values = key_value.index_select(1, self.value_index)
        else:
            alpha_dot = self.alpha_dot
            assert alpha_dot is not None
            if self.nonlinear_messages:
                assert self.alpha_linear is not None and self.gate is not None
                assert self.value_tensor_product is not None and self.value_linear is not None
                alpha = self.alpha_linear(message)
                values = self.gate(self.message_linear(message))
                values = self.value_linear(self.value_tensor_product(values, sh, rbf))
            else:
                message = self.message_linear(message)
                alpha = message.narrow(1, 0, self.num_heads * self.alpha_per_head)
                values = message.narrow(1, alpha.shape[1], message.shape[1] - alpha.shape[1])
            alpha = smooth_leaky_relu(alpha.reshape(-1, self.num_heads, self.alpha_per_head)) * self.activation_scale
            logits = (alpha * alpha_dot).sum(-1)

        attention = segment_softmax(logits, target, num_nodes, envelope, self.null_logit)  # (E, H)
        weighted = values * attention.index_select(1, self.heads.channel_head)
        return self.projection(scatter_sum(weighted, target, num_nodes))


class FeedForward(nn.Module):
    """Linear -> gate -> linear, on node features. Shapes: (N, irreps_in.dim) -> (N, irreps_out.dim)."""

    def __init__(self, irreps_in: o3.Irreps, irreps_hidden: o3.Irreps, irreps_out: o3.Irreps):
        super().__init__()
        gate = gated(irreps_hidden)
        self.linear_in = o3.Linear(irreps_in, gate.irreps_in, biases=True)
        self.gate = gate
        self.linear_out = o3.Linear(gate.irreps_out, irreps_out, biases=True)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear_out(self.gate(self.linear_in(h)))


class TransformerBlock(nn.Module):
    """Pre-norm block: attention and feed-forward, each with a residual; a linear shortcut when the block
    changes the irreps (the last block, to the scalar features of the head)."""

    def __init__(
        self,
        irreps_node: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_head: o3.Irreps,
        irreps_mlp: o3.Irreps,
        num_heads: int,
        radial_neurons: list[int],
        attention: str,
        nonlinear_messages: bool,
    ):
        super().__init__()
        self.norm_attention = EquivariantLayerNorm(irreps_node)
        self.attention = GraphAttention(
            irreps_node, irreps_sh, irreps_head, num_heads, radial_neurons, attention, nonlinear_messages
        )
        self.norm_feed_forward = EquivariantLayerNorm(irreps_node)
        self.feed_forward = FeedForward(irreps_node, irreps_mlp, irreps_out)
        self.shortcut = (
            None if o3.Irreps(irreps_out) == o3.Irreps(irreps_node) else o3.Linear(irreps_node, irreps_out, biases=True)
        )

    def forward(self, h: Tensor, edge_index: Tensor, sh: Tensor, rbf: Tensor, envelope: Tensor) -> Tensor:
        h = h + self.attention(self.norm_attention(h), edge_index, sh, rbf, envelope)
        update = self.feed_forward(self.norm_feed_forward(h))
        if self.shortcut is not None:
            h = self.shortcut(h)
        return h + update


class EdgeDegreeEmbedding(nn.Module):
    """Initial equivariant features from each atom's neighbourhood: a depthwise tensor product of a learned
    constant with the edges' spherical harmonics, weighted by the radial MLP and the envelope, summed over
    neighbours and divided by the root of the training set's mean number of neighbours."""

    def __init__(
        self, irreps_node: o3.Irreps, irreps_sh: o3.Irreps, radial_neurons: list[int], avg_degree: Optional[float]
    ):
        super().__init__()
        self.constant = o3.Linear("1x0e", irreps_node, biases=True)
        self.tensor_product = DepthwiseTensorProduct(irreps_node, irreps_sh, irreps_node, radial_neurons)
        self.linear = o3.Linear(self.tensor_product.irreps_out, irreps_node, biases=True)
        if avg_degree is not None and not avg_degree > 0:
            raise ValueError(
                f"avg_degree must be positive (no atom has a neighbour within the cutoff?), got {avg_degree}"
            )
        self.inverse_sqrt_degree = 1.0 if avg_degree is None else float(avg_degree) ** -0.5

    def forward(self, num_nodes: int, edge_index: Tensor, sh: Tensor, rbf: Tensor, envelope: Tensor) -> Tensor:
        ones = torch.ones((sh.shape[0], 1), dtype=sh.dtype, device=sh.device)
        edges = self.linear(self.tensor_product(self.constant(ones), sh, rbf)) * envelope.unsqueeze(-1)
        return scatter_sum(edges, edge_index[1], num_nodes) * self.inverse_sqrt_degree


class Equiformer(nn.Module):
    """Equiformer energy model: per-atom outputs (before the dataset's scale and shifts) from a cutoff graph.

    Args:
        irreps_node: node features (paper, MD17: "128x0e+64x1e+32x2e").
        num_layers: Transformer blocks (paper: 6).
        num_heads: attention heads (paper: 4).
        irreps_head: value irreps of one head (paper: "32x0e+16x1e+8x2e").
        irreps_mlp: hidden irreps of the feed-forward networks (paper: "384x0e+192x1e+96x2e").
        irreps_feature: scalar features out of the last block, into the head (paper: "512x0e").
        num_rbf: radial basis functions (paper, MD17: 32).
        radial_basis: ``exp_normal`` (fixed; the official non-linear and dot-product MD17 models) or ``gaussian``
            (trainable, 2 * num_rbf + 2 parameters; the official linear-messages MD17 model).
        radial_hidden: hidden widths of the radial MLPs (paper: [64, 64]).
        cutoff: graph radius, Å (paper: 5).
        attention: "mlp" (paper) or "dot_product".
        nonlinear_messages: the paper's non-linear message passing.
        parity: spherical harmonics with their true parity (``1x0e+1x1o+1x2e``; reflection-equivariant) or all
            even (``1x0e+1x1e+1x2e``, the paper's MD17 models: SE(3) only, so the energy can tell a molecule
            from its mirror image). Node irreps must use the same parities.
        num_atom_types: one-hot size of the atom embedding; atomic numbers must be below it (paper: 64).
        avg_degree: mean number of neighbours within the cutoff in the training set (the trainer fits it when
            None); the edge-degree embedding is divided by its root (not at all when None).

    Shapes: ``positions`` (N, 3) Å, ``atomic_numbers`` (N,), ``edge_index`` (2, E), ``shift_vectors`` (E, 3) Å or
    None (periodic images: the edge vector is ``x[source] - x[target] + shift``), ``degree`` (the interface's
    in-degree hint; Equiformer sums by scatter and needs none) -> (N,).
    """

    def __init__(
        self,
        irreps_node: str = "128x0e+64x1e+32x2e",
        num_layers: int = 6,
        num_heads: int = 4,
        irreps_head: str = "32x0e+16x1e+8x2e",
        irreps_mlp: str = "384x0e+192x1e+96x2e",
        irreps_feature: str = "512x0e",
        num_rbf: int = 32,
        radial_basis: str = "exp_normal",
        radial_hidden: Optional[list[int]] = None,
        cutoff: float = 5.0,
        attention: str = "mlp",
        nonlinear_messages: bool = True,
        parity: bool = False,
        num_atom_types: int = 64,
        avg_degree: Optional[float] = None,
    ):
        super().__init__()
        node = check_sorted(irreps_node, "irreps_node")
        head = check_sorted(irreps_head, "irreps_head")
        mlp = check_sorted(irreps_mlp, "irreps_mlp")
        feature = o3.Irreps(irreps_feature)
        if any(ir != SCALAR for _, ir in feature):
            raise ValueError(f"irreps_feature must be even scalars, got {feature}")
        sh = o3.Irreps.spherical_harmonics(node.lmax, p=-1 if parity else 1)
        for _, ir in node + head + mlp:
            if ir.p != (-1 if parity else 1) ** ir.l:
                raise ValueError(f"irrep {ir} does not match parity={parity}: use {'1o/2e' if parity else '1e/2e'}")
        radial = [num_rbf] + list([64, 64] if radial_hidden is None else radial_hidden)
        self.cutoff: Optional[float] = float(cutoff)
        self.num_atom_types = num_atom_types
        self.embedding = o3.Linear(f"{num_atom_types}x0e", node, biases=True)
        with torch.no_grad():  # a one-hot input has norm 1, not sqrt(num_atom_types): unit-variance embeddings
            self.embedding.weight.mul_(num_atom_types**0.5)
        self.spherical_harmonics = SphericalHarmonics(sh, normalize=True, normalization="component")
        if radial_basis not in RADIAL_BASES:
            raise ValueError(f"unknown radial_basis {radial_basis!r}; choose from {list(RADIAL_BASES)}")
        self.rbf = (
            ExpNormalSmearing(num_rbf, 0.0, cutoff, trainable=False)
            if radial_basis == "exp_normal"
            else GaussianRadialBasis(num_rbf, cutoff)
        )
        self.envelope = CosineCutoff(cutoff)
        self.edge_degree = EdgeDegreeEmbedding(node, sh, radial, avg_degree)
        self.blocks = nn.ModuleList(
            [
                TransformerBlock(
                    node,
                    feature if i == num_layers - 1 else node,
                    sh,
                    head,
                    mlp,
                    num_heads,
                    radial,
                    attention,
                    nonlinear_messages,
                )
                for i in range(num_layers)
            ]
        )
        self.norm = EquivariantLayerNorm(feature)
        self.head = nn.Sequential(
            o3.Linear(feature, feature, biases=True), ScaledSiLU(), o3.Linear(feature, "1x0e", biases=True)
        )

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
        sh = self.spherical_harmonics(vectors)
        envelope = self.envelope(distances)
        rbf = self.rbf(distances) * envelope.unsqueeze(-1)
        one_hot = nn.functional.one_hot(atomic_numbers, self.num_atom_types).to(positions.dtype)
        h = self.embedding(one_hot) + self.edge_degree(positions.shape[0], edge_index, sh, rbf, envelope)
        for block in self.blocks:
            h = block(h, edge_index, sh, rbf, envelope)
        return self.head(self.norm(h)).squeeze(-1)
