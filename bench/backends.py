"""The two OpenMM backends side by side: openmm-torch's TorchForce (TorchScript) against OpenMM's PythonForce with
the eager and the ``torch.compile``d model, for the embedded models on aspirin, CPU platform, in one run.

Each backend gets a fresh Context (``LangevinMiddleIntegrator``, 0.5 fs, 300 K) from the same positions; after
``--warmup`` steps (TorchScript's profiling executor and torch.compile both optimise on the first calls), steps
are timed in rounds of ``--steps``, the backends taking turns, and the median round is reported.

Run from the repository root::

    python -m bench.backends --json bench/results/openmm/backends.json
"""

import argparse

import torch  # before openmm: see attnforce/__init__.py

from bench.output import write_json
from bench.timing import cpu_md_context, interleaved_step_seconds

BACKENDS = ["torch", "python", "python-compiled"]
TIMESTEP_FS = 0.5


def make_simulation(model: str, backend: str, threads: int):
    import openmm
    from openmm import unit

    from attnforce.openmm.force import add_force
    from systems.molecules import load_molecule

    molecule = load_molecule("default")
    system = openmm.System()
    for atom in molecule.topology.atoms():
        system.addParticle(atom.element.mass)
    add_force(system, molecule.topology, model, backend=backend)
    return cpu_md_context(system, molecule.positions * unit.angstrom, threads, TIMESTEP_FS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sake", "equiformer"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for model in args.models:
        runs = {backend: make_simulation(model, backend, args.threads) for backend in BACKENDS}
        integrators = {backend: integrator for backend, (_, integrator) in runs.items()}
        step_seconds = interleaved_step_seconds(integrators, args.warmup, args.steps, args.rounds)
        reference = step_seconds["torch"]
        for backend in BACKENDS:
            step = step_seconds[backend]
            results.append(
                {
                    "model": model,
                    "backend": backend,
                    "ms_per_step": 1000 * step,
                    "steps_per_s": 1 / step,
                    "ns_per_day": TIMESTEP_FS * 1e-6 * 86400 / step,
                    "speed_vs_torchforce": reference / step,
                }
            )
    print(f"aspirin, CPU platform, {args.threads} threads, median of {args.rounds} rounds of {args.steps} steps")
    print("| model | backend | ms/step | steps/s | ns/day | speed vs TorchForce |")
    print("|---|---|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['model']} | {row['backend']} | {row['ms_per_step']:.2f} | {row['steps_per_s']:.1f} | "
            f"{row['ns_per_day']:.3f} | {row['speed_vs_torchforce']:.2f}x |"
        )
    if args.json:
        write_json(args.json, {"threads": args.threads, "rows": results})


if __name__ == "__main__":
    main()
