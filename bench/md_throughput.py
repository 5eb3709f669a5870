"""Aspirin MD throughput of every architecture and preset as a TorchForce on OpenMM's CPU platform.

Models: the embedded ones (``sake``, ``equiformer``) and every preset of :data:`attnforce.models.PRESETS` with
random weights (throughput does not depend on the weights). For each, in a fresh process of its own (so that its
peak memory is its own):

- ``flops``: floating-point operations of one MD step (energy forward + backward for forces), counted by
  ``torch.utils.flop_counter`` (matrix products only: elementwise work is not counted);
- ``bare``: the (frozen) TorchScript module openmm-torch runs, forward + backward on the same positions, no OpenMM
  (median of ``--repeats``, or of as many as fit in ``--seconds``);
- ``md``: ``LangevinMiddleIntegrator`` steps/s and ns/day (0.5 fs) in OpenMM with the TorchForce, with openmm-torch
  differentiating the energy (the default) and with the module returning its forces (``setOutputsForces``);
  ``--steps`` steps, or as many as fit in ``--seconds``;
- ``overhead``: md step time / bare time - 1, what OpenMM adds around the model;
- ``floor``: flops / this machine's float32 matrix-multiply rate (2048^2 GEMMs, measured before and after the
  models in the same run, the better of the two: the rate of this machine drifts between runs);
  ``bare / floor`` is the figure to drive down.

Run from the repository root::

    python -m bench.md_throughput            # prints a Markdown table
    python -m bench.md_throughput --json out.json
"""

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import time

import torch  # before openmm: see attnforce/__init__.py

from attnforce.models import PRESETS
from bench.output import write_json
from bench.timing import cpu_md_context

#: The embedded models, then every preset with random weights (the embedded SAKE model's aspirin statistics).
MODELS = ["sake", "equiformer", *PRESETS]
TIMESTEP_FS = 0.5
WARMUP = 30  # calls before timing: TorchScript's profiling executor optimises after the first few


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
    from attnforce.checkpoint import EMBEDDED_MODELS, SavedModel, load_model
    from attnforce.models import Potential, build_model, preset

    if name in EMBEDDED_MODELS:
        return load_model(name)
    reference = load_model("sake")
    architecture, hyperparameters = preset(name)
    torch.manual_seed(0)
    model = build_model(architecture, hyperparameters)
    potential = Potential(model, float(reference.potential.energy_scale), reference.potential.element_shifts)
    return SavedModel(potential.eval(), architecture, hyperparameters, reference.metadata)


def _timed(run_once, count: int, seconds: float) -> list[float]:
    """Durations of ``run_once()`` calls: ``count`` of them, or fewer (at least 5) if ``seconds`` run out."""
    times: list[float] = []
    while len(times) < count and (len(times) < 5 or sum(times) < seconds):
        start = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - start)
    return times


def measure(name: str, threads: int, steps: int, repeats: int, seconds: float) -> dict:
    """Every figure of one model (runs in the worker process)."""
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

    def forward_backward():  # what openmm-torch does each step: forward, then backward for the forces
        scripted(positions_nm.clone().requires_grad_(True)).backward()

    _timed(forward_backward, WARMUP, seconds)
    bare = statistics.median(_timed(forward_backward, repeats, seconds))

    md = {}
    for mode, outputs_forces in (("energy", False), ("forces", True)):
        system = build_system(molecule, saved, outputs_forces=outputs_forces)
        context, integrator = cpu_md_context(system, molecule.positions * unit.angstrom, threads, TIMESTEP_FS)
        context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        integrator.step(WARMUP)
        chunks = _timed(functools.partial(integrator.step, 10), max(1, steps // 10), seconds)
        md[mode] = sum(chunks) / (10 * len(chunks))
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
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit of each timing loop")
    parser.add_argument("--models", nargs="+", default=MODELS, help="models to measure (default: all)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.threads, args.steps, args.repeats, args.seconds)))
        return

    rate_before = matmul_rate(args.threads)
    rows = []
    for name in args.models:
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
            "--seconds",
            str(args.seconds),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    rate = max(rate_before, matmul_rate(args.threads))  # the best observed: this machine's rate drifts between runs
    table = markdown(rows, rate, args.threads)
    print(table)
    if args.json:
        write_json(args.json, {"gemm_flop_per_s": rate, "threads": args.threads, "rows": rows})


if __name__ == "__main__":
    main()
