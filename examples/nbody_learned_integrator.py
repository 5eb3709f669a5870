"""A learned integrator stepping an OpenMM Context: the embedded N-body SAKE model advances one charged 5-body
system 1 time unit (1000 numerical steps) per step, OpenMM's reporters write the trajectory and a log, and the
numerical simulator gives the reference to compare with.

Run from the repository root: python examples/nbody_learned_integrator.py [OUTPUT_DIR]
"""

import sys
from pathlib import Path

import numpy as np
import openmm.app
import openmm.unit as unit

from integrators.openmm_learned import LearnedIntegratorSimulation
from integrators.saved import load_forecaster
from systems.forecasting import NBODY_DT, load_split
from systems.nbody import advance

HORIZONS = 5

output = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
output.mkdir(parents=True, exist_ok=True)
forecaster = load_forecaster("default", "nbody")
system = load_split("nbody", "test", limit=1)
positions, velocities, types = system.positions[0], system.velocities[0], system.types[0]

simulation = LearnedIntegratorSimulation(forecaster, positions, velocities, types)
simulation.reporters.append(openmm.app.DCDReporter(str(output / "nbody_learned.dcd"), 1))
simulation.reporters.append(
    openmm.app.StateDataReporter(sys.stdout, 1, step=True, time=True, kineticEnergy=True, separator="\t")
)
with open(output / "nbody_learned.pdb", "w") as pdb:
    openmm.app.PDBFile.writeFile(simulation.topology, positions * unit.angstrom, pdb, keepIds=True)

reference_x, reference_v = positions[None], velocities[None]
for horizon in range(1, HORIZONS + 1):
    simulation.step(1)
    reference_x, reference_v, _ = advance(reference_x, reference_v, system.charges, 1000, dt=NBODY_DT)
    learned = simulation.context.getState(positions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    error = np.sqrt(np.mean((learned - reference_x[0]) ** 2))
    print(f"after {horizon} horizon(s): RMS position error vs the numerical simulator {error:.4f}")
print(f"trajectory: {output / 'nbody_learned.dcd'} (topology {output / 'nbody_learned.pdb'})")
