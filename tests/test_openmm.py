"""The OpenMM adapter: units, TorchForce = model on Reference and CPU, topology checks, plugin loading."""

import subprocess
import sys
from typing import Optional

import numpy as np
import openmm
import pytest
import torch
from conftest import ETHANOL, REPO, energy_and_forces, make_saved, random_molecule
from openmm import unit
from torch import nn

from attnforce import units
from attnforce.checkpoint import SCHEMA_VERSION, SavedModel, save_model
from attnforce.export import export_torchscript, read_metadata
from attnforce.models import Potential
from attnforce.openmm.force import add_force
from systems.molecules import _topology_from_numbers

PLATFORMS = ["Reference", "CPU"]


class SquaredNorm(nn.Module):
    """Closed form: per-atom energy |r - c|^2 (eV, r in Å, c the atoms' centroid), so E = sum |r - c|^2 and
    F = -2 (r - c). Translation-invariant, as every potential is: the adapter centres the positions it passes."""

    cutoff = None

    def forward(
        self, positions, atomic_numbers, edge_index, shift_vectors: Optional[torch.Tensor] = None, degree: int = -1
    ):
        return (positions - positions.mean(0)).pow(2).sum(-1)


def openmm_energy_forces(system, positions_angstrom, platform):
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(positions_angstrom * unit.angstrom)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return energy, np.asarray(forces)


def system_for(topology):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    return system


def test_unit_factors_agree_with_openmm_and_codata():
    assert units.angstrom_per_nm == pytest.approx(10.0, rel=1e-15)
    assert units.kj_per_mol_per_ev == pytest.approx(96.48533212, rel=1e-9)  # CODATA 2018, e * N_A / 1000
    assert units.kj_per_mol_per_ev * units.ev_per_kj_per_mol == pytest.approx(1.0, rel=1e-15)
    assert units.ev_per_kcal_per_mol == pytest.approx(4.184 / 96.48533212, rel=1e-9)
    assert units.mev_per_ev == pytest.approx(1000.0, rel=1e-15)
    assert units.ev_per_hartree == pytest.approx(27.211386246, rel=1e-9)  # CODATA 2018


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("outputs_forces", [False, True], ids=["autograd-by-openmm", "module-forces"])
def test_closed_form_potential_through_the_adapter(platform, outputs_forces):
    numbers = [6, 1, 8]
    potential = Potential(SquaredNorm(), 1.0, torch.zeros(119)).double()
    metadata = {"units": {"length": "angstrom", "energy": "eV"}, "atomic_numbers": numbers, "elements": [1, 6, 8]}
    saved = SavedModel(potential, "squared_norm", {}, metadata)
    topology = _topology_from_numbers(numbers)
    system = system_for(topology)
    add_force(system, topology, saved, outputs_forces=outputs_forces)
    positions = np.array([[0.1, -0.2, 0.3], [1.0, 0.5, -0.4], [-0.7, 0.8, 0.9]])
    energy, forces = openmm_energy_forces(system, positions, platform)
    # E = sum |r - c|^2 eV with r in Å; F = -2 (r - c) eV/Å. In OpenMM's units: x kJ/mol/eV, x 10 Å/nm for forces.
    centred = positions - positions.mean(0)
    assert energy == pytest.approx(np.sum(centred**2) * units.kj_per_mol_per_ev, rel=1e-10)
    np.testing.assert_allclose(forces, -2 * centred * units.kj_per_mol_per_ev * units.angstrom_per_nm, rtol=1e-10)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("source", ["saved", "exported", "exported-forces"])
