"""Molecular dynamics with a learned force: OpenMM integrates, mdtraj writes the DCD.

``run_md`` minimises the energy, then integrates with ``LangevinMiddleIntegrator`` (NVT) or ``VerletIntegrator``
(NVE), writing a DCD trajectory (mdtraj's reporter) with a PDB topology beside it, a CSV of
step / time / potential / kinetic / total energy / temperature, and a PNG of energies and temperature.
Every output is written under a temporary name and renamed at the end, so a run that fails leaves none of them
(:func:`attnforce.atomic.atomic_outputs`).
"""

import csv
import logging
import math
import numbers
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import mdtraj.reporters
import numpy as np
import openmm
from mdtraj.utils.validation import TypeCastPerformanceWarning
from openmm import app, unit
from tqdm.auto import tqdm

from attnforce.atomic import atomic_outputs, check_outputs, check_suffix, write_failure
from attnforce.checkpoint import SavedModel
from attnforce.export import read_metadata
from attnforce.memory import check_evaluation_memory
from attnforce.openmm.force import add_force, load_force_model
from attnforce.openmm.platform import select_platform
from systems.molecules import Molecule, check_geometry, load_molecule

logger = logging.getLogger(__name__)

CSV_COLUMNS = ["step", "time_ps", "potential_kj_mol", "kinetic_kj_mol", "total_kj_mol", "temperature_k"]

#: Time steps (fs) above which a learned-force system without constraints is refused, and above which it is warned
#: about: the fastest motions (X-H stretches, about 9-11 fs periods) need about ten steps per period.
MAX_TIMESTEP_FS, UNCONSTRAINED_TIMESTEP_FS = 10.0, 2.0
#: Time steps (fs) refused below: a thousandth of the default, too short to move a molecule in any useful run.
MIN_TIMESTEP_FS = 5e-4
#: Temperatures (K) refused above, and warned about above (beyond what molecular training data sample).
MAX_TEMPERATURE_K, HOT_TEMPERATURE_K = 10_000.0, 1_500.0
#: Langevin friction (1/ps) refused above: the dynamics would be overdamped beyond any use of MD.
MAX_FRICTION_PER_PS = 10_000.0
#: OpenMM's random seeds are 32-bit signed integers.
MAX_SEED = 2**31 - 1
#: The DCD format stores step numbers as 32-bit signed integers: a longer run cannot be written as one trajectory.
MAX_STEPS = 2**31 - 1


def check_md_parameters(
    steps: int,
    timestep_fs: float,
    temperature_k: float,
    friction_per_ps: float,
    report_interval: int,
    seed: int | None = None,
) -> None:
    """Refuse, before any work, numbers that cannot give a meaningful simulation (ValueError naming the value and
    the fix), and warn about legal but unwise ones (a step above 2 fs without constraints, a hot thermostat)."""
    for name, value in (
        ("time step", timestep_fs),
        ("temperature", temperature_k),
        ("friction", friction_per_ps),
    ):
        if not math.isfinite(value):
            raise ValueError(f"the {name} is {value}: give a finite number")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if steps > MAX_STEPS:
        raise ValueError(
            f"{steps:.3g} steps cannot be written as one DCD trajectory (its step numbers are 32-bit, at most "
            f"{MAX_STEPS:,}); split the run into shorter ones"
        )
    if timestep_fs <= 0:
        raise ValueError(f"the time step must be positive, got {timestep_fs} fs (0.5 fs is the default)")
    if timestep_fs < MIN_TIMESTEP_FS:
        raise ValueError(
            f"a time step of {timestep_fs:g} fs moves the atoms by nothing measurable; give at least "
            f"{MIN_TIMESTEP_FS:g} fs (0.5 fs is the default)"
        )
    if timestep_fs > MAX_TIMESTEP_FS:
        raise ValueError(
            f"a time step of {timestep_fs} fs integrates bond vibrations (about 10 fs periods) unstably: the molecule "
            f"would blow apart; use at most {UNCONSTRAINED_TIMESTEP_FS:g} fs (0.5 fs is the default)"
        )
    if timestep_fs > UNCONSTRAINED_TIMESTEP_FS:
        logger.warning(
            "a time step of %g fs without constraints on bonds to hydrogen is likely unstable; %g fs or less is safe",
            timestep_fs,
            UNCONSTRAINED_TIMESTEP_FS,
        )
    if temperature_k < 0:
        raise ValueError(f"the temperature must be 0 K or more, got {temperature_k} K")
    if temperature_k > MAX_TEMPERATURE_K:
        raise ValueError(
            f"{temperature_k:g} K is beyond any molecular simulation (covalent bonds break near {MAX_TEMPERATURE_K:g} "
            "K) and far outside what a learned potential was trained on; give a temperature in kelvin, such as 300"
        )
    if temperature_k > HOT_TEMPERATURE_K:
        logger.warning(
            "%g K is hotter than typical training data samples (rMD17: 500 K); the model may be extrapolating",
            temperature_k,
        )
    if friction_per_ps < 0:
        raise ValueError(f"the friction must be 0/ps or more, got {friction_per_ps}/ps (1/ps is the default)")
    if friction_per_ps > MAX_FRICTION_PER_PS:
        raise ValueError(f"a friction of {friction_per_ps:g}/ps is overdamped beyond use; 1/ps is the default")
    if isinstance(report_interval, bool) or not isinstance(report_interval, numbers.Integral) or report_interval <= 0:
        raise ValueError(f"the report interval must be a positive number of steps, got {report_interval}")
    if report_interval > steps:
        raise ValueError(
            f"the report interval ({report_interval} steps) is longer than the run ({steps} steps): the trajectory "
            "would have no frame; give a smaller --report-interval or more steps"
        )
    if seed is not None and not 0 < seed <= MAX_SEED:
        raise ValueError(
            f"the seed must be an integer from 1 to {MAX_SEED} (OpenMM takes 0 to mean 'random'), got {seed}"
        )


