"""Periodic systems: the cell-list neighbour list against brute force, the physics of every cutoff model in
orthorhombic and triclinic boxes (float64), and a water box in OpenMM (both backends, Reference and CPU), openmm-ml,
ASE and the MD command, with the refusals that come before any simulation."""

import itertools

import numpy as np
import openmm
import pytest
import torch
from conftest import CUTOFF_VARIANTS, make_potential, make_saved
from openmm import unit

from attnforce import units
from attnforce.export import script
from attnforce.nn import cell_list_edges, radius_edges
from attnforce.openmm.force import add_force
from attnforce.openmm.module import OpenMMModule
from systems.water import water_box

ORTHORHOMBIC = [[9.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 11.0]]
#: OpenMM's reduced form (a along x, b in the xy plane), strongly skewed.
TRICLINIC = [[9.5, 0.0, 0.0], [3.0, 9.0, 0.0], [-2.5, 3.0, 9.0]]
#: Narrower than the cutoff used below: several images of one pair lie within it.
SMALL = [[4.0, 0.0, 0.0], [1.0, 4.0, 0.0], [0.0, 0.0, 4.5]]


def _brute_force_edges(positions: torch.Tensor, cutoff: float, cell: torch.Tensor | None) -> set:
    """Every (source, target, image) within ``cutoff``, over all images seven cells either side (enough for the
    unwrapped positions below)."""
    found = set()
    images = itertools.product(range(-7, 8), repeat=3) if cell is not None else [(0, 0, 0)]
    for image in images:
        offset = torch.tensor(image, dtype=positions.dtype) @ cell if cell is not None else 0.0
        distances = torch.cdist(positions + offset, positions)  # [j, i] = |x_j + offset - x_i|
        for source, target in torch.nonzero(distances < cutoff).tolist():
            if source != target or image != (0, 0, 0):
                found.add((source, target, *image))
    return found


@pytest.mark.parametrize("box", [None, ORTHORHOMBIC, TRICLINIC, SMALL], ids=["isolated", "ortho", "triclinic", "small"])
def test_cell_list_finds_exactly_the_pairs_within_the_cutoff(box):
    generator = torch.Generator().manual_seed(0)
    positions = torch.rand(120, 3, generator=generator, dtype=torch.float64) * 14.0 - 3.0  # many outside the box
    cell = torch.tensor(box, dtype=torch.float64) if box is not None else None
    cutoff = 3.9
    edge_index, shifts = cell_list_edges(positions, cutoff, cell)
    found = {(s, t, *map(int, shift)) for (s, t), shift in zip(edge_index.t().tolist(), shifts.round().tolist())}
    assert len(found) == edge_index.shape[1]  # no pair twice
    assert found == _brute_force_edges(positions, cutoff, cell)
    assert bool((edge_index[1].diff() >= 0).all())  # sorted by target
    scripted = torch.jit.script(cell_list_edges)(positions, cutoff, cell)
    assert torch.equal(scripted[0], edge_index) and torch.equal(scripted[1], shifts)


def test_cell_list_refuses_what_it_cannot_search():
    positions = torch.rand(10, 3, dtype=torch.float64)
    assert cell_list_edges(positions[:0], 3.0, torch.eye(3, dtype=torch.float64) * 9.0)[0].shape == (2, 0)
    with pytest.raises(ValueError, match=r"cell must have shape \(3, 3\)"):
        cell_list_edges(positions, 3.0, torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="narrower than cutoff / bins_per_cutoff"):
        cell_list_edges(positions, 3.0, torch.eye(3, dtype=torch.float64) * 1.4)
    with pytest.raises(ValueError, match="bins_per_cutoff and max_bins_per_axis at least 1"):
        cell_list_edges(positions, 3.0, None, bins_per_cutoff=0)
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 3\)"):
        cell_list_edges(positions[:, :2], 3.0)


