"""Learned integrators: networks that map a state (positions, velocities, particle types) to the state one fixed
horizon later in a single pass.

Both models see the same inputs. The velocities are scaled to displacements per layer, ``v * horizon / L``, so
that a model whose layers leave the velocity alone is exactly free flight over the horizon; each layer then adds
its velocity to the positions, and the last layer's velocity, scaled back, is the forecast velocity. Node features
start from a learned embedding of the particle type (charge sign, joint identity) plus a linear map of the
speed-times-horizon. Graphs are complete within each system (every particle sees every other).

- :class:`SAKEDynamics`, SAKE's velocity update (Wang & Chodera, ICLR 2023): ``v' = 2 sigmoid(MLP(h')) v +
  W_v mean_j u_ij ⊗ tanh(W_c (a_ij ⊗ h_ij))`` then ``x' = x + v'``, on top of the SAKE layer of
  :class:`attnforce.models.sake.SAKELayer`, with geometry recomputed after every layer.
- :class:`EGNNDynamics`, the velocity variant of E(n)-equivariant graph networks (Satorras et al., ICML 2021,
  eq. 7): ``x' = x + phi_v(h) v_0 + mean_j (x_i - x_j) phi_x(m_ij)``, ``m_ij = phi_e(h_i, h_j, |x_i - x_j|^2)``,
  ``h' = h + phi_h(h, sum_j m_ij)``; every layer uses the input velocity ``v_0`` as in the authors' model. Unlike
  the authors' code, ``phi_x``'s last layer has a bias, the update is not clamped to +-100, and particle types
  enter through the node embedding (their N-body model puts the charge product on the edges instead).

Shapes: ``positions``, ``velocities`` (B, N, 3) in the task's length and time units, ``types`` (B, N) int64 ->
positions and velocities (B, N, 3) after ``horizon`` time units.
"""

import torch
from torch import Tensor, nn

from attnforce.models import check_hyperparameters
from attnforce.models.sake import SAKELayer
from attnforce.nn import MLP, ExpNormalSmearing, all_pairs_edges, regular_degree, sum_over_neighbours


def _complete_graph(num_systems: int, num_particles: int, device: torch.device) -> Tensor:
    """(2, B*N*(N-1)) edges between every ordered pair of particles of each system, sorted by target."""
    batch = torch.arange(num_systems, device=device).repeat_interleave(num_particles)
    return all_pairs_edges(batch)


class _InitialFeatures(nn.Module):
    """Node features (B*N, H) from particle types and speeds over the horizon."""

    def __init__(self, num_types: int, hidden_features: int):
        super().__init__()
        self.type_embedding = nn.Embedding(num_types, hidden_features)
        self.speed_embedding = nn.Linear(1, hidden_features, bias=False)

    def forward(self, types: Tensor, displacements: Tensor) -> Tensor:
        """``types`` (B*N,), ``displacements`` (B*N, 3) = velocity times horizon."""
        speed = torch.linalg.vector_norm(displacements, dim=-1, keepdim=True)
        return self.type_embedding(types) + self.speed_embedding(speed)


def _check_settings(num_types: int, horizon: float, num_layers: int) -> None:
    if num_types < 1 or horizon <= 0 or num_layers < 1:
        raise ValueError(
            f"need num_types >= 1, horizon > 0 and num_layers >= 1; got {num_types}, {horizon} and {num_layers}"
        )


def _check_state(positions: Tensor, velocities: Tensor, types: Tensor, num_types: int) -> None:
    if positions.dim() != 3 or positions.shape[-1] != 3 or velocities.shape != positions.shape:
        raise ValueError(
            f"positions and velocities must both have shape (B, N, 3), got {list(positions.shape)} and "
            f"{list(velocities.shape)}"
        )
    if types.shape != positions.shape[:2]:
        raise ValueError(f"types must have shape {list(positions.shape[:2])}, got {list(types.shape)}")
    if positions.shape[1] < 2:
        raise ValueError("a system needs at least 2 particles")
    if bool(types.min() < 0) or bool(types.max() >= num_types):
        raise ValueError(f"particle types must lie in [0, {num_types}), got {types.min()}..{types.max()}")


