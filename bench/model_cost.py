"""Model cost side by side: attnforce's Equiformer against the community ``equiformer-pytorch`` at a matched size.

Both models see the same rMD17 aspirin structures, 1, 8 or 64 at a time, and both are e3nn-style equivariant graph
attention transformers with l <= 1 features, 3 blocks, 4 heads, MLP attention (the Equiformer paper's) and a 5 Å
radius:
- ours: the ``equiformer-small`` preset;
- ``equiformer-pytorch`` 0.5.4: ``dim=(36, 9)``, ``dim_head=(12, 3)``, ``heads=(4, 4)``, ``radial_hidden_dim=16``,
  ``depth=3``, ``l2_dist_attention=False``, the nearest in parameter count of the sizes tried (both counts are
  printed).

Weights are untrained (cost does not depend on them). The energy of a structure is the sum of per-atom scalars;
"forward + forces" adds ``-dE/dx`` by autograd, which is what MD needs. Times are the median of ``--rounds``
rounds, the two models taking turns; peak memory is the peak resident set of a fresh process that builds the model
and runs one forward + forces, above what the process held before.

Needs the ``bench`` extra (``pip install -e ".[bench]"``). Run from the repository root::

    python -m bench.model_cost --json bench/results/competitors/model_cost.json
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from bench.memory import peak_mb, reset_peak, resident_mb
from bench.output import write_json
from bench.timing import interleaved_medians

ASPIRIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "md17" / "rmd17_aspirin_1000.xyz"
BATCHES = [1, 8, 64]
MODELS = ["attnforce-equiformer", "equiformer-pytorch"]
EQUIFORMER_PYTORCH = dict(
    dim=(36, 9),
    dim_head=(12, 3),
    heads=(4, 4),
    radial_hidden_dim=16,
    depth=3,
    num_degrees=2,
    valid_radius=5.0,
    reduce_dim_out=True,
    attend_self=True,
    l2_dist_attention=False,
)


class CommunityEquiformer(torch.nn.Module):
    """``equiformer-pytorch`` as an energy model: atoms as tokens, energy = sum of the per-atom type-0 outputs."""

    def __init__(self, elements: list[int]):
        super().__init__()
        from equiformer_pytorch import Equiformer

        self.token = {z: i for i, z in enumerate(elements)}
        self.network = Equiformer(num_tokens=len(elements), **EQUIFORMER_PYTORCH)

    def energy(self, positions: torch.Tensor, atomic_numbers: list[int]) -> torch.Tensor:
        """(B, n, 3) Å -> (B,)."""
        tokens = torch.tensor([self.token[z] for z in atomic_numbers]).expand(positions.shape[0], -1)
        mask = torch.ones(tokens.shape, dtype=torch.bool)
        return self.network(tokens, positions, mask).type0.sum(-1)


def _build(name: str, elements: list[int]):
    if name == "equiformer-pytorch":
        torch.manual_seed(0)
        return CommunityEquiformer(elements).eval()
    from attnforce.models import Potential, build_model
    from attnforce.models.presets import PRESETS

    architecture, hyperparameters = PRESETS["equiformer-small"]
    torch.manual_seed(0)
    model = build_model(architecture, dict(hyperparameters, avg_degree=14.0))
    return Potential(model, 1.0, torch.zeros(119, dtype=torch.float64)).eval()


def _runner(name: str, model, positions: torch.Tensor, atomic_numbers: list[int], forces: bool):
    """A function running one evaluation of ``positions`` (B, n, 3)."""
    batch_size, atoms = positions.shape[:2]
    if name == "equiformer-pytorch":

        def run():
            x = positions.clone().requires_grad_(forces)
            energy = model.energy(x, atomic_numbers)
            if forces:
                torch.autograd.grad(energy.sum(), x)
            return energy

        return run
    numbers = torch.tensor(atomic_numbers).repeat(batch_size)
    batch = torch.arange(batch_size).repeat_interleave(atoms)
    flat = positions.reshape(-1, 3)

    def run():
        if forces:
            return model(flat, numbers, batch, batch_size)
        with torch.no_grad():
            return model.energy(flat, numbers, batch, batch_size)

    return run


def _structures(batch_size: int) -> tuple[torch.Tensor, list[int]]:
    from systems import read_dataset

    frames = read_dataset(ASPIRIN, "kcal/mol")
    positions = torch.tensor(frames.positions[:batch_size], dtype=torch.float32)
    return positions, [int(z) for z in frames.atomic_numbers]


def peak_memory(name: str, batch_size: int) -> float:
    """MB above the start of a fresh process: build the model, one forward + forces."""
    positions, numbers = _structures(batch_size)
    reset_peak()
    before = resident_mb()
    model = _build(name, sorted(set(numbers)))
    _runner(name, model, positions, numbers, forces=True)()
    return peak_mb() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", nargs="+", type=int, default=BATCHES)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--memory", nargs=2, metavar=("MODEL", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory:
        print(json.dumps({"peak_mb": peak_memory(args.memory[0], int(args.memory[1]))}))
        return
    positions, numbers = _structures(max(args.batches))
    models = {name: _build(name, sorted(set(numbers))) for name in MODELS}
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    rows = []
    for batch_size in args.batches:
        for forces in (False, True):
            runners = {
                name: _runner(name, model, positions[:batch_size], numbers, forces) for name, model in models.items()
            }
            for run in runners.values():
                run()  # warm-up
            medians = interleaved_medians(runners, args.rounds)
            for name in MODELS:
                rows.append(
                    {
                        "model": name,
                        "parameters": parameters[name],
                        "structures": batch_size,
                        "pass": "forward + forces" if forces else "forward",
                        "ms": 1000 * medians[name],
                    }
                )
            print(f"{batch_size} structures, forces={forces}: done", file=sys.stderr)
    for batch_size in args.batches:
        for name in MODELS:
            command = [sys.executable, "-m", "bench.model_cost", "--memory", name, str(batch_size)]
            command += ["--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            peak = json.loads(output.strip().splitlines()[-1])["peak_mb"]
            for row in rows:
                if row["model"] == name and row["structures"] == batch_size:
                    row["peak_mb"] = peak
    print(f"rMD17 aspirin (21 atoms), CPU, {args.threads} threads, median of {args.rounds} interleaved rounds")
    print("| structures | pass | attnforce Equiformer (ms) | equiformer-pytorch (ms) | ours faster by |")
    print("|---:|---|---:|---:|---:|")
    for batch_size in args.batches:
        for kind in ("forward", "forward + forces"):
            ours, theirs = (
                next(r for r in rows if r["model"] == m and r["structures"] == batch_size and r["pass"] == kind)
                for m in MODELS
            )
            print(
                f"| {batch_size} | {kind} | {ours['ms']:.1f} | {theirs['ms']:.1f} | {theirs['ms'] / ours['ms']:.2f}x |"
            )
    print()
    print("| structures | attnforce Equiformer peak MB | equiformer-pytorch peak MB | ratio |")
    print("|---:|---:|---:|---:|")
    for batch_size in args.batches:
        ours, theirs = (next(r for r in rows if r["model"] == m and r["structures"] == batch_size) for m in MODELS)
        print(
            f"| {batch_size} | {ours['peak_mb']:.0f} | {theirs['peak_mb']:.0f} | "
            f"{theirs['peak_mb'] / ours['peak_mb']:.2f}x |"
        )
    print()
    print(f"parameters: {parameters}")
    if args.json:
        write_json(args.json, {"threads": args.threads, "rounds": args.rounds, "parameters": parameters, "rows": rows})


if __name__ == "__main__":
    main()