def test_openmm_energy_and_forces_equal_the_model(variant, platform, source, tmp_path):
    saved = make_saved(variant, ETHANOL, dtype=torch.float64)
    topology = _topology_from_numbers(ETHANOL)
    system = system_for(topology)
    model = saved
    if source.startswith("exported"):
        model = export_torchscript(saved, tmp_path / "model.pt", outputs_forces=source == "exported-forces")
    add_force(system, topology, model, trust_torchscript=True)
    positions = random_molecule(9, seed=11)
    energy, forces = openmm_energy_forces(system, positions, platform)
    model_energy, model_forces = energy_and_forces(saved.potential, positions, ETHANOL)
    assert energy == pytest.approx(float(model_energy) * units.kj_per_mol_per_ev, rel=1e-12)
    expected = model_forces.numpy() * units.kj_per_mol_per_ev * units.angstrom_per_nm
    np.testing.assert_allclose(forces, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_learned_force_on_a_subset_of_atoms():
    """ML atoms inside a larger System: the model sees only them, the other particles feel nothing."""
    saved = make_saved("sake-allpairs", ETHANOL, dtype=torch.float64)
    topology = _topology_from_numbers([8, 1, 1] + ETHANOL)  # a water, then ethanol
    system = system_for(topology)
    add_force(system, topology, saved, atoms=list(range(3, 12)))
    positions = np.vstack([random_molecule(3, seed=3) + 20.0, random_molecule(9, seed=12)])
    energy, forces = openmm_energy_forces(system, positions, "Reference")
    model_energy, model_forces = energy_and_forces(saved.potential, positions[3:], ETHANOL)
    assert energy == pytest.approx(float(model_energy) * units.kj_per_mol_per_ev, rel=1e-12)
    assert np.abs(forces[:3]).max() == 0.0
    np.testing.assert_allclose(forces[3:], model_forces.numpy() * units.kj_per_mol_per_ev * 10, rtol=0, atol=1e-6)


def test_exported_file_carries_its_metadata(tmp_path):
    saved = make_saved("sake-cutoff", ETHANOL)
    path = export_torchscript(saved, tmp_path / "m.pt", outputs_forces=True)
    metadata = read_metadata(path)
    assert metadata["units"] == {"length": "nm", "energy": "kJ/mol"}
    assert metadata["model_units"] == {"length": "angstrom", "energy": "eV"}
    assert metadata["cutoff"] == 4.0
    assert metadata["atomic_numbers"] == ETHANOL
    assert metadata["element_symbols"] == list("CCOHHHHHH") and metadata["elements"] == [1, 6, 8]
    assert metadata["outputs_forces"] is True
    assert metadata["schema_version"] == SCHEMA_VERSION


def test_topology_with_an_element_the_model_does_not_know_is_refused():
    saved = make_saved("sake-allpairs", ETHANOL)
    topology = _topology_from_numbers([7, 1, 1, 1])  # ammonia: no N in the model
    system = system_for(topology)
    with pytest.raises(ValueError, match=r"trained on H, C, O only; unsupported: atom 0 \(N\)"):
        add_force(system, topology, saved)
    assert system.getNumForces() == 0


def test_exported_file_for_another_molecule_is_refused(tmp_path):
    saved = make_saved("sake-allpairs", ETHANOL)
    path = export_torchscript(saved, tmp_path / "ethanol.pt")
    topology = _topology_from_numbers([8, 1, 1])  # water: known elements, different molecule
    system = system_for(topology)
    with pytest.raises(ValueError, match="exported for atoms C2H6O"):
        add_force(system, topology, path, trust_torchscript=True)
    assert system.getNumForces() == 0


def test_system_and_topology_sizes_must_agree():
    saved = make_saved("sake-allpairs", ETHANOL)
    topology = _topology_from_numbers(ETHANOL)
    system = system_for(_topology_from_numbers(ETHANOL[:5]))
    with pytest.raises(ValueError, match="5 particles, the topology 9 atoms"):
        add_force(system, topology, saved)


def test_works_when_openmm_was_imported_before_torch(tmp_path):
    """`import mdtraj` first loads openmm before torch; the adapter must still get openmm-torch's kernels."""
    saved = make_saved("sake-allpairs", ETHANOL)
    save_model(tmp_path / "m.pt", saved.potential, saved.architecture, saved.hyperparameters, ETHANOL)
    xyz = tmp_path / "ethanol.xyz"
    xyz.write_text(
        "9\nethanol\n" + "".join(f"{s} {x} {y} {z}\n" for s, (x, y, z) in zip("CCOHHHHHH", random_molecule(9, 5)))
    )
    script = (
        "import sys, mdtraj, openmm\n"
        "from integrators.md import run_md\n"
        "r = run_md(sys.argv[1], sys.argv[2], 4, sys.argv[3], report_interval=2, progress=False, plot_png=False)\n"
        "print('frames', r.frames)\n"
    )
    command = [sys.executable, "-c", script, str(tmp_path / "m.pt"), str(xyz), str(tmp_path / "t.dcd")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "frames 2" in done.stdout


def test_an_exported_file_is_a_program_and_needs_trust(tmp_path):
    """A TorchScript file runs whatever code it holds (a crafted one can write the user's files): attnforce runs
    one only when told to trust it, and never mistakes a Python object for a model path."""
    saved = make_saved("sake-allpairs", ETHANOL)
    path = export_torchscript(saved, tmp_path / "ethanol.pt")
    topology = _topology_from_numbers(ETHANOL)
    system = system_for(topology)
    with pytest.raises(ValueError, match="an exported TorchScript file, a program that runs with your permissions"):
        add_force(system, topology, path)
    with pytest.raises(
        TypeError, match="model must be a path, an embedded model's name or a SavedModel, got Potential"
    ):
        add_force(system, topology, saved.potential)
    assert system.getNumForces() == 0
    add_force(system, topology, path, trust_torchscript=True)
    assert system.getNumForces() == 1
