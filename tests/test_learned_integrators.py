"""Learned integrators (SAKE's velocity update, the EGNN baseline): E(n)-equivariance, permutations, batching,
TorchScript, the horizon scaling, roll-outs, ensembles and saved models. Float64 where precision matters."""

import numpy as np
import pytest
import torch

from attnforce.checkpoint import resolve_model_path
from integrators.dynamics import build_dynamics
from integrators.forecast import ensemble, rollout, step
from integrators.saved import load_forecaster, save_forecaster
from systems.forecasting import NBODY

VARIANTS = {
    "sake": dict(num_types=3, horizon=0.7, hidden_features=16, num_layers=3, num_heads=2, num_rbf=8, rbf_cutoff=4.0),
    "egnn": dict(num_types=3, horizon=0.7, hidden_features=16, num_layers=3),
}


@pytest.fixture(params=sorted(VARIANTS))
def model(request):
    torch.manual_seed(0)
    return build_dynamics(request.param, VARIANTS[request.param], torch.float64)


def _state(num_systems=3, num_particles=6, seed=1):
    generator = torch.Generator().manual_seed(seed)
    positions = torch.randn(num_systems, num_particles, 3, generator=generator, dtype=torch.float64) * 1.5
    velocities = torch.randn(num_systems, num_particles, 3, generator=generator, dtype=torch.float64)
    types = torch.randint(0, 3, (num_systems, num_particles), generator=generator)
    return positions, velocities, types


def _orthogonal(determinant: float) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    if torch.det(q) * determinant < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("determinant", [1.0, -1.0], ids=["rotation", "reflection"])
def test_forecast_is_e3_equivariant(model, determinant):
    positions, velocities, types = _state()
    q, shift = _orthogonal(determinant), torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    x, v = model(positions, velocities, types)
    x_moved, v_moved = model(positions @ q.T + shift, velocities @ q.T, types)
    # Float64 keeps E(3) to rounding: measured errors are below 1e-15 of the largest entry; a float32 step inside
    # (distances in float32) gives 1e-8 to 1e-7, which a float32 tolerance of 1e-6 would let through.
    assert torch.allclose(x_moved, x @ q.T + shift, rtol=0, atol=1e-12 * x.abs().max().item())
    assert torch.allclose(v_moved, v @ q.T, rtol=0, atol=1e-12 * v.abs().max().item())
    assert not torch.allclose(x, positions + 0.7 * velocities, atol=1e-3)  # the network does something


def test_forecast_is_permutation_equivariant(model):
    positions, velocities, types = _state()
    permutation = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    x, v = model(positions, velocities, types)
    x_p, v_p = model(positions[:, permutation], velocities[:, permutation], types[:, permutation])
    assert torch.allclose(x_p, x[:, permutation], atol=1e-12)
    assert torch.allclose(v_p, v[:, permutation], atol=1e-12)


def test_batched_equals_one_system_at_a_time(model):
    positions, velocities, types = _state()
    x, v = model(positions, velocities, types)
    for s in range(3):
        x_s, v_s = model(positions[s : s + 1], velocities[s : s + 1], types[s : s + 1])
        assert torch.allclose(x_s[0], x[s], atol=1e-12) and torch.allclose(v_s[0], v[s], atol=1e-12)


def test_torchscript_equals_eager(model):
    positions, velocities, types = _state()
    scripted = torch.jit.script(model)
    for eager, compiled in zip(
        model(positions, velocities, types), scripted(positions, velocities, types), strict=True
    ):
        assert torch.allclose(eager, compiled, atol=1e-12)


def test_a_network_that_leaves_velocities_alone_is_free_flight_over_the_horizon():
    """Zeroing the velocity updates (SAKE: gate 2 sigmoid(0) = 1, mixing 0; EGNN: phi_v = 1, phi_x = 0) must give
    x + horizon * v: checks the scaling of velocities to per-layer displacements and back."""
    positions, velocities, types = _state()
    sake = build_dynamics("sake", VARIANTS["sake"], torch.float64)
    egnn = build_dynamics("egnn", VARIANTS["egnn"], torch.float64)
    with torch.no_grad():
        for gate, mixing in zip(sake.velocity_gates, sake.velocity_mixing, strict=True):
            gate.net[-1].weight.zero_()
            gate.net[-1].bias.zero_()
            mixing.weight.zero_()
        for layer in egnn.layers:
            layer.velocity_mlp.net[-1].weight.zero_()
            layer.velocity_mlp.net[-1].bias.fill_(1.0)
            layer.coordinate_mlp.net[-1].weight.zero_()
    for model in (sake, egnn):
        x, v = model(positions, velocities, types)
        assert torch.allclose(x, positions + 0.7 * velocities, atol=1e-12)
        assert torch.allclose(v, velocities, atol=1e-12)