class SAKEDynamics(nn.Module):
    """SAKE as a learned integrator over a fixed ``horizon`` (see the module docstring).

    Args:
        num_types: number of particle types (embedding rows).
        horizon: the time one forward pass advances, in the task's time unit.
        hidden_features: feature size H.
        num_layers: SAKE layers L, each one velocity and position update.
        num_heads: attention heads K.
        num_rbf: exponential-normal radial basis functions.
        rbf_cutoff: upper radius of the radial basis and largest initial attention length scale, task length unit.
    """

    def __init__(
        self,
        num_types: int,
        horizon: float,
        hidden_features: int = 64,
        num_layers: int = 4,
        num_heads: int = 4,
        num_rbf: int = 50,
        rbf_cutoff: float = 5.0,
    ):
        super().__init__()
        _check_settings(num_types, horizon, num_layers)
        self.num_types = num_types
        self.horizon = float(horizon)
        self.num_layers = num_layers
        self.features = _InitialFeatures(num_types, hidden_features)
        self.rbf = ExpNormalSmearing(num_rbf, 0.0, rbf_cutoff)
        self.layers = nn.ModuleList(
            [SAKELayer(hidden_features, num_heads, num_rbf, lengthscale_max=rbf_cutoff) for _ in range(num_layers)]
        )
        self.velocity_gates = nn.ModuleList([MLP([hidden_features, hidden_features, 1]) for _ in range(num_layers)])
        self.velocity_mixing = nn.ModuleList(
            [nn.Linear(num_heads * hidden_features, 1, bias=False) for _ in range(num_layers)]
        )

    def forward(self, positions: Tensor, velocities: Tensor, types: Tensor) -> tuple[Tensor, Tensor]:
        """The state after ``horizon``: positions and velocities (B, N, 3)."""
        _check_state(positions, velocities, types, self.num_types)
        num_systems, num_particles = positions.shape[0], positions.shape[1]
        step = self.horizon / self.num_layers
        x = positions.reshape(-1, 3)
        v = velocities.reshape(-1, 3) * step
        h = self.features(types.reshape(-1), v * self.num_layers)
        edge_index = _complete_graph(num_systems, num_particles, positions.device)
        source, target = edge_index[0], edge_index[1]
        num_nodes = x.shape[0]
        degree = regular_degree(edge_index, num_nodes)
        for layer, gate, mixing in zip(self.layers, self.velocity_gates, self.velocity_mixing):  # noqa: B905 (TorchScript)
            vectors = x.index_select(0, source) - x.index_select(0, target)
            distances = torch.linalg.vector_norm(vectors, dim=-1)
            unit_vectors = vectors / distances.clamp_min(1.0e-6).unsqueeze(-1)  # coincident particles: zero vector
            h, combinations = layer.update(
                h, edge_index, distances, unit_vectors, self.rbf(distances), None, degree
            )  # combinations: (B*N, 3, K*H), summed over the N-1 neighbours
            v = 2.0 * torch.sigmoid(gate(h)) * v + mixing(combinations / (num_particles - 1)).squeeze(-1)
            x = x + v
        return x.reshape(positions.shape), (v / step).reshape(positions.shape)


