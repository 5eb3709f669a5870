"""Physics checks run on every model variant (float64 unless stated)."""

import numpy as np
import pytest
import torch

from conftest import ETHANOL, energy_and_forces, make_potential, random_molecule


def random_orthogonal(seed: int, reflect: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_energy_invariant_forces_equivariant_under_e3(variant, reflect):
    potential = make_potential(variant)
    positions = random_molecule(9, seed=1)
    energy, forces = energy_and_forces(potential, positions, ETHANOL)
    for seed in range(3):
        q = random_orthogonal(seed, reflect)
        shift = np.random.default_rng(100 + seed).normal(scale=3.0, size=3)
        moved_energy, moved_forces = energy_and_forces(potential, positions @ q.T + shift, ETHANOL)
        assert abs(float(moved_energy - energy)) <= 1e-9 * abs(float(energy))
        expected = forces.numpy() @ q.T
        assert np.abs(moved_forces.numpy() - expected).max() <= 1e-9 * np.abs(expected).max()


def test_permutation_equivariance(variant):
    potential = make_potential(variant)
    positions = random_molecule(9, seed=2)
    energy, forces = energy_and_forces(potential, positions, ETHANOL)
    order = np.random.default_rng(0).permutation(9)
    permuted_energy, permuted_forces = energy_and_forces(potential, positions[order], np.array(ETHANOL)[order])
    assert abs(float(permuted_energy - energy)) <= 1e-9 * abs(float(energy))
    np.testing.assert_allclose(permuted_forces.numpy(), forces.numpy()[order], rtol=0, atol=1e-10)


def test_forces_are_minus_energy_gradient_by_central_differences(variant):
    potential = make_potential(variant)
    positions = random_molecule(9, seed=3)
    _, forces = energy_and_forces(potential, positions, ETHANOL)
    step = 1e-5
    numerical = np.zeros_like(positions)
    for atom in range(9):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += step
            minus[atom, axis] -= step
            e_plus, _ = energy_and_forces(potential, plus, ETHANOL)
            e_minus, _ = energy_and_forces(potential, minus, ETHANOL)
            numerical[atom, axis] = -float(e_plus - e_minus) / (2 * step)
    # Central differences err by O(step^2) ~ 1e-10 plus float64 rounding of ~-3000 eV energies / step ~ 1e-8.
    np.testing.assert_allclose(forces.numpy(), numerical, rtol=0, atol=1e-6 * np.abs(numerical).max() + 1e-7)


def test_batched_equals_unbatched(variant):
    potential = make_potential(variant)
    molecules = [(random_molecule(9, seed=4), ETHANOL), (random_molecule(5, seed=5), [8, 1, 1, 6, 1])]
    singles = [energy_and_forces(potential, p, z) for p, z in molecules]
    positions = torch.as_tensor(np.concatenate([p for p, _ in molecules]))
    numbers = torch.as_tensor(np.concatenate([z for _, z in molecules]))
    batch = torch.tensor([0] * 9 + [1] * 5)
    energies, forces = (t.detach() for t in potential(positions, numbers, batch, 2))
    for b, (energy, single_forces) in enumerate(singles):
        assert abs(float(energies[b] - energy)) <= 1e-10 * abs(float(energy))
        np.testing.assert_allclose(forces[batch == b].detach().numpy(), single_forces.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torchscript_equals_eager(variant, dtype):
    potential = make_potential(variant, dtype)
    scripted = torch.jit.script(potential)
    positions = random_molecule(9, seed=6)
    energy, forces = energy_and_forces(potential, positions, ETHANOL, dtype)
    scripted_energy, scripted_forces = energy_and_forces(scripted, positions, ETHANOL, dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(float(scripted_energy - energy)) <= tolerance * max(1.0, abs(float(energy)))
    np.testing.assert_allclose(scripted_forces.numpy(), forces.numpy(), rtol=0, atol=tolerance * 10)


def test_energy_and_forces_continuous_at_the_cutoff():
    """An atom leaving a molecule's cutoff: energy and force approach their values outside it."""
    potential = make_potential("sake-cutoff")
    cutoff = potential.cutoff
    core = random_molecule(4, seed=7, spread=0.7)
    core -= core.mean(axis=0)
    numbers = [6, 8, 1, 1, 1]
    direction = np.array([1.0, 0.0, 0.0])
    furthest = core @ direction
    # Place the probe so that its distance to the nearest core atom along x crosses the cutoff; only that atom
    # is within reach (the others are further along x).
    anchor = core[np.argmax(furthest)]

    def at(distance):
        probe = anchor + distance * direction
        return energy_and_forces(potential, np.vstack([core, probe]), numbers)

    outside_energy, outside_forces = at(cutoff + 1e-3)
    assert float(outside_forces[-1].abs().max()) == 0.0  # beyond the cutoff the probe feels nothing
    previous = None
    for gap in [1e-1, 1e-2, 1e-3, 1e-4]:
        energy, forces = at(cutoff - gap)
        energy_jump = abs(float(energy - outside_energy))
        force_jump = float((forces - outside_forces).abs().max())
        if previous is not None:  # cosine envelope: both vanish at least linearly in the gap
            assert energy_jump <= previous[0] * 0.2 + 1e-12
            assert force_jump <= previous[1] * 0.2 + 1e-12
        previous = (energy_jump, force_jump)
    assert previous[0] < 1e-8 and previous[1] < 1e-4


def test_isolated_atoms_in_cutoff_mode_get_the_bare_energy():
    """With no neighbour inside the cutoff an atom's energy is its shift plus the network's isolated-atom term."""
    potential = make_potential("sake-cutoff")
    far = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 50.0]])
    energy, forces = energy_and_forces(potential, far, [6, 8])
    separate = sum(float(energy_and_forces(potential, far[i : i + 1], [z])[0]) for i, z in enumerate([6, 8]))
    assert abs(float(energy) - separate) < 1e-10
    assert float(forces.abs().max()) == 0.0
