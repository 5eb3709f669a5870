"""Learning curves: test force MAE against training CPU time, from runs trained with ``test_every: 1`` (the test
errors are logged for the curve only; the saved model is still chosen on validation).

Run from the repository root, after the runs::

    python -m bench.learning_curves runs/curve_sake_small_aspirin_cpu \
        runs/curve_equiformer_small_dot_product_aspirin_cpu --png bench/results/learning_curves.png
"""

import argparse
import csv
from pathlib import Path

MARKS = (1, 2, 5, 10, 15)  # CPU minutes at which the table reads each curve


def read_curve(run: Path) -> list[tuple[float, float, float]]:
    """(CPU minutes, test energy MAE meV, test force MAE meV/Å) of every epoch with test errors."""
    with open(run / "metrics.csv") as handle:
        return [
            (float(r["cpu_s"]) / 60, float(r["test_energy_mae_mev"]), float(r["test_force_mae_mev_per_a"]))
            for r in csv.DictReader(handle)
            if r.get("test_force_mae_mev_per_a")
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--png")
    args = parser.parse_args()
    curves = {run.name: read_curve(run) for run in args.runs}
    print("Test force MAE (meV/Å) of the last epoch finished by each CPU time\n")
    print("| run | epochs | " + " | ".join(f"{m} min" for m in MARKS) + " |")
    print("|---|---:|" + "---:|" * len(MARKS))
    for name, curve in curves.items():
        cells = []
        for mark in MARKS:
            done = [force for minutes, _, force in curve if minutes <= mark]
            cells.append(f"{done[-1]:.1f}" if done else "-")
        print(f"| {name} | {len(curve)} | " + " | ".join(cells) + " |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_force, ax_energy) = plt.subplots(1, 2, figsize=(11, 4))
        for name, curve in curves.items():
            minutes, energy, force = zip(*curve, strict=True)
            ax_force.semilogy(minutes, force, label=name)
            ax_energy.semilogy(minutes, energy, label=name)
        ax_force.set_ylabel("test force MAE (meV/Å)")
        ax_energy.set_ylabel("test energy MAE (meV)")
        for ax in (ax_force, ax_energy):
            ax.set_xlabel("training CPU minutes (1 thread)")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        plt.close(fig)


if __name__ == "__main__":
    main()
