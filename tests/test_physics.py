"""Physics checks run on every model variant (float64 unless stated)."""

import numpy as np
import pytest
import torch
from conftest import (
    _EQUIFORMER,
    CUTOFF_VARIANTS,
    ETHANOL,
    MODEL_VARIANTS,
    energy_and_forces,
    make_potential,
    random_molecule,
)

from attnforce.export import script
from attnforce.models import Equiformer, Potential, build_model, preset

#: eV. Float64 totals near -3000 eV resolve 5e-13 eV; the learned part is O(1) eV.
ENERGY_ATOL = 1e-10


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
        assert abs(float(moved_energy - energy)) <= ENERGY_ATOL
        expected = forces.numpy() @ q.T
        assert np.abs(moved_forces.numpy() - expected).max() <= 1e-9 * np.abs(expected).max()


def test_permutation_equivariance(variant):
    potential = make_potential(variant)
    positions = random_molecule(9, seed=2)
    energy, forces = energy_and_forces(potential, positions, ETHANOL)
    order = np.random.default_rng(0).permutation(9)
    permuted_energy, permuted_forces = energy_and_forces(potential, positions[order], np.array(ETHANOL)[order])
    assert abs(float(permuted_energy - energy)) <= ENERGY_ATOL
    np.testing.assert_allclose(permuted_forces.numpy(), forces.numpy()[order], rtol=0, atol=1e-10)


def test_forces_are_minus_energy_gradient_by_central_differences(variant):
    potential = make_potential(variant)
    positions = random_molecule(9, seed=3)
    _, forces = energy_and_forces(potential, positions, ETHANOL)
    numbers, batch = torch.tensor(ETHANOL), torch.zeros(9, dtype=torch.long)

    def energy(x):
        with torch.no_grad():
            return float(potential.energy(torch.as_tensor(x), numbers, batch, 1)[0])

    step = 1e-5
    numerical = np.zeros_like(positions)
    for atom in range(9):
        for axis in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[atom, axis] += step
            minus[atom, axis] -= step
            numerical[atom, axis] = -(energy(plus) - energy(minus)) / (2 * step)
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
        assert abs(float(energies[b] - energy)) <= ENERGY_ATOL
        np.testing.assert_allclose(forces[batch == b].detach().numpy(), single_forces.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torchscript_equals_eager(variant, dtype):
    potential = make_potential(variant, dtype)
    scripted = script(potential)
    positions = random_molecule(9, seed=6)
    energy, forces = energy_and_forces(potential, positions, ETHANOL, dtype)
    scripted_energy, scripted_forces = energy_and_forces(scripted, positions, ETHANOL, dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert abs(float(scripted_energy - energy)) <= tolerance * max(1.0, abs(float(energy)))
    np.testing.assert_allclose(scripted_forces.numpy(), forces.numpy(), rtol=0, atol=tolerance * 10)


@pytest.mark.parametrize("variant", CUTOFF_VARIANTS)
def test_energy_and_forces_continuous_at_the_cutoff(variant):
    """An atom leaving its only neighbour's cutoff: energy and forces approach their values outside it."""
    potential = make_potential(variant)
    cutoff = potential.cutoff
    # The anchor is at the origin, every other core atom at x <= -1.2 Å: a probe at (d, 0, 0) with d near the
    # cutoff has the anchor as its only possible neighbour, so the null-neighbour case is exercised.
    core = np.array([[0.0, 0.0, 0.0], [-1.2, 0.3, 0.0], [-1.6, -0.9, 0.4], [-2.0, 0.8, -0.6]])
    numbers = [6, 8, 1, 1, 1]

    def at(distance):
        positions = np.vstack([core, [distance, 0.0, 0.0]])
        assert np.sum(np.linalg.norm(core - positions[-1], axis=1) < cutoff) == (1 if distance < cutoff else 0)
        return energy_and_forces(potential, positions, numbers)

    outside_energy, outside_forces = at(cutoff + 1e-3)
    assert float(outside_forces[-1].abs().max()) == 0.0  # beyond the cutoff the probe feels nothing
    previous = None
    for gap in [1e-1, 1e-2, 1e-3, 1e-4]:
        energy, forces = at(cutoff - gap)
        energy_jump = abs(float(energy - outside_energy))
        force_jump = float((forces - outside_forces).abs().max())
        if previous is not None:  # cosine envelope: the jumps vanish at least linearly with the gap
            assert energy_jump <= previous[0] * 0.2 + 1e-12
            assert force_jump <= previous[1] * 0.2 + 1e-12
        previous = (energy_jump, force_jump)
    assert previous[0] < 1e-8 and previous[1] < 1e-4


def test_energies_stay_float64_in_a_float32_model():
    """Totals like aspirin's -17618 eV need float64: the shifts and sums stay float64 after ``.to(float32)``."""
    potential = make_potential("sake-allpairs", dtype=torch.float32)
    assert potential.element_shifts.dtype == torch.float64
    positions = random_molecule(9, seed=9)
    energy, _ = energy_and_forces(potential, positions, ETHANOL, torch.float32)
    assert energy.dtype == torch.float64
    no_shifts = make_potential("sake-allpairs", dtype=torch.float32)
    no_shifts.element_shifts.zero_()
    learned, _ = energy_and_forces(no_shifts, positions, ETHANOL, torch.float32)
    reference = float(potential.element_shifts[torch.tensor(ETHANOL)].sum())
    assert abs(float(energy) - (reference + float(learned))) < 1e-9  # float32 would be off by ~1e-4 eV here


@pytest.mark.parametrize("variant", CUTOFF_VARIANTS)
def test_isolated_atoms_in_cutoff_mode_get_the_bare_energy(variant):
    """With no neighbour inside the cutoff an atom's energy is its shift plus the network's isolated-atom term."""
    potential = make_potential(variant)
    far = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 50.0]])
    energy, forces = energy_and_forces(potential, far, [6, 8])
    separate = sum(float(energy_and_forces(potential, far[i : i + 1], [z])[0]) for i, z in enumerate([6, 8]))
    assert abs(float(energy) - separate) < 1e-10
    assert float(forces.abs().max()) == 0.0


