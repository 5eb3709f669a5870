"""MD throughput side by side: our SAKE and Equiformer against TorchMD-Net's TensorNet through openmm-ml.

Systems: aspirin (21 atoms, the embedded structure) and alanine dipeptide in vacuum (22 atoms, openmmtools'
``AlanineDipeptideVacuum``). Each model is the whole potential of the System, as a user would add it: ours as an
openmm-torch ``TorchForce`` (TorchScript) through :func:`attnforce.openmm.force.add_force`; TensorNet through
openmm-ml's ``MLPotential('torchmdnet', modelPath=...)`` from a torchmd-net checkpoint (:mod:`bench.tensornet`),
which openmm-ml 1.8 makes a ``PythonForce`` calling the model compiled by ``torch.compile`` (inductor).

Models, at the sizes of the accuracy comparison, with untrained weights (the speed does not depend on them; the
embedded aspirin models cannot take alanine dipeptide's nitrogen): ``sake-small`` (all pairs, as the embedded
SAKE), ``equiformer-small`` (5 Å), ``tensornet-72`` (5 Å). CPU platform, ``LangevinMiddleIntegrator`` at 0.5 fs
and 300 K, one Context per model in one process; ``--warmup`` steps each, then ``--rounds`` rounds of ``--steps``
steps with the models taking turns; the median round is reported.

Needs the ``bench`` extra. Run from the repository root::

    python -m bench.md_compare --json bench/results/competitors/md_compare.json
"""

import argparse
import tempfile
from pathlib import Path

import torch  # before openmm: see attnforce/__init__.py

from bench.output import write_json
from bench.tensornet import TensorNetPotential
from bench.timing import cpu_md_context, interleaved_step_seconds

TIMESTEP_FS = 0.5
MODELS = ["sake-small", "equiformer-small", "tensornet-72"]
ELEMENTS = [1, 6, 7, 8]


def systems() -> dict:
    """name -> (topology, positions with units)."""
    from openmm import unit
    from openmmtools.testsystems import AlanineDipeptideVacuum

    from systems.molecules import load_molecule

    aspirin = load_molecule("default")
    alanine = AlanineDipeptideVacuum(constraints=None)
    return {
        "aspirin": (aspirin.topology, aspirin.positions * unit.angstrom),
        "alanine dipeptide": (alanine.topology, alanine.positions),
    }


def ours(preset_name: str):
    """An untrained saved model of one of our presets, for H, C, N and O."""
    from attnforce.checkpoint import SavedModel
    from attnforce.models import Potential, build_model, preset

    architecture, hyperparameters = preset(preset_name)
    if architecture == "equiformer":
        hyperparameters = dict(hyperparameters, avg_degree=14.0)
    torch.manual_seed(0)
    potential = Potential(build_model(architecture, hyperparameters), 1.0, torch.zeros(119, dtype=torch.float64))
    metadata = {
        "units": {"length": "angstrom", "energy": "eV"},
        "cutoff": hyperparameters.get("cutoff"),
        "atomic_numbers": ELEMENTS,
        "elements": ELEMENTS,
    }
    return SavedModel(potential.eval(), architecture, hyperparameters, metadata)


def tensornet_checkpoint(directory: Path) -> tuple[Path, TensorNetPotential, dict[str, float]]:
    """An untrained TensorNet (width 72) as a torchmd-net checkpoint, checked to give our wrapper's forces; the
    path, the wrapper, and the largest force deviations (eV/Å) from the wrapper of the checkpoint loaded two ways.

    Forces, not energies: they do not contain the per-element shifts, whose thousands of eV would hide a wrongly
    loaded network in an energy comparison. The deviations: ``load_model``, as torchmd-net documents it (must be
    float32 round-off), and ``load_model(check_errors=False)``, the keyword openmm-ml 1.8 adds; and, for scale,
    the largest force component."""
    from torchmdnet.models.model import load_model

    from bench.tensornet import save_torchmdnet_checkpoint

    torch.manual_seed(0)
    shifts = torch.zeros(119, dtype=torch.float64)
    shifts[ELEMENTS] = torch.tensor([-13.6, -1029.5, -1485.3, -2041.3], dtype=torch.float64)
    potential = TensorNetPotential(72, 0.5, shifts).eval()
    path = directory / "tensornet72.ckpt"
    save_torchmdnet_checkpoint(potential, path)
    z = torch.tensor([6, 6, 8, 7, 1, 1, 1])
    positions = torch.randn(7, 3) * 1.2
    batch = torch.zeros(7, dtype=torch.long)
    wrapper_forces = potential(positions, z, batch, 1)[1].detach()
    deviations = {"max_force": float(wrapper_forces.abs().max())}
    for label, keywords in (("load_model", {}), ("load_model(check_errors=False)", {"check_errors": False})):
        checkpoint_forces = load_model(str(path), derivative=True, **keywords)(z, positions, batch)[1].detach()
        deviations[label] = float((checkpoint_forces - wrapper_forces).abs().max())
    if not deviations["load_model"] <= 1e-4 * deviations["max_force"]:
        raise RuntimeError(
            f"the checkpoint's forces differ from the wrapper's by up to {deviations['load_model']} eV/Å"
        )
    return path, potential, deviations