def test_isolated_cell_list_equals_all_distances():
    positions = torch.rand(400, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 20.0
    by_cells = {tuple(e) for e in cell_list_edges(positions, 4.0)[0].t().tolist()}
    by_distances = {tuple(e) for e in radius_edges(positions, torch.zeros(400, dtype=torch.long), 4.0).t().tolist()}
    assert by_cells == by_distances


# --- physics in a box ----------------------------------------------------------------------------------------------


def _liquid(cell: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random O/H atoms filling ``cell``, none closer than 0.9 Å to another or to an image."""
    rng = np.random.default_rng(seed)
    inverse = np.linalg.inv(cell.numpy())
    kept: list[np.ndarray] = []
    while len(kept) < count:
        candidate = rng.random(3) @ cell.numpy()
        fine = True
        for other in kept:
            delta = (candidate - other) @ inverse
            delta -= np.round(delta)
            images = (delta + np.array(list(itertools.product((-1, 0, 1), repeat=3)))) @ cell.numpy()
            fine = fine and np.linalg.norm(images, axis=1).min() >= 0.9
        if fine:
            kept.append(candidate)
    numbers = torch.tensor([8, 1, 1] * (count // 3) + [8] * (count % 3))
    return torch.tensor(np.array(kept)), numbers


def _energy_forces(potential, positions, numbers, cell):
    batch = torch.zeros(len(numbers), dtype=torch.long)
    energy, forces = potential(positions, numbers, batch, 1, cells=cell.unsqueeze(0))
    return energy[0].detach(), forces.detach()


@pytest.fixture(params=CUTOFF_VARIANTS)
def cutoff_variant(request) -> str:
    return request.param


@pytest.mark.parametrize("box", [ORTHORHOMBIC, TRICLINIC], ids=["ortho", "triclinic"])
def test_energy_unchanged_by_wrapping_and_lattice_shifts(cutoff_variant, box):
    potential = make_potential(cutoff_variant)
    cell = torch.tensor(box, dtype=torch.float64)
    positions, numbers = _liquid(cell, 30, seed=2)
    energy, forces = _energy_forces(potential, positions, numbers, cell)
    assert bool((cell_list_edges(positions, potential.cutoff, cell)[1] != 0).any())  # edges to images exist

    fractional = positions @ torch.linalg.inv(cell)
    wrapped = (fractional - torch.floor(fractional)) @ cell
    shifted = (
        positions + torch.randint(-3, 4, (len(numbers), 3), generator=torch.Generator().manual_seed(3)).double() @ cell
    )
    for moved in (wrapped, shifted):
        moved_energy, moved_forces = _energy_forces(potential, moved, numbers, cell)
        assert float(moved_energy) == pytest.approx(float(energy), rel=1e-13)
        torch.testing.assert_close(moved_forces, forces, rtol=0, atol=1e-10)
    # A different cell is a different system: the box is not ignored.
    other, _ = _energy_forces(potential, positions, numbers, cell * 1.05)
    assert abs(float(other - energy)) > 1e-6


@pytest.mark.parametrize("reflect", [False, True])
def test_periodic_energy_invariant_forces_equivariant_under_rotation_and_permutation(cutoff_variant, reflect):
    potential = make_potential(cutoff_variant)
    cell = torch.tensor(TRICLINIC, dtype=torch.float64)
    positions, numbers = _liquid(cell, 30, seed=4)
    energy, forces = _energy_forces(potential, positions, numbers, cell)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64))[0]
    if reflect != bool(torch.linalg.det(rotation) < 0):
        rotation = -rotation
    translation = torch.tensor([0.3, -7.0, 2.2], dtype=torch.float64)
    rotated_energy, rotated_forces = _energy_forces(
        potential, positions @ rotation.T + translation, numbers, cell @ rotation.T
    )
    assert float(rotated_energy) == pytest.approx(float(energy), rel=1e-13)
    torch.testing.assert_close(rotated_forces, forces @ rotation.T, rtol=0, atol=1e-10)
    order = torch.randperm(len(numbers), generator=torch.Generator().manual_seed(6))
    permuted_energy, permuted_forces = _energy_forces(potential, positions[order], numbers[order], cell)
    assert float(permuted_energy) == pytest.approx(float(energy), rel=1e-13)
    torch.testing.assert_close(permuted_forces, forces[order], rtol=0, atol=1e-10)


def test_periodic_forces_are_minus_energy_gradient_by_central_differences(cutoff_variant):
    potential = make_potential(cutoff_variant)
    cell = torch.tensor(TRICLINIC, dtype=torch.float64)
    positions, numbers = _liquid(cell, 24, seed=7)
    _, forces = _energy_forces(potential, positions, numbers, cell)
    # Central differences err by O(step^2) plus float64 rounding of the ~-15000 eV energies / step (~1e-7 eV/Å).
    step = 1e-4
    for atom, axis in [(0, 0), (5, 1), (13, 2), (22, 0)]:
        plus, minus = positions.clone(), positions.clone()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        difference = (
            _energy_forces(potential, plus, numbers, cell)[0] - _energy_forces(potential, minus, numbers, cell)[0]
        ) / (2 * step)
        assert float(-difference) == pytest.approx(float(forces[atom, axis]), rel=0, abs=1e-6)


def test_periodic_batched_equals_unbatched_and_torchscript_equals_eager(cutoff_variant):
    potential = make_potential(cutoff_variant)
    cells = torch.tensor([ORTHORHOMBIC, TRICLINIC], dtype=torch.float64)
    first, first_numbers = _liquid(cells[0], 21, seed=8)
    second, second_numbers = _liquid(cells[1], 27, seed=9)
    batch = torch.cat([torch.zeros(21, dtype=torch.long), torch.ones(27, dtype=torch.long)])
    positions = torch.cat([first, second])
    numbers = torch.cat([first_numbers, second_numbers])
    energies, forces = potential(positions, numbers, batch, 2, cells=cells)
    energies = energies.detach()
    for index, (pos, z) in enumerate([(first, first_numbers), (second, second_numbers)]):
        alone_energy, alone_forces = _energy_forces(potential, pos, z, cells[index])
        assert float(energies[index]) == pytest.approx(float(alone_energy), rel=1e-13)
        torch.testing.assert_close(forces[batch == index], alone_forces, rtol=0, atol=1e-10)
    scripted_energies, scripted_forces = script(potential)(positions, numbers, batch, 2, False, cells)
    torch.testing.assert_close(scripted_energies, energies.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(scripted_forces, forces, rtol=0, atol=1e-10)


def test_large_isolated_structures_take_the_cell_list_with_the_same_result():
    potential = make_potential("sake-cutoff")
    positions = torch.rand(300, 3, generator=torch.Generator().manual_seed(10), dtype=torch.float64) * 15.0
    numbers = torch.tensor([8, 1, 1] * 100)
    batch = torch.zeros(300, dtype=torch.long)
    by_distances = potential(positions, numbers, batch, 1)
    potential.cell_list_min_atoms = 100
    by_cells = potential(positions, numbers, batch, 1)
    torch.testing.assert_close(by_cells[0], by_distances[0], rtol=1e-13, atol=0)
    torch.testing.assert_close(by_cells[1], by_distances[1], rtol=0, atol=1e-10)


def test_periodic_nve_conserves_energy():
    """Velocity Verlet (float64) in a triclinic box: atoms cross faces and neighbours cross the cutoff, and the
    total energy stays put."""
    potential = make_potential("sake-cutoff")
    cell = torch.tensor(TRICLINIC, dtype=torch.float64)
    positions, numbers = _liquid(cell, 30, seed=11)
    masses = torch.where(numbers == 8, 16.0, 1.0).double().unsqueeze(1)  # amu
    rng = torch.Generator().manual_seed(12)
    # Velocities in Å/fs for about 300 K, from openmm.unit factors.
    kt = (unit.BOLTZMANN_CONSTANT_kB * 300 * unit.kelvin * unit.AVOGADRO_CONSTANT_NA).value_in_unit(
        unit.kilojoule_per_mole
    )
    # openmm.unit's dalton is g/mol, so amu Å^2/fs^2 is already a molar energy.
    kj_per_mol_per_amu_a2_fs2 = (1.0 * unit.dalton * (unit.angstrom / unit.femtosecond) ** 2).value_in_unit(
        unit.kilojoule_per_mole
    )
    velocities = torch.randn(len(numbers), 3, generator=rng, dtype=torch.float64) * torch.sqrt(
        kt / (masses * kj_per_mol_per_amu_a2_fs2)
    )
    ev_to_amu_a2_fs2 = units.kj_per_mol_per_ev / kj_per_mol_per_amu_a2_fs2
    timestep = 0.1  # fs
    energy, forces = _energy_forces(potential, positions, numbers, cell)

    def total(e, v):
        return float(e) + float(0.5 * (masses * v * v).sum()) / ev_to_amu_a2_fs2

    start = total(energy, velocities)
    totals = []
    for _ in range(300):
        velocities = velocities + 0.5 * timestep * forces * ev_to_amu_a2_fs2 / masses
        positions = positions + timestep * velocities
        energy, forces = _energy_forces(potential, positions, numbers, cell)
        velocities = velocities + 0.5 * timestep * forces * ev_to_amu_a2_fs2 / masses
        totals.append(total(energy, velocities))
    kinetic_scale = 1.5 * len(numbers) * kt / units.kj_per_mol_per_ev
    fractional = positions @ torch.linalg.inv(cell)
    assert bool(((fractional < 0) | (fractional >= 1)).any())  # some atom left the box: wrapping was exercised
    assert max(abs(t - start) for t in totals) < 1e-6 * kinetic_scale  # seen: 1e-8


# --- OpenMM, openmm-ml, ASE, the MD command ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def water():
    """58 waters in a 12 Å box cut from OpenMM's TIP3P box, and a random-weight SAKE (cutoff 4 Å) for H and O."""
    return water_box(12.0 * unit.angstrom), make_saved("sake-cutoff", [8, 1, 1], dtype=torch.float64)


def _periodic_system(molecule):
    system = openmm.System()
    for atom in molecule.topology.atoms():
        system.addParticle(atom.element.mass)
    system.setDefaultPeriodicBoxVectors(*molecule.topology.getPeriodicBoxVectors())
    return system


def _openmm_energy_forces(system, positions_angstrom, platform):
    integrator = openmm.VerletIntegrator(0.5 * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions_angstrom * unit.angstrom)
    state = context.getState(getEnergy=True, getForces=True)
    return (
        state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
        state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
    )


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("backend", ["torch", "python"])
def test_water_box_in_openmm_equals_the_model(water, backend, platform):
    molecule, saved = water
    box = torch.tensor(
        [[v.value_in_unit(unit.angstrom) for v in vector] for vector in molecule.topology.getPeriodicBoxVectors()]
    )
    model_energy, model_forces = _energy_forces(
        saved.potential, torch.tensor(molecule.positions), torch.tensor(molecule.atomic_numbers), box.double()
    )
    system = _periodic_system(molecule)
    add_force(system, molecule.topology, saved, backend=backend)
    assert system.usesPeriodicBoundaryConditions()
    expected_forces = model_forces.numpy() * units.kj_per_mol_per_ev * units.angstrom_per_nm
    # Wrapped or not, OpenMM's positions give the model's energy.
    edge = box[0, 0].item()
    for positions in (molecule.positions, molecule.positions - np.floor(molecule.positions / edge) * edge):
        energy, forces = _openmm_energy_forces(system, positions, platform)
        assert energy == pytest.approx(float(model_energy) * units.kj_per_mol_per_ev, rel=1e-12)
        np.testing.assert_allclose(forces, expected_forces, rtol=0, atol=1e-9 * np.abs(expected_forces).max())


def test_water_box_runs_md_to_a_periodic_dcd(water, tmp_path):
    import mdtraj

    from integrators.md import run_md

    molecule, saved = water
    result = run_md(
        saved, molecule, 40, tmp_path / "water.dcd", report_interval=10, minimize=False, seed=1, progress=False
    )
    trajectory = mdtraj.load(str(result.dcd), top=str(result.topology_pdb))
    assert trajectory.n_frames == 4 and trajectory.n_atoms == len(molecule.atomic_numbers)
    np.testing.assert_allclose(trajectory.unitcell_lengths, 1.2, rtol=1e-5)  # nm
    energies = np.genfromtxt(result.energies_csv, delimiter=",", names=True)
    assert np.all(np.isfinite(energies["total_kj_mol"]))


def test_openmm_ml_and_ase_take_the_periodic_box(water, tmp_path):
    from ase import Atoms
    from openmmml import MLPotential

    from attnforce.calculator import AttnforceCalculator
    from attnforce.checkpoint import save_model

    molecule, saved = water
    cell = np.eye(3) * 12.0
    expected_energy, expected_forces = _energy_forces(
        saved.potential, torch.tensor(molecule.positions), torch.tensor(molecule.atomic_numbers), torch.tensor(cell)
    )
    path = tmp_path / "water_sake.pt"
    save_model(path, saved.potential, "sake", saved.hyperparameters, [8, 1, 1], {"training": {"dtype": "float64"}})
    system = MLPotential("attnforce-sake", modelPath=str(path)).createSystem(molecule.topology)
    assert system.usesPeriodicBoundaryConditions()
    energy, _ = _openmm_energy_forces(system, molecule.positions, "Reference")
    assert energy == pytest.approx(float(expected_energy) * units.kj_per_mol_per_ev, rel=1e-12)

    atoms = Atoms(numbers=molecule.atomic_numbers, positions=molecule.positions, cell=cell, pbc=True)
    atoms.calc = AttnforceCalculator(str(path))
    assert atoms.get_potential_energy() == pytest.approx(float(expected_energy), rel=1e-13)
    np.testing.assert_allclose(atoms.get_forces(), expected_forces.numpy(), rtol=0, atol=1e-10)
    atoms.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic along some cell vectors only"):
        atoms.get_potential_energy()


def test_periodic_misuse_is_refused_before_a_simulation(water, tmp_path):
    from attnforce.export import export_torchscript

    molecule, saved = water
    system = _periodic_system(molecule)
    # A model without a cutoff.
    with pytest.raises(ValueError, match="periodic and this model has no cutoff"):
        add_force(system, molecule.topology, make_saved("sake-allpairs", [8, 1, 1]))
    # A box narrower than twice the cutoff (4 Å).
    small = water_box(7.5 * unit.angstrom)
    with pytest.raises(ValueError, match=r"7.5 Å across at its narrowest, less than twice the model's cutoff"):
        add_force(_periodic_system(small), small.topology, saved)
    # ... also when the box shrinks later (a barostat), inside the model.
    module = OpenMMModule(
        saved.potential, torch.tensor(small.atomic_numbers), torch.arange(len(small.atomic_numbers)), True
    )
    positions_nm = torch.tensor(small.positions) / units.angstrom_per_nm
    with pytest.raises(ValueError, match="less than twice the model's cutoff"):
        module(positions_nm, torch.eye(3, dtype=torch.float64) * 0.75)
    # A periodic module called without a box.
    with pytest.raises(ValueError, match="got no box vectors"):
        module(positions_nm)
    # An exported file for an isolated molecule, in a periodic System.
    exported = export_torchscript(saved, tmp_path / "isolated.pt", atomic_numbers=molecule.atomic_numbers)
    with pytest.raises(ValueError, match="exported for an isolated system, and this one is periodic"):
        add_force(system, molecule.topology, exported, trust_torchscript=True)
    assert system.getNumForces() == 0


def test_a_barostat_changes_the_box_and_the_model_follows(water):
    molecule, saved = water
    system = _periodic_system(molecule)
    add_force(system, molecule.topology, saved)
    system.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 300 * unit.kelvin, 2))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(molecule.positions * unit.angstrom)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(60)
    state = context.getState(getEnergy=True, getPositions=True)
    box = np.array(state.getPeriodicBoxVectors().value_in_unit(unit.angstrom))
    assert abs(box[0, 0] - 12.0) > 1e-6  # the barostat moved the box
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    model_energy, _ = _energy_forces(
        saved.potential, torch.tensor(positions), torch.tensor(molecule.atomic_numbers), torch.tensor(box)
    )
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert energy == pytest.approx(float(model_energy) * units.kj_per_mol_per_ev, rel=1e-12)