def _box_volume(molecule: Molecule) -> float | None:
    """The periodic box's volume (Å³), None for an isolated molecule."""
    vectors = molecule.topology.getPeriodicBoxVectors()
    if vectors is None:
        return None
    return float(abs(np.linalg.det(np.array(vectors.value_in_unit(unit.angstrom)))))


def md_outputs(
    dcd: str | Path, energies_csv: str | Path | None = None, plot_png: str | Path | bool | None = None
) -> dict[str, Path]:
    """The files a run writes, by role: ``dcd``, ``topology`` (the PDB beside it), ``csv`` and ``png`` (absent
    when ``plot_png`` is ``False``); ValueError for a path whose suffix is not its format's."""
    check_suffix("the dcd output", dcd, ".dcd")  # before its name is used for the others
    dcd = Path(dcd)
    outputs = {"dcd": dcd, "topology": dcd.with_suffix(".pdb")}
    outputs["csv"] = Path(energies_csv) if energies_csv else dcd.with_suffix(".csv")
    if plot_png is not False:
        outputs["png"] = Path(plot_png) if plot_png else dcd.with_suffix(".png")
    for role, path in list(outputs.items())[1:]:
        check_suffix(f"the {role} output", path, f".{role if role != 'topology' else 'pdb'}")
    return outputs


@dataclass
class MDResult:
    """What a run wrote, how fast it ran, and the metadata of the model it ran (test errors, training data)."""

    dcd: Path
    topology_pdb: Path
    energies_csv: Path
    plot_png: Path | None
    steps: int
    frames: int
    platform: str
    ns_per_day: float
    steps_per_second: float
    model_metadata: dict


def build_system(
    molecule: Molecule,
    model: str | Path | SavedModel,
    outputs_forces: bool | None = None,
    cuda_graphs: bool = False,
    trust_torchscript: bool = False,
) -> openmm.System:
    """A System of the molecule's particles with the learned force on all of them; periodic (minimum image) when
    the topology has box vectors (a PDB with a CRYST1 record)."""
    system = openmm.System()
    for atom in molecule.topology.atoms():
        system.addParticle(atom.element.mass)
    box = molecule.topology.getPeriodicBoxVectors()
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    add_force(
        system,
        molecule.topology,
        model,
        outputs_forces=outputs_forces,
        cuda_graphs=cuda_graphs,
        trust_torchscript=trust_torchscript,
    )
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


def _blow_up(step: int, what: str, timestep_fs: float, temperature_k: float) -> FloatingPointError:
    """The error of a simulation that blew up, naming the likely causes."""
    return FloatingPointError(
        f"step {step}: {what}; the simulation blew up. Likely causes: the time step ({timestep_fs:g} fs; 0.5 fs is "
        f"safe without constraints), the temperature ({temperature_k:g} K, against the training data's), or a "
        "structure far from the training data (check the model's errors on similar structures with attnforce "
        "evaluate)"
    )


class _DCDReporter(mdtraj.reporters.DCDReporter):
    """mdtraj's DCD reporter, whose failed writes name the file and the likely cause (mdtraj 1.x raises
    "TypeError: 'dict' object is not callable" for them: see :func:`attnforce.atomic.write_failure`)."""

    def __init__(self, file: str, report_interval: int, shown: str | Path):
        super().__init__(file, report_interval)
        self._path, self._shown = file, shown

    def report(self, simulation, state) -> None:
        try:
            super().report(simulation, state)
        except (OSError, TypeError):
            raise write_failure(self._path, self._shown) from None


