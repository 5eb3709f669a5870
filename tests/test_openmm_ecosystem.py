"""Fitting the OpenMM ecosystem: the PythonForce backend against the TorchForce, the openmm-ml plugin (createSystem,
createMixedSystem with interpolation) on the released openmmml package, and the ASE calculator."""

import copy
from pathlib import Path

import numpy as np
import openmm
import pytest
import torch
from conftest import ETHANOL, energy_and_forces, make_saved, random_molecule
from openmm import app, unit

from attnforce import units
from attnforce.checkpoint import save_model
from attnforce.openmm.force import add_force
from systems.molecules import _topology_from_numbers
from systems.water import water_box

WATER_BOX = Path(app.__file__).parent / "data" / "tip3p.pdb"


def _energy_forces(system, positions_nm, platform="Reference", context_parameters=None):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions_nm)
    for name, value in (context_parameters or {}).items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True)
    return (
        state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
        state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
    )


def _empty_system(topology):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    return system


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("backend", ["python", "python-compiled"])
def test_python_force_equals_torch_force(backend, platform):
    """Tolerance: 1e-12 relative on the energy, 1e-9 of the largest force component (float64 models)."""
    if backend == "python-compiled" and platform == "CPU":
        pytest.skip("one compiled run is enough")
    saved = make_saved("sake-cutoff", ETHANOL, dtype=torch.float64)
    topology = _topology_from_numbers(ETHANOL)
    positions = random_molecule(9, seed=5) * 0.1  # nm
    results = {}
    for kind in ("torch", backend):
        system = _empty_system(topology)
        add_force(system, topology, saved, backend=kind)
        results[kind] = _energy_forces(system, positions, platform)
    (e_torch, f_torch), (e_python, f_python) = results["torch"], results[backend]
    assert e_python == pytest.approx(e_torch, rel=1e-12)
    np.testing.assert_allclose(f_python, f_torch, rtol=0, atol=1e-9 * np.abs(f_torch).max())


def test_python_force_on_a_subset_of_atoms_sees_only_them():
    saved = make_saved("sake-allpairs", ETHANOL, dtype=torch.float64)
    topology = _topology_from_numbers([8, 1, 1] + ETHANOL)
    system = _empty_system(topology)
    add_force(system, topology, saved, atoms=list(range(3, 12)), backend="python")
    positions = np.vstack([random_molecule(3, seed=3) + 20.0, random_molecule(9, seed=12)])
    energy, forces = _energy_forces(system, positions * 0.1)
    model_energy, model_forces = energy_and_forces(saved.potential, positions[3:], ETHANOL)
    assert energy == pytest.approx(float(model_energy) * units.kj_per_mol_per_ev, rel=1e-12)
    assert np.abs(forces[:3]).max() == 0.0
    np.testing.assert_allclose(forces[3:], model_forces.numpy() * units.kj_per_mol_per_ev * 10, rtol=0, atol=1e-6)


# --- openmm-ml ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def water_model(tmp_path_factory):
    """A SAKE model (random weights) for H and O, saved like a trained one."""
    saved = make_saved("sake-cutoff", [8, 1, 1], dtype=torch.float64)
    path = tmp_path_factory.mktemp("model") / "water_sake.pt"
    save_model(path, saved.potential, "sake", saved.hyperparameters, [8, 1, 1], {"training": {"dtype": "float64"}})
    return path


def _water_cluster(waters: int):
    """The first ``waters`` molecules of OpenMM's TIP3P box, without the box."""
    pdb = app.PDBFile(str(WATER_BOX))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.delete(list(modeller.topology.residues())[waters:])
    modeller.topology.setPeriodicBoxVectors(None)
    return modeller.topology, modeller.positions


def test_openmm_ml_finds_both_potentials_and_their_embedded_defaults():
    from openmmml import MLPotential

    for name, architecture in (("attnforce-sake", "sake"), ("attnforce-equiformer", "equiformer")):
        potential = MLPotential(name)
        assert potential._impl.architecture == architecture
    with pytest.raises(ValueError, match="is a sake model; load it as MLPotential\\('attnforce-sake'\\)"):
        from attnforce.checkpoint import resolve_model_path

        MLPotential("attnforce-equiformer", modelPath=str(resolve_model_path("sake")))