def test_wrong_shapes_are_named(variant):
    potential = make_potential(variant)
    scripted = script(potential)
    z, batch = torch.tensor(ETHANOL), torch.zeros(9, dtype=torch.long)
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 3\), got \[9, 2\]"):
        potential(torch.zeros(9, 2, dtype=torch.float64), z, batch, 1)
    with pytest.raises(ValueError, match=r"atomic_numbers \[8\] and batch \[9\] must have shape \[9\]"):
        potential(torch.zeros(9, 3, dtype=torch.float64), z[:8], batch, 1)
    with pytest.raises(torch.jit.Error, match="positions must have shape"):
        scripted(torch.zeros(9, 2, dtype=torch.float64), z, batch, 1)


def test_paper_equiformer_irreps_are_rotation_but_not_reflection_equivariant():
    """The MD17 models of the paper use all-even spherical harmonics (SE(3)): rotations leave the energy alone, but
    a mirror image gets another energy. ``parity=True`` (the small presets) restores reflection invariance."""
    torch.manual_seed(0)
    even = dict(_EQUIFORMER, irreps_node="8x0e+4x1e+2x2e", irreps_head="4x0e+2x1e+1x2e", irreps_mlp="16x0e+4x1e+2x2e")
    potential = Potential(build_model("equiformer", dict(even, parity=False), torch.float64), 0.3, torch.zeros(119))
    positions = random_molecule(9, seed=1)
    energy, _ = energy_and_forces(potential, positions, ETHANOL)
    rotated, _ = energy_and_forces(potential, positions @ random_orthogonal(0, reflect=False).T, ETHANOL)
    mirrored, _ = energy_and_forces(potential, positions @ random_orthogonal(0, reflect=True).T, ETHANOL)
    assert abs(float(rotated - energy)) <= ENERGY_ATOL
    assert abs(float(mirrored - energy)) > 1e-6
    with pytest.raises(ValueError, match="does not match parity=True"):
        Equiformer(**dict(even, parity=True))


def test_equiformer_md17_presets_count_the_official_parameters():
    """The official build's counts: 3,496,001 parameters for the non-linear MLP-attention model, 2,972,867 for
    the linear one (with its trainable Gaussian radial basis, 2 x 32 + 2 of them), 3,316,865 for dot-product
    attention."""
    counts = {
        name: sum(p.numel() for p in build_model(*preset(name)).parameters())
        for name in ["equiformer-md17", "equiformer-md17-linear", "equiformer-md17-dot-product"]
    }
    assert counts == {
        "equiformer-md17": 3_496_001,
        "equiformer-md17-linear": 2_972_867,
        "equiformer-md17-dot-product": 3_316_865,
    }


@pytest.mark.parametrize("variant", sorted(v for v in MODEL_VARIANTS if v.startswith("sake")))
def test_sake_gives_finite_energy_and_forces_for_coincident_atoms(variant):
    """Two atoms at one point (the official layer softens distances; ours guards the unit vectors' division)."""
    positions = random_molecule(9, seed=4)
    positions[1] = positions[0]
    energy, forces = energy_and_forces(make_potential(variant), positions, ETHANOL)
    assert np.isfinite(float(energy)) and bool(torch.isfinite(forces).all())
