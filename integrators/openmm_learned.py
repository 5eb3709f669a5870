"""A learned integrator driving an OpenMM ``Context``, so that OpenMM's and mdtraj's reporters work unchanged.

:class:`LearnedIntegratorSimulation` is an ``openmm.app.Simulation`` over a force-free ``System`` of the task's
particles. Its ``integrator`` is a :class:`LearnedIntegrator` (the Context itself holds an empty
``CustomIntegrator``, which moves nothing if stepped directly): each step reads the Context's positions and
velocities, advances them one horizon with the network, writes them back and advances the Context's time and
step count. ``Simulation.step``, ``runForClockTime`` and every reporter (``DCDReporter``, ``StateDataReporter``,
mdtraj's reporters) then behave as with a numerical integrator whose step is the horizon.

Units: one task length unit is represented by ``length_unit`` (default 1 Å, as in the forecast DCDs) and one task
time unit by ``time_unit`` (default 1 ps); velocities accordingly. Particle masses are 1 dalton (the N-body
protocol's unit masses), so the kinetic energies OpenMM reports are in those units too.
"""

import numpy as np
import openmm
import openmm.app
import openmm.unit as unit

from integrators.forecast import step
from integrators.forecast_outputs import trajectory_topology
from integrators.saved import SavedForecaster


class LearnedIntegrator:
    """What :class:`LearnedIntegratorSimulation` calls to step: one horizon of the network per step.

    Args:
        forecaster: the learned integrator (see :func:`integrators.saved.load_forecaster`).
        context: the OpenMM Context it advances.
        types: (N,) particle types of the Context's particles.
        length_unit, time_unit: the OpenMM quantities one task length and time unit stand for.
    """

    def __init__(self, forecaster: SavedForecaster, context: openmm.Context, types: np.ndarray, length_unit, time_unit):
        self.forecaster = forecaster
        self.context = context
        self.types = np.asarray(types, dtype=np.int64)[None]
        self.length_unit = length_unit
        self.velocity_unit = length_unit / time_unit
        self.horizon = forecaster.task.horizon * time_unit

    def getStepSize(self):
        """The horizon, as an OpenMM time quantity."""
        return self.horizon

    def step(self, steps: int) -> None:
        """Advance the Context by ``steps`` horizons."""
        for _ in range(int(steps)):
            state = self.context.getState(positions=True, velocities=True)
            positions = state.getPositions(asNumpy=True).value_in_unit(self.length_unit)[None]
            velocities = state.getVelocities(asNumpy=True).value_in_unit(self.velocity_unit)[None]
            positions, velocities = step(self.forecaster.model, positions, velocities, self.types)
            self.context.setPositions(positions[0] * self.length_unit)
            self.context.setVelocities(velocities[0] * self.velocity_unit)
            self.context.setTime(state.getTime() + self.horizon)
            self.context.setStepCount(self.context.getStepCount() + 1)


class LearnedIntegratorSimulation(openmm.app.Simulation):
    """An OpenMM Simulation whose steps are a learned integrator's horizons.

    Args:
        forecaster: the learned integrator.
        positions, velocities: (N, 3) the initial state, in the task's units.
        types: (N,) particle types (N-body: 0 = charge -1, 1 = +1; motion: joint indices 0..30).
        platform: an OpenMM platform name; the Context computes no forces, so the default is Reference.
        length_unit, time_unit: see the module docstring.

    Example::

        simulation = LearnedIntegratorSimulation(load_forecaster("default", "nbody"), x, v, types)
        simulation.reporters.append(openmm.app.DCDReporter("nbody.dcd", 1))
        simulation.step(10)
    """

    def __init__(
        self,
        forecaster: SavedForecaster,
        positions: np.ndarray,
        velocities: np.ndarray,
        types: np.ndarray,
        platform: str = "Reference",
        length_unit=unit.angstrom,
        time_unit=unit.picosecond,
    ):
        positions, velocities = np.asarray(positions, np.float64), np.asarray(velocities, np.float64)
        types = np.asarray(types, dtype=np.int64)
        if positions.ndim != 2 or positions.shape[1] != 3 or velocities.shape != positions.shape:
            raise ValueError(
                "positions and velocities must both be (N, 3), got "
                f"{list(positions.shape)} and {list(velocities.shape)}"
            )
        if types.shape != positions.shape[:1]:
            raise ValueError(f"types must be (N,) = {[positions.shape[0]]}, got {list(types.shape)}")
        task = forecaster.task
        system = openmm.System()
        for _ in range(len(positions)):
            system.addParticle(1.0 * unit.dalton)
        # The Context's own integrator: no computations, so anything that steps it directly moves nothing (rather
        # than drifting force-free); its step size is the horizon, for reporters that read it.
        placeholder = openmm.CustomIntegrator(task.horizon * time_unit)
        topology = trajectory_topology(task, types[None]).to_openmm()
        super().__init__(topology, system, placeholder, openmm.Platform.getPlatformByName(platform))
        self.context.setPositions(positions * length_unit)
        self.context.setVelocities(velocities * (length_unit / time_unit))
        self.integrator = LearnedIntegrator(forecaster, self.context, types, length_unit, time_unit)