@pytest.mark.parametrize("backend", ["torch", "python"])
def test_create_system_equals_the_model(water_model, backend):
    from openmmml import MLPotential

    topology, positions = _water_cluster(3)
    system = MLPotential("attnforce-sake", modelPath=str(water_model)).createSystem(topology, backend=backend)
    energy, forces = _energy_forces(system, positions)
    from attnforce.checkpoint import load_model

    saved = load_model(water_model, torch.float64)
    angstrom = np.asarray(positions.value_in_unit(unit.angstrom))
    numbers = [a.element.atomic_number for a in topology.atoms()]
    model_energy, model_forces = energy_and_forces(saved.potential, angstrom, numbers)
    assert energy == pytest.approx(float(model_energy) * units.kj_per_mol_per_ev, rel=1e-12)
    expected = model_forces.numpy() * units.kj_per_mol_per_ev * units.angstrom_per_nm
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_create_mixed_system_interpolates_between_mm_and_ml(water_model):
    """One water of three is ML; lambda 0 is the MM system, lambda 1 swaps that water's MM internal energy for the
    model's, keeping the MM interactions with the others (mechanical embedding)."""
    from openmmml import MLPotential

    topology, positions = _water_cluster(3)
    forcefield = app.ForceField("amber14/tip3p.xml")
    mm_system = forcefield.createSystem(topology, nonbondedMethod=app.NoCutoff, rigidWater=False)
    ml_atoms = [0, 1, 2]
    potential = MLPotential("attnforce-sake", modelPath=str(water_model))
    mixed = potential.createMixedSystem(topology, mm_system, ml_atoms, interpolate=True)
    e_mm, _ = _energy_forces(mm_system, positions)
    e0, _ = _energy_forces(mixed, positions, context_parameters={"lambda_interpolate": 0.0})
    e1, f1 = _energy_forces(mixed, positions, context_parameters={"lambda_interpolate": 1.0})
    half, _ = _energy_forces(mixed, positions, context_parameters={"lambda_interpolate": 0.5})
    assert e0 == pytest.approx(e_mm, rel=1e-10)

    one_water, one_positions = _water_cluster(1)
    mm_alone = forcefield.createSystem(one_water, nonbondedMethod=app.NoCutoff, rigidWater=False)
    e_mm_internal, _ = _energy_forces(mm_alone, one_positions)
    ml_only = potential.createSystem(one_water)
    e_ml, _ = _energy_forces(ml_only, one_positions)
    assert e1 == pytest.approx(e_mm - e_mm_internal + e_ml, rel=1e-9, abs=1e-6)
    assert half == pytest.approx(0.5 * (e0 + e1), rel=1e-9, abs=1e-6)
    assert np.all(np.isfinite(f1))
    for backend in ("python", "torch"):
        not_interpolated = potential.createMixedSystem(topology, mm_system, ml_atoms, backend=backend)
        assert _energy_forces(not_interpolated, positions)[0] == pytest.approx(e1, rel=1e-9, abs=1e-6)
    with pytest.raises(ValueError, match="openmm-torch 1.5 crashes copying a TorchForce"):
        potential.createMixedSystem(topology, mm_system, ml_atoms, interpolate=True, backend="torch")


def test_bad_requests_are_refused_before_a_simulation(water_model):
    from openmmml import MLPotential

    potential = MLPotential("attnforce-sake", modelPath=str(water_model))
    with pytest.raises(ValueError, match="less than twice the model's cutoff"):
        potential.createSystem(water_box(7.0 * unit.angstrom).topology)
    topology, _ = _water_cluster(1)
    carbon = copy.deepcopy(topology)
    next(carbon.atoms()).element = app.element.carbon
    with pytest.raises(ValueError, match=r"trained on H, O only; unsupported: atom 0 \(C\)"):
        potential.createSystem(carbon)
    mm_system = app.ForceField("amber14/tip3p.xml").createSystem(topology, nonbondedMethod=app.NoCutoff)
    with pytest.raises(ValueError, match="outside the topology's 3 atoms"):
        add_force(mm_system, topology, str(water_model), atoms=[1, 5])
    with pytest.raises(ValueError, match="backend must be one of"):
        potential.createSystem(topology, backend="jax")
    with pytest.raises(ValueError, match="takes modelPath only"):
        MLPotential("attnforce-sake", modelFile="x.pt")
    with pytest.raises(FileNotFoundError):
        MLPotential("attnforce-sake", modelPath="/nonexistent/model.pt")


# --- ASE ---------------------------------------------------------------------------------------------------------


def test_ase_calculator_equals_the_model_and_runs_nve_md():
    from ase import Atoms
    from ase import units as ase_units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from attnforce.calculator import AttnforceCalculator
    from attnforce.checkpoint import load_model
    from systems.molecules import load_molecule

    molecule = load_molecule("default")
    atoms = Atoms(numbers=molecule.atomic_numbers, positions=molecule.positions)
    atoms.calc = AttnforceCalculator("sake")
    saved = load_model("sake", torch.float64)
    energy, forces = energy_and_forces(saved.potential, molecule.positions, molecule.atomic_numbers)
    assert atoms.get_potential_energy() == pytest.approx(float(energy), rel=1e-14)
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), rtol=0, atol=1e-12)

    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=0.25 * ase_units.fs)
    start = atoms.get_total_energy()
    totals = []
    dynamics.attach(lambda: totals.append(atoms.get_total_energy()), interval=10)
    dynamics.run(400)  # 0.1 ps
    kinetic_scale = 1.5 * len(atoms) * ase_units.kB * 300
    assert np.max(np.abs(np.array(totals) - start)) < 0.02 * kinetic_scale  # seen: about 0.3%

    atoms.pbc = True
    atoms.cell = [20.0, 20.0, 20.0]
    with pytest.raises(ValueError, match="a periodic box needs a model with a cutoff"):
        atoms.get_potential_energy()
    nitrogen = Atoms(numbers=[7, 1, 1, 1], positions=random_molecule(4, seed=1))
    nitrogen.calc = AttnforceCalculator("sake")
    with pytest.raises(ValueError, match=r"unsupported: atom 0 \(N\)"):
        nitrogen.get_potential_energy()