def openmm_force_error(context, potential, topology) -> tuple[float, float]:
    """Largest deviation of a Context's forces from ``potential``'s at the Context's positions, and the largest
    force component of ``potential``, both eV/Å."""
    from openmm import unit

    from attnforce.units import ev_per_kj_per_mol, nm_per_angstrom

    state = context.getState(getForces=True, getPositions=True)
    positions = torch.tensor(state.getPositions(asNumpy=True).value_in_unit(unit.angstrom), dtype=torch.float32)
    context_forces_kj_per_mol_nm = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    context_forces = torch.tensor(
        context_forces_kj_per_mol_nm * ev_per_kj_per_mol * nm_per_angstrom, dtype=torch.float32
    )
    numbers = torch.tensor([atom.element.atomic_number for atom in topology.atoms()])
    _, forces = potential(positions, numbers, torch.zeros(len(numbers), dtype=torch.long), 1)
    forces = forces.detach()
    return float((context_forces - forces).abs().max()), float(forces.abs().max())


def make_context(model: str, topology, positions, threads: int, checkpoint: Path):
    """A CPU Context (:func:`bench.timing.cpu_md_context`) with ``model`` as the System's whole potential:
    (context, integrator)."""
    import openmm

    if model.startswith("tensornet"):
        from openmmml import MLPotential

        system = MLPotential("torchmdnet", modelPath=str(checkpoint)).createSystem(topology)
    else:
        from attnforce.openmm.force import add_force

        system = openmm.System()
        for atom in topology.atoms():
            system.addParticle(atom.element.mass)
        add_force(system, topology, ours(model))
    return cpu_md_context(system, positions, threads, TIMESTEP_FS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, force_checks = [], []
    with tempfile.TemporaryDirectory() as directory:
        checkpoint, tensornet, load_deviations = tensornet_checkpoint(Path(directory))
        for system_name, (topology, positions) in systems().items():
            runs = {m: make_context(m, topology, positions, args.threads, checkpoint) for m in MODELS}
            error, largest = openmm_force_error(runs["tensornet-72"][0], tensornet, topology)
            force_checks.append({"system": system_name, "max_force_error": error, "max_force": largest})
            integrators = {m: integrator for m, (_, integrator) in runs.items()}
            step_seconds = interleaved_step_seconds(integrators, args.warmup, args.steps, args.rounds)
            for model in MODELS:
                step = step_seconds[model]
                rows.append(
                    {
                        "system": system_name,
                        "model": model,
                        "ms_per_step": 1000 * step,
                        "ns_per_day": TIMESTEP_FS * 1e-6 * 86400 / step,
                    }
                )
    print(f"CPU platform, {args.threads} threads, 0.5 fs, median of {args.rounds} interleaved rounds of {args.steps}")
    print("| system | model | ms/step | ns/day | speed vs TensorNet |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        reference = next(r for r in rows if r["system"] == row["system"] and r["model"] == "tensornet-72")
        print(
            f"| {row['system']} | {row['model']} | {row['ms_per_step']:.2f} | {row['ns_per_day']:.3f} "
            f"| {reference['ms_per_step'] / row['ms_per_step']:.2f}x |"
        )
    print()
    print("TensorNet's forces against those of the network that wrote the checkpoint (largest deviation, eV/Å)")
    print("| loaded by | structure | max abs deviation | max abs force |")
    print("|---|---|---:|---:|")
    for label in ("load_model", "load_model(check_errors=False)"):
        deviation, largest = load_deviations[label], load_deviations["max_force"]
        print(f"| torchmd-net `{label}` | 7 random atoms | {deviation:.2g} | {largest:.3g} |")
    for check in force_checks:
        print(
            f"| openmm-ml `MLPotential('torchmdnet')`, in the Context | {check['system']} | "
            f"{check['max_force_error']:.2g} | {check['max_force']:.3g} |"
        )
    if args.json:
        write_json(
            args.json,
            {
                "threads": args.threads,
                "rows": rows,
                "checkpoint_load_deviations": load_deviations,
                "openmmml_force_checks": force_checks,
            },
        )


if __name__ == "__main__":
    main()
