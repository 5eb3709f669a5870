"""Periodic water boxes of growing size: MD step time, neighbour-list time and peak memory against atom count.

Boxes are cut from OpenMM's TIP3P box (:func:`systems.water.water_box`), about 100 to 5000 atoms. Each size runs in
its own process (so that peak memory is that size's own): a periodic ``TorchForce`` on the CPU platform,
``LangevinMiddleIntegrator`` at 0.5 fs; ``--warmup`` steps, then ``--steps`` timed. In the same process the model's
cell list is timed against an all-pairs minimum-image search (every distance, O(N^2)) on the same positions, and,
for the same atoms taken as an isolated cluster, against ``radius_edges`` (all distances), which the model uses for
isolated structures below ``Potential.cell_list_min_atoms``.
Peak memory is the process's peak resident set during MD above what it held before the force was built. The
model alone (the frozen TorchScript module the TorchForce runs, and the eager model) is also timed outside OpenMM
on the same positions, energy and forces.

Models: the embedded Equiformer (cutoff 5 Å), and a SAKE of the embedded SAKE's size with a 5 Å cutoff (the
embedded SAKE sees all pairs, so it cannot take a box; its weights here are untrained: timings only).

Run from the repository root::

    python -m bench.periodic_scaling --json bench/results/openmm/periodic_scaling.json \\
        --plot bench/results/openmm/periodic_scaling.png
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch  # before openmm: see attnforce/__init__.py

from bench.memory import peak_mb, reset_peak, resident_mb
from bench.output import write_json
from bench.timing import cpu_md_context

EDGES_ANGSTROM = [11.0, 14.0, 18.0, 23.0, 29.0, 38.0]
TIMESTEP_FS = 0.5


def _model(name: str):
    from attnforce.checkpoint import SavedModel, load_model
    from attnforce.models import Potential, build_model

    if name == "equiformer":
        return load_model("equiformer")
    embedded = load_model("sake")
    hyperparameters = dict(embedded.hyperparameters, cutoff=5.0)
    torch.manual_seed(0)
    potential = Potential(build_model("sake", hyperparameters), 1.0, embedded.potential.element_shifts)
    metadata = dict(embedded.metadata, cutoff=5.0)
    return SavedModel(potential.eval(), "sake", hyperparameters, metadata)


def _all_pairs_minimum_image(positions: torch.Tensor, edge: float, cutoff: float) -> torch.Tensor:
    """The O(N^2) baseline: every displacement, wrapped to the nearest image of a cubic box."""
    delta = positions.unsqueeze(0) - positions.unsqueeze(1)
    delta = delta - edge * torch.round(delta / edge)
    within = (delta * delta).sum(-1) < cutoff * cutoff
    within.fill_diagonal_(False)
    return torch.nonzero(within).t()


def _median_ms(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _model_alone_ms(saved, atomic_numbers: list[int], positions: torch.Tensor, cell: torch.Tensor) -> tuple:
    """Energy and forces of the model outside OpenMM, ms: the frozen TorchScript module that the TorchForce runs,
    and the eager model, on the same positions (Å) and cell (Å)."""
    from attnforce.export import build_module
    from attnforce.openmm.module import OpenMMModule
    from attnforce.units import nm_per_angstrom

    scripted, _ = build_module(saved, atomic_numbers, periodic=True)
    eager = OpenMMModule(saved.potential, torch.tensor(atomic_numbers), torch.arange(len(atomic_numbers)), True)
    positions_nm, box_nm = positions * nm_per_angstrom, cell * nm_per_angstrom

    def forces_of(module) -> None:
        x = positions_nm.clone().requires_grad_(True)
        torch.autograd.grad(module(x, box_nm), x)

    # TorchScript's profiling executor optimises after two calls: the median of three after one warm-up is optimised.
    return _median_ms(lambda: forces_of(scripted), 3), _median_ms(lambda: forces_of(eager), 1)


def measure_one(model_name: str, edge: float, steps: int, warmup: int, threads: int) -> dict:
    from openmm import unit

    from attnforce.nn import cell_list_edges, radius_edges
    from integrators.md import build_system
    from systems.water import water_box

    torch.set_num_threads(threads)
    molecule = water_box(edge * unit.angstrom)
    saved = _model(model_name)
    cutoff = float(saved.potential.cutoff)
    positions = torch.tensor(molecule.positions, dtype=torch.float32)
    cell = torch.eye(3) * edge
    edges_found = cell_list_edges(positions, cutoff, cell)[0].shape[1]
    cell_list_ms = _median_ms(lambda: cell_list_edges(positions, cutoff, cell), 5)
    all_pairs_ms = _median_ms(lambda: _all_pairs_minimum_image(positions, edge, cutoff), 5)
    assert _all_pairs_minimum_image(positions, edge, cutoff).shape[1] == edges_found
    batch = torch.zeros(len(positions), dtype=torch.long)
    isolated_cell_list_ms = _median_ms(lambda: cell_list_edges(positions, cutoff), 5)
    isolated_all_distances_ms = _median_ms(lambda: radius_edges(positions, batch, cutoff), 5)

    torchscript_ms, eager_ms = _model_alone_ms(saved, molecule.atomic_numbers, positions, cell)

    reset_peak()
    before_mb = resident_mb()
    system = build_system(molecule, saved)  # periodic: the topology has box vectors
    context, integrator = cpu_md_context(system, molecule.positions * unit.angstrom, threads, TIMESTEP_FS)
    integrator.step(warmup)
    start = time.perf_counter()
    integrator.step(steps)
    step_seconds = (time.perf_counter() - start) / steps
    peak = peak_mb()
    return {
        "model": model_name,
        "edge_angstrom": edge,
        "atoms": len(molecule.atomic_numbers),
        "edges": edges_found,
        "ms_per_step": 1000 * step_seconds,
        "ns_per_day": TIMESTEP_FS * 1e-6 * 86400 / step_seconds,
        "cell_list_ms": cell_list_ms,
        "all_pairs_ms": all_pairs_ms,
        "isolated_cell_list_ms": isolated_cell_list_ms,
        "isolated_all_distances_ms": isolated_all_distances_ms,
        "torchscript_ms": torchscript_ms,
        "eager_ms": eager_ms,
        "peak_mb_above_start": peak - before_mb,
    }


def plot(rows: list[dict], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_step, ax_list) = plt.subplots(1, 2, figsize=(11, 4.2))
    models = list(dict.fromkeys(row["model"] for row in rows))
    for model in models:
        mine = [row for row in rows if row["model"] == model]
        ax_step.loglog([row["atoms"] for row in mine], [row["ms_per_step"] for row in mine], "o-", label=model)
    first = [row for row in rows if row["model"] == models[0]]  # both models use a 5 Å cutoff: the same search
    atoms = [row["atoms"] for row in first]
    ax_list.loglog(atoms, [row["cell_list_ms"] for row in first], "o-", label="cell list (in the model)")
    ax_list.loglog(atoms, [row["all_pairs_ms"] for row in first], "s--", label="all pairs, minimum image")
    for axis in (ax_step, ax_list):
        low, high = min(r["atoms"] for r in rows), max(r["atoms"] for r in rows)
        reference = [low, high]
        base = min(r["ms_per_step"] if axis is ax_step else r["cell_list_ms"] for r in rows if r["atoms"] == low)
        axis.loglog(reference, [base, base * high / low], ":", color="grey", label="linear")
        axis.set_xlabel("atoms (water)")
        axis.legend()
    ax_step.set_ylabel("ms per MD step (CPU platform)")
    ax_step.set_title("periodic MD step")
    ax_list.set_ylabel("ms per neighbour list")
    ax_list.set_title("neighbour search, 5 Å cutoff")
    fig.tight_layout()
    fig.savefig(output, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["equiformer", "sake"])
    parser.add_argument("--edges", nargs="+", type=float, default=EDGES_ANGSTROM, help="box edges, Å")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--plot")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "EDGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        row = measure_one(args.one[0], float(args.one[1]), args.steps, args.warmup, args.threads)
        print(json.dumps(row))
        return
    rows = []
    for model in args.models:
        for edge in args.edges:
            command = [sys.executable, "-m", "bench.periodic_scaling", "--one", model, str(edge)]
            command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(f"{model} {rows[-1]['atoms']} atoms: {rows[-1]['ms_per_step']:.1f} ms/step", file=sys.stderr)
    print(f"water boxes from OpenMM's tip3p.pdb, CPU platform, {args.threads} threads, {args.steps} timed steps")
    print(
        "| model | box (Å) | atoms | edges | ms/step | ns/day | peak memory (MB) "
        "| model alone, TorchScript (ms/atom) | eager (ms/atom) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['edge_angstrom']:g} | {row['atoms']} | {row['edges']} | {row['ms_per_step']:.1f} "
            f"| {row['ns_per_day']:.4f} | {row['peak_mb_above_start']:.0f} "
            f"| {row['torchscript_ms'] / row['atoms']:.2f} | {row['eager_ms'] / row['atoms']:.2f} |"
        )
    print()
    print("neighbour search, ms (median of 5; the first model's process)")
    print(
        "| atoms | periodic: cell list | periodic: all pairs | ratio | isolated: cell list | isolated: all distances |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for row in [row for row in rows if row["model"] == rows[0]["model"]]:
        print(
            f"| {row['atoms']} | {row['cell_list_ms']:.2f} | {row['all_pairs_ms']:.2f} "
            f"| {row['all_pairs_ms'] / row['cell_list_ms']:.2f}x | {row['isolated_cell_list_ms']:.2f} "
            f"| {row['isolated_all_distances_ms']:.2f} |"
        )
    if args.json:
        write_json(args.json, {"threads": args.threads, "steps": args.steps, "rows": rows})
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
