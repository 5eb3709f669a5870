"""Molecular dynamics with a learned force: OpenMM integrates, mdtraj writes the DCD.

``run_md`` minimises the energy, then integrates with ``LangevinMiddleIntegrator`` (NVT) or ``VerletIntegrator``
(NVE), writing a DCD trajectory (mdtraj's reporter) with a PDB topology beside it, a CSV of
step / time / potential / kinetic / total energy / temperature, and a PNG of energies and temperature.
Every output is written under a temporary name and renamed at the end, so a run that fails leaves none of them
(:func:`attnforce.atomic.atomic_output`).
"""

import csv
import logging
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mdtraj.reporters
import numpy as np
import openmm
from mdtraj.utils.validation import TypeCastPerformanceWarning
from openmm import app, unit
from tqdm.auto import tqdm

from attnforce.atomic import atomic_output
from attnforce.checkpoint import SavedModel
from attnforce.openmm.force import add_force
from attnforce.openmm.platform import select_platform
from systems.molecules import Molecule, load_molecule

logger = logging.getLogger(__name__)

CSV_COLUMNS = ["step", "time_ps", "potential_kj_mol", "kinetic_kj_mol", "total_kj_mol", "temperature_k"]


@dataclass
class MDResult:
    """What a run wrote and how fast it ran."""

    dcd: Path
    topology_pdb: Path
    energies_csv: Path
    plot_png: Path | None
    steps: int
    frames: int
    platform: str
    ns_per_day: float
    steps_per_second: float


def build_system(
    molecule: Molecule, model: str | Path | SavedModel, outputs_forces: bool | None = None, cuda_graphs: bool = False
) -> openmm.System:
    """A System of the molecule's particles with the learned force on all of them; periodic (minimum image) when
    the topology has box vectors (a PDB with a CRYST1 record)."""
    system = openmm.System()
    for atom in molecule.topology.atoms():
        system.addParticle(atom.element.mass)
    box = molecule.topology.getPeriodicBoxVectors()
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    add_force(system, molecule.topology, model, outputs_forces=outputs_forces, cuda_graphs=cuda_graphs)
    return system