class EGNNLayer(nn.Module):
    """One E_GCL layer with the velocity update (EGNN, eq. 7), on a complete graph.

    Args:
        hidden_features: feature size H.
    """

    def __init__(self, hidden_features: int):
        super().__init__()
        self.edge_mlp = MLP([2 * hidden_features + 1, hidden_features, hidden_features], activate_last=True)
        self.coordinate_mlp = MLP([hidden_features, hidden_features, 1])
        self.velocity_mlp = MLP([hidden_features, hidden_features, 1])
        self.node_mlp = MLP([2 * hidden_features, hidden_features, hidden_features])
        # The authors' initialisation: the position update starts almost switched off.
        last = self.coordinate_mlp.net[-1]
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        nn.init.zeros_(last.bias)

    def forward(
        self, h: Tensor, x: Tensor, v0: Tensor, edge_index: Tensor, degree: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``h`` (M, H), ``x`` (M, 3), ``v0`` (M, 3) displacement per layer -> new ``h``, new ``x`` and the
        displacement ``x' - x``."""
        source, target = edge_index[0], edge_index[1]
        num_nodes = x.shape[0]
        difference = x.index_select(0, target) - x.index_select(0, source)  # x_i - x_j at target i
        squared = difference.pow(2).sum(-1, keepdim=True)
        messages = self.edge_mlp(torch.cat([h.index_select(0, target), h.index_select(0, source), squared], -1))
        pull = sum_over_neighbours(difference * self.coordinate_mlp(messages), target, num_nodes, degree)
        displacement = self.velocity_mlp(h) * v0 + pull / degree
        aggregated = sum_over_neighbours(messages, target, num_nodes, degree)
        return h + self.node_mlp(torch.cat([h, aggregated], -1)), x + displacement, displacement


class EGNNDynamics(nn.Module):
    """EGNN (velocity variant) as a learned integrator over a fixed ``horizon``: the baseline of the SAKE paper.

    Args:
        num_types: number of particle types.
        horizon: the time one forward pass advances, in the task's time unit.
        hidden_features: feature size H (paper: 64).
        num_layers: E_GCL layers (paper: 4).
    """

    def __init__(self, num_types: int, horizon: float, hidden_features: int = 64, num_layers: int = 4):
        super().__init__()
        _check_settings(num_types, horizon, num_layers)
        self.num_types = num_types
        self.horizon = float(horizon)
        self.num_layers = num_layers
        self.features = _InitialFeatures(num_types, hidden_features)
        self.layers = nn.ModuleList([EGNNLayer(hidden_features) for _ in range(num_layers)])

    def forward(self, positions: Tensor, velocities: Tensor, types: Tensor) -> tuple[Tensor, Tensor]:
        """The state after ``horizon``: positions and velocities (B, N, 3)."""
        _check_state(positions, velocities, types, self.num_types)
        num_systems, num_particles = positions.shape[0], positions.shape[1]
        step = self.horizon / self.num_layers
        x = positions.reshape(-1, 3)
        v0 = velocities.reshape(-1, 3) * step
        h = self.features(types.reshape(-1), v0 * self.num_layers)
        edge_index = _complete_graph(num_systems, num_particles, positions.device)
        degree = regular_degree(edge_index, x.shape[0])
        displacement = v0  # TorchScript needs it defined before the loop (num_layers >= 1)
        for layer in self.layers:
            h, x, displacement = layer(h, x, v0, edge_index, degree)
        return x.reshape(positions.shape), (displacement / step).reshape(positions.shape)


#: Learned-integrator architectures by the name stored in saved models and configs.
DYNAMICS_ARCHITECTURES = {"sake": SAKEDynamics, "egnn": EGNNDynamics}


def build_dynamics(architecture: str, hyperparameters: dict, dtype: torch.dtype | None = None) -> nn.Module:
    """Instantiate a learned integrator by name; ValueError for an unknown name or hyperparameter."""
    if architecture not in DYNAMICS_ARCHITECTURES:
        raise ValueError(
            f"unknown learned-integrator architecture {architecture!r}; known: {sorted(DYNAMICS_ARCHITECTURES)}"
        )
    if not isinstance(hyperparameters, dict):
        raise ValueError(f"{architecture} hyperparameters must be a mapping, got {type(hyperparameters).__name__}")
    check_hyperparameters(architecture, hyperparameters, DYNAMICS_ARCHITECTURES[architecture])
    try:
        model = DYNAMICS_ARCHITECTURES[architecture](**hyperparameters)
    except TypeError as error:
        raise ValueError(f"{architecture} hyperparameters: {error}") from None
    return model if dtype is None else model.to(dtype)