def _integrate(
    simulation: app.Simulation, steps: int, report_interval: int, writer, progress: bool, temperature_k: float
) -> None:
    """Step ``simulation`` to ``steps``, writing a CSV row (``CSV_COLUMNS``) every ``report_interval`` steps;
    FloatingPointError when the energy is not finite or the temperature runs far above ``temperature_k``."""
    system = simulation.system
    timestep_fs = simulation.integrator.getStepSize().value_in_unit(unit.femtosecond)
    hottest_k = 5.0 * temperature_k + 500.0  # a thermal fluctuation of even a few atoms stays far below this
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
                raise _blow_up(
                    simulation.currentStep, "coordinates are not finite", timestep_fs, temperature_k
                ) from None
        state = simulation.context.getState(getEnergy=True)
        potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        if not np.isfinite(potential + kinetic):
            raise _blow_up(simulation.currentStep, "the energy is not finite", timestep_fs, temperature_k)
        temperature = 2.0 * kinetic / (degrees_of_freedom * gas_constant)
        if temperature > hottest_k:
            raise _blow_up(
                simulation.currentStep,
                f"the temperature reached {temperature:.0f} K, far above the {temperature_k:g} K set",
                timestep_fs,
                temperature_k,
            )
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
    trust_torchscript: bool = False,
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
        trust_torchscript: accept an exported TorchScript file as ``model`` (a program; see
            :func:`attnforce.openmm.force.load_force_model`).

    Every number is checked (:func:`check_md_parameters`) and every output against the inputs and the other
    outputs (:func:`attnforce.atomic.check_outputs`) before anything is loaded or written.
    """
    check_md_parameters(steps, timestep_fs, temperature_k, friction_per_ps, report_interval, seed)
    if ensemble not in ("nvt", "nve"):
        raise ValueError(f"ensemble must be 'nvt' or 'nve', got {ensemble!r}")
    outputs = md_outputs(dcd, energies_csv, plot_png)
    inputs = {
        "structure": None if isinstance(structure, Molecule) else structure,
        "model": None if isinstance(model, SavedModel) else model,
    }
    check_outputs(outputs, inputs)
    dcd, topology_pdb, energies_csv = (outputs[k] for k in ("dcd", "topology", "csv"))
    plot_png = outputs.get("png")
    molecule = structure if isinstance(structure, Molecule) else load_molecule(structure)
    check_geometry(molecule)
    model = load_force_model(model, trust_torchscript)  # a SavedModel, or a trusted exported file's path

    chosen = select_platform(platform)
    if isinstance(model, SavedModel) and chosen.getName() in ("CPU", "Reference"):
        check_evaluation_memory(
            model.architecture,
            model.hyperparameters,
            model.potential.cutoff,
            model.potential.energy_scale.element_size(),
            molecule.positions,
            _box_volume(molecule),
            f"{getattr(structure, 'name', structure)} with {model.path}",
        )
    system = build_system(
        molecule, model, outputs_forces, cuda_graphs, trust_torchscript
    )  # checks elements before anything is written
    timestep = timestep_fs * unit.femtosecond
    temperature = temperature_k * unit.kelvin
    if ensemble == "nvt":
        integrator = openmm.LangevinMiddleIntegrator(temperature, friction_per_ps / unit.picosecond, timestep)
        if seed is not None:
            integrator.setRandomNumberSeed(seed)
    else:
        integrator = openmm.VerletIntegrator(timestep)
    simulation = app.Simulation(molecule.topology, system, integrator, chosen)
    simulation.context.setPositions(molecule.positions * unit.angstrom)
    if minimize:
        simulation.minimizeEnergy()  # a stop signal meanwhile: attnforce.cli._StopWatch
    if seed is None:
        simulation.context.setVelocitiesToTemperature(temperature)
    else:
        simulation.context.setVelocitiesToTemperature(temperature, seed)

    with atomic_outputs(outputs.values()) as partial:
        with open(partial[topology_pdb], "w") as handle:
            app.PDBFile.writeFile(
                molecule.topology, simulation.context.getState(getPositions=True).getPositions(), handle
            )
        reporter = _DCDReporter(str(partial[dcd]), report_interval, shown=dcd)
        simulation.reporters.append(reporter)
        start = time.perf_counter()
        with open(partial[energies_csv], "w", newline="") as handle:
            _integrate(simulation, steps, report_interval, csv.writer(handle), progress, temperature_k)
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
        model_metadata=read_metadata(model) if isinstance(model, Path) else model.metadata,
    )
    logger.info(
        "%d steps on %s: %.1f steps/s, %.3f ns/day", steps, result.platform, result.steps_per_second, result.ns_per_day
    )
    return result
