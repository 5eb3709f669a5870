"""The charged N-body simulator (EGNN protocol): the protocol's statistics and its physics."""

import numpy as np
import pytest

from systems.nbody import advance, coulomb_forces, energies, simulate


@pytest.fixture(scope="module")
def systems():
    return simulate(200, seed=1)


def test_protocol_shapes_charges_and_initial_speeds(systems):
    assert systems.positions.shape == systems.velocities.shape == (200, 50, 5, 3)
    assert set(np.unique(systems.charges)) == {-1.0, 1.0}
    assert 0.4 < np.mean(systems.charges > 0) < 0.6
    np.testing.assert_allclose(np.linalg.norm(systems.velocities[:, 0], axis=-1), 0.5, rtol=1e-12)
    again = simulate(200, seed=1)
    np.testing.assert_array_equal(again.positions, systems.positions)
    assert not np.array_equal(simulate(200, seed=2).positions, systems.positions)


def test_forces_are_minus_the_gradient_of_the_coulomb_energy():
    rng = np.random.default_rng(0)
    positions, charges = rng.normal(size=(3, 5, 3)), rng.choice([-1.0, 1.0], size=(3, 5))
    forces = coulomb_forces(positions, charges, strength=0.7)
    numerical = np.zeros_like(positions)
    step = 1e-6
    for atom in range(5):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[:, atom, axis] += step
            minus[:, atom, axis] -= step
            zero = np.zeros_like(positions)
            numerical[:, atom, axis] = -(
                energies(plus, zero, charges, 0.7)[1] - energies(minus, zero, charges, 0.7)[1]
            ) / (2 * step)
    np.testing.assert_allclose(forces, numerical, rtol=1e-6, atol=1e-8)


def test_momentum_is_conserved_exactly_without_clipping(systems):
    unclipped = systems.clipped_steps == 0
    assert 0.2 < unclipped.mean() < 1.0  # close encounters clip the forces of some systems, as in the protocol
    momentum = systems.velocities.sum(axis=2)  # unit masses, (S, T, 3)
    drift = np.abs(momentum - momentum[:, :1]).max(axis=(1, 2))
    assert drift[unclipped].max() < 1e-12
    assert drift[~unclipped].max() > 1e-6  # clipping breaks Newton's third law: the check can tell


def test_energy_error_is_first_order_in_the_time_step():
    """Kick-drift is a first-order method: halving dt over the same time halves the energy error."""
    coarse = simulate(100, seed=3, steps=5000, sample_every=100, dt=0.001)
    fine = simulate(100, seed=3, steps=10000, sample_every=200, dt=0.0005, max_force=100.0)
    np.testing.assert_array_equal(coarse.positions[:, 0], fine.positions[:, 0])
    unclipped = (coarse.clipped_steps == 0) & (fine.clipped_steps == 0)
    assert unclipped.sum() >= 30

    def energy_error(run):
        kinetic, potential = energies(run.positions, run.velocities, run.charges[:, None, :])
        total = (kinetic + potential)[unclipped]
        return np.abs(total - total[:, :1]).max(axis=1)

    coarse_error, fine_error = energy_error(coarse), energy_error(fine)
    assert np.median(coarse_error) < 0.02
    ratio = np.median(coarse_error / fine_error)
    assert 1.6 < ratio < 2.4, ratio


def test_advancing_a_recorded_frame_gives_the_next_ones_exactly():
    data = simulate(10, seed=5)
    positions, velocities, _ = advance(data.positions[:, 30], data.velocities[:, 30], data.charges, 1000)
    np.testing.assert_array_equal(positions, data.positions[:, 40])
    np.testing.assert_array_equal(velocities, data.velocities[:, 40])
