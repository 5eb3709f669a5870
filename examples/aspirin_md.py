"""Add the embedded aspirin SAKE model to an OpenMM System yourself, run Langevin MD, write a DCD with mdtraj.

python examples/aspirin_md.py
"""

import mdtraj.reporters
import openmm
from openmm import app, unit

import attnforce  # noqa: F401  (imports torch before openmm)
from attnforce.openmm.force import add_force
from attnforce.openmm.platform import select_platform
from systems.molecules import load_molecule

molecule = load_molecule("aspirin")  # the molecule that ships with the package; any .xyz or .pdb works
system = openmm.System()
for atom in molecule.topology.atoms():
    system.addParticle(atom.element.mass)
add_force(system, molecule.topology, "default")  # or "equiformer"; checks the elements against the model

integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
simulation = app.Simulation(molecule.topology, system, integrator, select_platform("auto"))
simulation.context.setPositions(molecule.positions * unit.angstrom)
simulation.minimizeEnergy()
simulation.context.setVelocitiesToTemperature(300 * unit.kelvin)
simulation.reporters.append(mdtraj.reporters.DCDReporter("aspirin_example.dcd", 100))
simulation.reporters.append(
    app.StateDataReporter("aspirin_example.csv", 100, step=True, potentialEnergy=True, temperature=True)
)
simulation.step(2000)
print("wrote aspirin_example.dcd and aspirin_example.csv")
