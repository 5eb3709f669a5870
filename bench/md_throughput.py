"""Aspirin MD throughput with the SAKE TorchForce on OpenMM's CPU platform.

For each model, in a fresh process of its own (so that its peak memory is its own):

- ``flops``: floating-point operations of one MD step (energy forward + backward for forces), counted by
  ``torch.utils.flop_counter`` (matrix products only: elementwise work is not counted);
- ``bare``: the (frozen) TorchScript module openmm-torch runs, forward + backward on the same positions, no OpenMM
  (median of ``--repeats``);
- ``md``: ``LangevinMiddleIntegrator`` steps/s and ns/day (0.5 fs) in OpenMM with the TorchForce, with openmm-torch
  differentiating the energy (the default) and with the module returning its forces (``setOutputsForces``);
- ``overhead``: md step time / bare time - 1, what OpenMM adds around the model;
- ``floor``: flops / this machine's float32 matrix-multiply rate (2048^2 GEMMs, measured before and after the
  models in the same run, the better of the two: the rate of this machine drifts between runs);
  ``bare / floor`` is the figure to drive down.

Run from the repository root::

    python -m bench.md_throughput            # prints a Markdown table
    python -m bench.md_throughput --json out.json
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch  # before openmm: see attnforce/__init__.py

#: name -> (description, model): "default" is the embedded model; a dict builds a randomly initialised SAKE
#: (throughput does not depend on the weights) with the aspirin statistics of the embedded model.
MODELS = {
    "paper MD17 size": "hidden 64, 6 layers, 4 heads, all pairs",
    "embedded default": "the shipped aspirin model",
}
TIMESTEP_FS = 0.5
WARMUP = 30  # calls before timing: TorchScript's profiling executor optimises after the first few
PAPER_HYPERPARAMETERS = dict(hidden_features=64, num_layers=6, num_heads=4, num_rbf=50, rbf_cutoff=5.0, cutoff=None)


def matmul_rate(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Best float32 GEMM rate (FLOP/s) over ``repeats`` products of two size x size matrices."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _load(name: str):
    from attnforce.checkpoint import SavedModel, load_model
    from attnforce.models import SAKE, Potential

    saved = load_model("default")
    if name == "embedded default":
        return saved
    torch.manual_seed(0)
    potential = Potential(
        SAKE(**PAPER_HYPERPARAMETERS), float(saved.potential.energy_scale), saved.potential.element_shifts
    )
    return SavedModel(potential.eval(), "sake", PAPER_HYPERPARAMETERS, saved.metadata)


def measure(name: str, threads: int, steps: int, repeats: int) -> dict:
    """Every figure of one model (runs in the worker process)."""
    import openmm
    from openmm import unit
    from torch.utils.flop_counter import FlopCounterMode

    from attnforce.export import build_module
    from attnforce.openmm.module import OpenMMModule
    from attnforce.units import nm_per_angstrom
    from integrators.md import build_system
    from systems.molecules import load_molecule

    torch.set_num_threads(threads)
    saved = _load(name)
    molecule = load_molecule("default")
    numbers = torch.tensor(molecule.atomic_numbers)
    positions_nm = torch.tensor(molecule.positions * nm_per_angstrom, dtype=torch.float64)

    eager = OpenMMModule(saved.potential, numbers, torch.arange(len(numbers)))
    with FlopCounterMode(display=False) as counter:
        x = positions_nm.clone().requires_grad_(True)
        eager(x).backward()
    flops = counter.get_total_flops()

    scripted, _ = build_module(saved)
    times = []
    for i in range(repeats + WARMUP):  # what openmm-torch does each step: forward, then backward for the forces
        x = positions_nm.clone().requires_grad_(True)
        start = time.perf_counter()
        scripted(x).backward()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    bare = statistics.median(times)

    md = {}
    for mode, outputs_forces in (("energy", False), ("forces", True)):
        system = build_system(molecule, saved, outputs_forces=outputs_forces)
        integrator = openmm.LangevinMiddleIntegrator(
            300 * unit.kelvin, 1 / unit.picosecond, TIMESTEP_FS * unit.femtosecond
        )
        platform = openmm.Platform.getPlatformByName("CPU")
        context = openmm.Context(system, integrator, platform, {"Threads": str(threads)})
        context.setPositions(molecule.positions * unit.angstrom)
        context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        integrator.step(WARMUP)
        start = time.perf_counter()
        integrator.step(steps)
        md[mode] = (time.perf_counter() - start) / steps
        del context

    ns_per_step = (TIMESTEP_FS * unit.femtosecond).value_in_unit(unit.nanosecond)
    return {
        "model": name,
        "parameters": sum(p.numel() for p in saved.potential.parameters()),
        "mflop_per_step": flops / 1e6,
        "bare_ms": bare * 1e3,
        "md_ms": md["energy"] * 1e3,
        "md_forces_ms": md["forces"] * 1e3,
        "steps_per_s": 1.0 / md["energy"],
        "ns_per_day": ns_per_step / md["energy"] * 86400,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def markdown(rows: list[dict], rate: float, threads: int) -> str:
    lines = [
        f"float32 GEMM rate (2048², {threads} threads): **{rate / 1e9:.1f} GFLOP/s**",
        "",
        "| model | parameters | MFLOP/step | floor (ms) | bare fwd+bwd (ms) | bare / floor | MD step (ms) | "
        "OpenMM overhead | MD step, module forces (ms) | steps/s | ns/day (0.5 fs) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor_ms = r["mflop_per_step"] * 1e6 / rate * 1e3
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['mflop_per_step']:.0f} | {floor_ms:.2f} | {r['bare_ms']:.2f} | "
            f"{r['bare_ms'] / floor_ms:.2f}x | {r['md_ms']:.2f} | {100 * (r['md_ms'] / r['bare_ms'] - 1):+.1f}% | "
            f"{r['md_forces_ms']:.2f} | {r['steps_per_s']:.1f} | {r['ns_per_day']:.3f} | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch and OpenMM CPU threads")
    parser.add_argument("--steps", type=int, default=300, help="MD steps timed per model")
    parser.add_argument("--repeats", type=int, default=200, help="bare forward+backward evaluations timed")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.threads, args.steps, args.repeats)))
        return

    rate_before = matmul_rate(args.threads)
    rows = []
    for name in MODELS:
        command = [
            sys.executable,
            "-m",
            "bench.md_throughput",
            "--worker",
            name,
            "--threads",
            str(args.threads),
            "--steps",
            str(args.steps),
            "--repeats",
            str(args.repeats),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    rate = max(rate_before, matmul_rate(args.threads))  # the best observed: this machine's rate drifts between runs
    table = markdown(rows, rate, args.threads)
    print(table)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"gemm_flop_per_s": rate, "threads": args.threads, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
