"""CUDA graphs (openmm-torch's ``useCUDAGraphs``): the fixed all-pairs graph they need gives the model's own
energy and forces on every architecture (checked on the CPU), the option reaches the TorchForce, misuse is refused,
and on a GPU the replayed graph follows the same trajectory as the uncaptured model (skipped without one)."""

import numpy as np
import openmm
import pytest
import torch
from conftest import MODEL_VARIANTS, make_potential, make_saved, random_molecule
from openmm import unit

from attnforce.export import export_torchscript, script
from attnforce.openmm.force import add_force, learned_force
from attnforce.openmm.module import FIXED_GRAPH_MAX_ATOMS, OpenMMModule
from attnforce.openmm.platform import available_platforms
from systems.molecules import _topology_from_numbers
from systems.water import water_box

NUMBERS = [6, 6, 8, 1, 1, 1, 1, 1, 1, 8, 1, 1]


def _system(topology):
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    return system


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("variant", sorted(MODEL_VARIANTS))
def test_fixed_graph_gives_the_searched_graphs_energy_and_forces(variant, dtype):
    potential = make_potential(variant, dtype)
    positions = torch.tensor(random_molecule(len(NUMBERS), seed=4, spread=2.5), dtype=dtype) / 10.0  # nm
    distances = torch.cdist(positions, positions) * 10.0
    if potential.cutoff is not None:
        assert bool((distances > potential.cutoff).any())  # the fixed graph holds edges the search would drop
    modules = [
        script(OpenMMModule(potential, torch.tensor(NUMBERS), torch.arange(len(NUMBERS)), fixed_graph=fixed))
        for fixed in (False, True)
    ]
    results = []
    for module in modules:
        x = positions.clone().requires_grad_(True)
        energy = module(x)
        (gradient,) = torch.autograd.grad(energy, x)
        results.append((float(energy.detach()), -gradient))
    tolerance = 1e-13 if dtype == torch.float64 else 1e-6  # float32: summation order differs
    assert results[1][0] == pytest.approx(results[0][0], rel=tolerance)
    scale = float(results[0][1].abs().max())
    torch.testing.assert_close(results[1][1], results[0][1], rtol=0, atol=1e4 * tolerance * scale)


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_cuda_graphs_option_reaches_the_torch_force_and_other_platforms_ignore_it(platform):
    saved = make_saved("sake-cutoff", sorted(set(NUMBERS)), dtype=torch.float64)
    topology = _topology_from_numbers(NUMBERS)
    positions = random_molecule(len(NUMBERS), seed=5, spread=2.0) * unit.angstrom
    energies = []
    for cuda_graphs in (False, True):
        force = learned_force(topology, saved, cuda_graphs=cuda_graphs)
        assert (dict(force.getProperties()).get("useCUDAGraphs") == "true") == cuda_graphs
        system = _system(topology)
        system.addForce(force)
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
        context.setPositions(positions)
        energies.append(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    assert energies[1] == pytest.approx(energies[0], rel=1e-12)


def test_cuda_graphs_misuse_is_refused(tmp_path):
    saved = make_saved("sake-cutoff", [1, 6, 8], dtype=torch.float64)
    topology = _topology_from_numbers(NUMBERS)
    with pytest.raises(ValueError, match="cuda_graphs is a TorchForce option"):
        add_force(_system(topology), topology, saved, backend="python", cuda_graphs=True)
    exported = export_torchscript(saved, tmp_path / "searched.pt", atomic_numbers=NUMBERS)
    with pytest.raises(ValueError, match="exported without a fixed graph"):
        add_force(_system(topology), topology, exported, cuda_graphs=True, trust_torchscript=True)
    box = water_box(10.0 * unit.angstrom)
    periodic = _system(box.topology)
    periodic.setDefaultPeriodicBoxVectors(*box.topology.getPeriodicBoxVectors())
    with pytest.raises(ValueError, match="not a periodic system"):
        add_force(periodic, box.topology, saved, cuda_graphs=True)
    large = [8, 1, 1] * (FIXED_GRAPH_MAX_ATOMS // 3 + 1)
    with pytest.raises(ValueError, match=f"at most {FIXED_GRAPH_MAX_ATOMS} atoms, not {len(large)} atoms"):
        OpenMMModule(saved.potential, torch.tensor(large), torch.arange(len(large)), fixed_graph=True)


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or "CUDA" not in available_platforms(),
    reason="needs a GPU and OpenMM's CUDA platform",
)


@needs_cuda
def test_cuda_graph_replays_follow_the_uncaptured_trajectory():
    """The embedded Equiformer (5 Å cutoff: the fixed graph holds edges beyond it) on aspirin, CUDA platform: 50
    Verlet steps with and without CUDA graphs (double platform precision), the same energies and forces along the
    way. The tolerances allow for the GPU's order of floating-point sums (atomic adds), which differs between runs
    and grows along a chaotic trajectory."""
    from systems.molecules import load_molecule

    molecule = load_molecule("default")
    runs = []
    for cuda_graphs in (False, True):
        system = _system(molecule.topology)
        add_force(system, molecule.topology, "equiformer", cuda_graphs=cuda_graphs)
        integrator = openmm.VerletIntegrator(0.5 * unit.femtosecond)
        platform = openmm.Platform.getPlatformByName("CUDA")
        context = openmm.Context(system, integrator, platform, {"Precision": "double"})
        context.setPositions(molecule.positions * unit.angstrom)
        context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        energies = []
        for _ in range(5):
            integrator.step(10)
            state = context.getState(getEnergy=True, getForces=True)
            energies.append(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        runs.append((np.array(energies), np.asarray(forces)))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=0, atol=1e-3 * np.abs(runs[0][1]).max())
