"""Training throughput on this CPU: structures per second of one optimiser step (energy + forces by double
backward, Adam) for the SAKE and Equiformer presets, and of DistributedDataParallel with 2 gloo processes against
1 process on the same cores.

1. ``presets``: each preset with random weights and the aspirin statistics, batches of ``--batch-size`` rMD17
   aspirin frames, ``--steps`` timed steps after 3 warm-up steps, ``--threads`` torch threads, in this process.
2. ``ddp``: ``attnforce train`` of the sake-small preset under ``torchrun --nproc_per_node P`` for P = 1 (with 2
   threads) and P = 2 (1 thread each), the same global batch; throughput from the epochs' wall times (training and
   validation), the first epoch excluded.

Run from the repository root on an idle machine::

    python -m bench.train_throughput --json bench/results/train_throughput.json
"""

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attnforce.models import Potential, build_model, preset
from bench.output import write_json
from systems import read_extxyz
from training.config import DataConfig, ExperimentConfig, TrainingConfig
from training.statistics import fit_average_degree, fit_energy_statistics
from training.trainer import batch_loss

ASPIRIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "md17" / "rmd17_aspirin_1000.xyz"
PRESETS = ["sake-small", "sake-md17", "equiformer-small", "equiformer-small-linear", "equiformer-small-dot-product"]


def preset_throughput(name: str, frames, batch_size: int, steps: int) -> float:
    """Structures per second of training steps of preset ``name``."""
    architecture, hyperparameters = preset(name)
    if "avg_degree" in hyperparameters or architecture == "equiformer":
        hyperparameters = {
            **hyperparameters,
            "avg_degree": fit_average_degree(frames, hyperparameters.get("cutoff", 5.0)),
        }
    scale, shifts = fit_energy_statistics(frames)
    potential = Potential(build_model(architecture, hyperparameters), scale, shifts)
    optimizer = torch.optim.Adam(potential.parameters(), lr=1e-4)
    config = ExperimentConfig(data=DataConfig(path=str(ASPIRIN), energy_unit="meV"), training=TrainingConfig())
    rng = np.random.default_rng(0)

    def one_step():
        loss = batch_loss(potential, frames, rng.choice(len(frames), batch_size, replace=False), torch.float32, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        one_step()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return steps * batch_size / (time.perf_counter() - start)


DDP_CONFIG = """\
data: {{path: {data}, energy_unit: meV, split: [256, 32, 32], seed: 0}}
model: {{preset: sake-small}}
training: {{epochs: 4, batch_size: 8, warmup_epochs: 0, threads: {threads}}}
output: {output}
"""


def ddp_throughput(processes: int, threads: int, workdir: Path) -> float:
    """Training structures per second (epochs 2-4, validation included) of sake-small under torchrun."""
    run = workdir / f"ddp{processes}"
    config = workdir / f"ddp{processes}.yaml"
    config.write_text(DDP_CONFIG.format(data=ASPIRIN, threads=threads, output=run))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    subprocess.run([*launcher, "-m", "attnforce.cli", "train", str(config)], check=True, capture_output=True)
    with open(run / "metrics.csv") as handle:
        wall = [float(row["wall_s"]) for row in csv.DictReader(handle)]
    return 256 * (len(wall) - 1) / (wall[-1] - wall[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = read_extxyz(ASPIRIN, "meV").subset(np.arange(200))
    results = {"presets": {}, "ddp": {}}
    print(f"Training steps, batch {args.batch_size} aspirin frames, {args.threads} threads\n")
    print("| preset | structures/s |\n|---|---:|")
    for name in PRESETS:
        rate = preset_throughput(name, frames, args.batch_size, args.steps)
        results["presets"][name] = rate
        print(f"| {name} | {rate:.1f} |")
    with tempfile.TemporaryDirectory() as workdir:
        for processes, threads in ((1, 2), (2, 1)):
            results["ddp"][f"{processes}x{threads}"] = ddp_throughput(processes, threads, Path(workdir))
    one, two = results["ddp"]["1x2"], results["ddp"]["2x1"]
    print("\nsake-small under torchrun, global batch 8, 256 training frames (epochs 2-4, validation included)\n")
    print("| processes x threads | structures/s | vs 1 process |\n|---|---:|---:|")
    print(f"| 1 x 2 | {one:.1f} | 1.00 |\n| 2 x 1 (gloo) | {two:.1f} | {two / one:.2f} |")
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