def plot_energies(energies_csv: Path, output_png: Path) -> None:
    """Potential, kinetic and total energy, and temperature, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.genfromtxt(energies_csv, delimiter=",", names=True)
    data = np.atleast_1d(data)
    fig, (ax_energy, ax_temperature) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for column, label in [("potential_kj_mol", "potential"), ("kinetic_kj_mol", "kinetic"), ("total_kj_mol", "total")]:
        ax_energy.plot(data["time_ps"], data[column] - data[column][0], label=label)
    ax_energy.set_ylabel("energy - initial (kJ/mol)")
    ax_energy.legend()
    ax_temperature.plot(data["time_ps"], data["temperature_k"], color="C3")
    ax_temperature.set_xlabel("time (ps)")
    ax_temperature.set_ylabel("temperature (K)")
    fig.tight_layout()
    fig.savefig(output_png, dpi=120)
    plt.close(fig)


def _integrate(simulation: app.Simulation, steps: int, report_interval: int, writer, progress: bool) -> None:
    """Step ``simulation`` to ``steps``, writing a CSV row (``CSV_COLUMNS``) every ``report_interval`` steps."""
    system = simulation.system
    degrees_of_freedom = 3 * system.getNumParticles()  # no constraints, no centre-of-mass motion removal
    gas_constant = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(unit.kilojoule_per_mole / unit.kelvin)
    writer.writerow(CSV_COLUMNS)
    bar = tqdm(total=steps, desc="MD", unit="step", disable=not progress)
    while simulation.currentStep < steps:
        chunk = min(report_interval, steps - simulation.currentStep)
        with warnings.catch_warnings():  # the reporter casts OpenMM's float64 positions to DCD's float32
            warnings.simplefilter("ignore", TypeCastPerformanceWarning)
            try:
                simulation.step(chunk)
            except openmm.OpenMMException as error:
                if "nan" not in str(error).lower():
                    raise
                raise FloatingPointError(
                    f"after step {simulation.currentStep}: the simulation blew up, coordinates not finite ({error})"
                ) from None
        state = simulation.context.getState(getEnergy=True)
        potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not np.isfinite(potential + kinetic):
            raise FloatingPointError(f"step {simulation.currentStep}: energy is not finite (the simulation blew up)")
        temperature = 2.0 * kinetic / (degrees_of_freedom * gas_constant)
        time_ps = state.getTime().value_in_unit(unit.picosecond)
        writer.writerow(
            [simulation.currentStep]
            + [f"{v:.6f}" for v in (time_ps, potential, kinetic, potential + kinetic)]
            + [f"{temperature:.4f}"]
        )
        bar.update(chunk)
    bar.close()


def run_md(
    model: str | Path | SavedModel,
    structure: str | Path | Molecule,
    steps: int,
    dcd: str | Path,
    energies_csv: str | Path | None = None,
    plot_png: str | Path | None = None,
    temperature_k: float = 300.0,
    friction_per_ps: float = 1.0,
    timestep_fs: float = 0.5,
    report_interval: int = 100,
    ensemble: str = "nvt",
    minimize: bool = True,
    platform: str = "auto",
    seed: int | None = None,
    outputs_forces: bool | None = None,
    progress: bool = True,
    cuda_graphs: bool = False,
) -> MDResult:
    """Simulate a molecule with a learned force and write its trajectory.

    Args:
        model: saved model path, embedded model name (``default``) or exported TorchScript file.
        structure: ``.xyz``/``.pdb`` path, embedded name (``default``) or a :class:`Molecule`.
        steps: integration steps.
        dcd: trajectory path; its topology is written beside it as ``<stem>.pdb``.
        energies_csv: default ``<dcd stem>.csv``. plot_png: default ``<dcd stem>.png``; pass ``False`` for none.
        temperature_k: initial velocities and (NVT) thermostat temperature.
        friction_per_ps: Langevin friction (NVT).
        timestep_fs: integration time step.
        report_interval: steps between saved frames and CSV rows.
        ensemble: ``"nvt"`` (LangevinMiddleIntegrator) or ``"nve"`` (VerletIntegrator).
        minimize: minimise the energy before dynamics.
        platform: OpenMM platform name or ``"auto"`` (CUDA, OpenCL, CPU).
        seed: positive integer seeding the velocities and the Langevin noise (None: random).
        outputs_forces, cuda_graphs: see :func:`attnforce.openmm.force.create_force`.
    """
    if steps <= 0 or report_interval <= 0:
        raise ValueError(f"steps ({steps}) and report_interval ({report_interval}) must be positive")
    if seed is not None and seed <= 0:
        raise ValueError(f"seed must be a positive integer (OpenMM takes 0 to mean 'random'), got {seed}")
    if ensemble not in ("nvt", "nve"):
        raise ValueError(f"ensemble must be 'nvt' or 'nve', got {ensemble!r}")
    molecule = structure if isinstance(structure, Molecule) else load_molecule(structure)
    dcd = Path(dcd)
    topology_pdb = dcd.with_suffix(".pdb")
    energies_csv = Path(energies_csv) if energies_csv else dcd.with_suffix(".csv")
    plot_png = None if plot_png is False else Path(plot_png) if plot_png else dcd.with_suffix(".png")
    if not isinstance(structure, Molecule) and Path(structure).resolve() == topology_pdb.resolve():
        raise ValueError(f"the topology written beside {dcd} would overwrite the input structure {structure}")

    system = build_system(molecule, model, outputs_forces, cuda_graphs)  # checks elements before anything is written
    timestep = timestep_fs * unit.femtosecond
    temperature = temperature_k * unit.kelvin
    if ensemble == "nvt":
        integrator = openmm.LangevinMiddleIntegrator(temperature, friction_per_ps / unit.picosecond, timestep)
        if seed is not None:
            integrator.setRandomNumberSeed(seed)
    else:
        integrator = openmm.VerletIntegrator(timestep)
    chosen = select_platform(platform)
    simulation = app.Simulation(molecule.topology, system, integrator, chosen)
    simulation.context.setPositions(molecule.positions * unit.angstrom)
    if minimize:
        simulation.minimizeEnergy()
    if seed is None:
        simulation.context.setVelocitiesToTemperature(temperature)
    else:
        simulation.context.setVelocitiesToTemperature(temperature, seed)

    outputs = [dcd, topology_pdb, energies_csv] + ([plot_png] if plot_png else [])
    with ExitStack() as stack:
        partial = {path: stack.enter_context(atomic_output(path)) for path in outputs}
        with open(partial[topology_pdb], "w") as handle:
            app.PDBFile.writeFile(
                molecule.topology, simulation.context.getState(getPositions=True).getPositions(), handle
            )
        reporter = mdtraj.reporters.DCDReporter(str(partial[dcd]), report_interval)
        simulation.reporters.append(reporter)
        start = time.perf_counter()
        with open(partial[energies_csv], "w", newline="") as handle:
            _integrate(simulation, steps, report_interval, csv.writer(handle), progress)
        wall = time.perf_counter() - start
        reporter.close()
        if plot_png:
            plot_energies(partial[energies_csv], partial[plot_png])

    simulated_ns = steps * timestep.value_in_unit(unit.nanosecond)
    result = MDResult(
        dcd=dcd,
        topology_pdb=topology_pdb,
        energies_csv=energies_csv,
        plot_png=plot_png,
        steps=steps,
        frames=steps // report_interval,
        platform=chosen.getName(),
        ns_per_day=simulated_ns / wall * 86400.0,
        steps_per_second=steps / wall,
    )
    logger.info(
        "%d steps on %s: %.1f steps/s, %.3f ns/day", steps, result.platform, result.steps_per_second, result.ns_per_day
    )
    return result