def test_an_exported_periodic_module_matches_the_saved_model(water, tmp_path):
    from attnforce.export import export_torchscript, read_metadata

    molecule, saved = water
    path = export_torchscript(saved, tmp_path / "box.pt", atomic_numbers=molecule.atomic_numbers, periodic=True)
    assert read_metadata(path)["periodic"] is True
    energies = []
    for model in (saved, path):
        system = _periodic_system(molecule)
        add_force(system, molecule.topology, model, trust_torchscript=True)
        energies.append(_openmm_energy_forces(system, molecule.positions, "CPU")[0])
    assert energies[1] == pytest.approx(energies[0], rel=1e-12)


def test_an_all_pairs_model_of_a_molecule_in_a_periodic_mm_system_sees_it_isolated(water):
    """Mechanical embedding: SAKE without a cutoff models one water of a periodic box (createMixedSystem)."""
    from openmmml import MLPotential

    from attnforce.openmm.force import learned_force

    molecule, _ = water
    saved = make_saved("sake-allpairs", [8, 1, 1], dtype=torch.float64)
    force = learned_force(molecule.topology, saved, atoms=[0, 1, 2], backend="python")
    assert not force.usesPeriodicBoundaryConditions()
    mm_system = openmm.app.ForceField("amber14/tip3p.xml").createSystem(
        molecule.topology, nonbondedMethod=openmm.app.PME, nonbondedCutoff=0.5 * unit.nanometer, rigidWater=False
    )
    mixed = MLPotential("attnforce-sake").createMixedSystem(molecule.topology, mm_system, [0, 1, 2])
    energy, _ = _openmm_energy_forces(mixed, molecule.positions, "Reference")
    assert np.isfinite(energy)