def test_bad_states_are_named(model):
    positions, velocities, types = _state()
    with pytest.raises(ValueError, match="shape"):
        model(positions[0], velocities[0], types[0])
    with pytest.raises(ValueError, match="types must have shape"):
        model(positions, velocities, types[:, :3])
    with pytest.raises(ValueError, match=r"particle types must lie in \[0, 3\)"):
        model(positions, velocities, types + 3)
    with pytest.raises(ValueError, match="NaN"):
        step(model, np.full((1, 6, 3), np.nan), np.zeros((1, 6, 3)), np.zeros((1, 6), int))


def test_coincident_particles_and_bad_settings(model):
    positions, velocities, types = _state()
    positions[:, 1] = positions[:, 0]
    x, v = model(positions, velocities, types)
    assert torch.isfinite(x).all() and torch.isfinite(v).all()
    with pytest.raises(ValueError, match="num_layers must be an integer from 1 to 64, got 0"):
        build_dynamics("sake", dict(VARIANTS["sake"], num_layers=0))
    with pytest.raises(ValueError, match="horizon must be a positive number, got 0.0"):
        build_dynamics("egnn", dict(VARIANTS["egnn"], horizon=0.0))
    with pytest.raises(ValueError, match="hidden_features must be an integer from 1 to 4096, got 300000"):
        build_dynamics("sake", dict(VARIANTS["sake"], hidden_features=300000))  # 360 GB: refused before allocating
    with pytest.raises(ValueError, match="num_layers >= 1"):  # the class itself, built directly
        type(build_dynamics("sake", VARIANTS["sake"]))(**dict(VARIANTS["sake"], num_layers=0))


def test_rollout_repeats_the_step_and_ensembles_spread(model):
    positions, velocities, types = (t.numpy() for t in _state())
    trajectory, trajectory_velocities = rollout(model, positions, velocities, types, 2)
    x1, v1 = step(model, positions, velocities, types)
    x2, _ = step(model, x1, v1, types)
    assert trajectory.shape == (3, 3, 6, 3)
    np.testing.assert_allclose(trajectory[:, 0], positions)
    np.testing.assert_allclose(trajectory[:, 2], x2, atol=1e-12)
    members, spread = ensemble(model, positions, velocities, types, 2, members=4, position_noise=0.0)
    assert members.shape == (3, 4, 3, 6, 3) and np.allclose(spread, 0.0)
    members, spread = ensemble(model, positions, velocities, types, 2, members=4, position_noise=0.05, seed=1)
    assert spread.shape == (3, 3) and np.all(spread > 0)
    assert spread[:, 0] == pytest.approx(np.full(3, 0.05 * np.sqrt(3 * 3 / 4)), rel=0.5)


def test_saved_forecaster_round_trip_and_bad_files(model, tmp_path):
    architecture = "sake" if hasattr(model, "velocity_gates") else "egnn"
    hyperparameters = dict(VARIANTS[architecture], num_types=2)
    model = build_dynamics(architecture, hyperparameters)
    path = tmp_path / "m.pt"
    save_forecaster(path, model, architecture, hyperparameters, NBODY, True, {"note": "test"})
    saved = load_forecaster(path, "nbody")
    positions, velocities, types = (t.float() if t.is_floating_point() else t.clamp(max=1) for t in _state())
    for a, b in zip(model(positions, velocities, types), saved.model(positions, velocities, types), strict=True):
        assert torch.equal(a, b)
    assert saved.predicts_velocities and saved.task == NBODY and saved.metadata["note"] == "test"
    with pytest.raises(ValueError, match="trained on the nbody task, not walking"):
        load_forecaster(path, "walking")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable attnforce model"):
        load_forecaster(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an attnforce learned integrator"):
        load_forecaster(resolve_model_path("sake"))  # the embedded energy model
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_forecaster(tmp_path / "missing.pt")
