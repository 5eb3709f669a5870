"""Plot the equal-budget Equiformer ablation (and SAKE): validation force MAE against time and epoch.

Reads the ``metrics.csv`` of each run (by default the copies in ``bench/results/equiformer_ablation/``, written by
``attnforce train training/configs/<run>_aspirin_cpu.yaml`` as ``runs/<run>_aspirin_cpu/metrics.csv``) and writes
one PNG. The four runs of BENCHMARKS.md ran at the same time, one thread each on the 2 cores, so their wall-clock
axes are comparable.

    python -m bench.ablation_plot --output bench/results/equiformer_ablation.png
"""

import argparse
import csv
from pathlib import Path

RUNS = {
    "equiformer_small": "Equiformer, non-linear messages + MLP attention",
    "equiformer_small_linear": "Equiformer, linear messages + MLP attention",
    "equiformer_small_dot_product": "Equiformer, dot-product attention",
    "sake_small_budget": "SAKE (embedded size)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="bench/results/equiformer_ablation", help="folder of <run>.csv files")
    parser.add_argument("--output", default="bench/results/equiformer_ablation.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_epoch) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run, label in RUNS.items():
        with open(Path(args.results) / f"{run}.csv") as handle:
            rows = list(csv.DictReader(handle))
        force = [float(r["val_force_mae_mev_per_a"]) for r in rows]
        ax_time.plot([float(r["wall_s"]) / 60 for r in rows], force, marker=".", label=label)
        ax_epoch.plot([int(r["epoch"]) + 1 for r in rows], force, marker=".", label=label)
    ax_time.set_xlabel("wall-clock minutes (4 runs side by side, 1 thread each on 2 cores)")
    ax_epoch.set_xlabel("epochs")
    ax_time.set_ylabel("validation force MAE (meV/Å)")
    ax_time.set_yscale("log")
    ax_epoch.legend(fontsize=8)
    fig.suptitle("rMD17 aspirin, 800 training frames, 15 CPU-minutes per model")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
