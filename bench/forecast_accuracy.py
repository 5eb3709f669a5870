"""Test errors of learned-integrator training runs, side by side: a Markdown table and validation curves against
CPU time.

Each run directory is one ``attnforce train`` of a ``training/configs/forecast_*.yaml`` config; the test error is
the one stored in its ``best.pt`` (the model of the best validation epoch, evaluated once on the test set).

Run from the repository root, after the runs::

    python -m bench.forecast_accuracy runs/forecast_nbody_sake runs/forecast_nbody_egnn ... \
        --png bench/results/forecast_accuracy.png --json bench/results/forecast_accuracy.json
"""

import argparse
import csv
from pathlib import Path

from bench.output import write_json
from integrators.saved import load_forecaster


def summarise(run: Path) -> dict:
    saved = load_forecaster(run / "best.pt")
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    test = saved.metadata["test_metrics"]
    return {
        "run": run.name,
        "task": saved.task.name,
        "architecture": saved.architecture,
        "parameters": sum(p.numel() for p in saved.model.parameters()),
        "velocity_weight": saved.metadata["training"]["velocity_weight"],
        "cpu_minutes": float(rows[-1]["cpu_s"]) / 60,
        "epochs": len(rows),
        "best_epoch": saved.metadata["epoch"] + 1,
        "test_position_mse": test["position_mse"],
        "test_velocity_mse": test["velocity_mse"],
        "constant_velocity_position_mse": test["constant_velocity_position_mse"],
        "test_samples": test["samples"],
        "curve": [(float(r["cpu_s"]) / 60, float(r["val_position_mse"])) for r in rows],
    }


def plot(summaries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({s["task"] for s in summaries})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for s in (s for s in summaries if s["task"] == task):
            minutes, mse = zip(*s["curve"], strict=True)
            ax.semilogy(minutes, mse, label=f"{s['run']} (test {s['test_position_mse']:.3g})")
        baseline = next(s for s in summaries if s["task"] == task)["constant_velocity_position_mse"]
        ax.axhline(baseline, color="0.5", ls=":", label=f"constant velocity (test {baseline:.3g})")
        ax.set_title(task)
        ax.set_xlabel("CPU minutes (1 thread)")
        ax.set_ylabel("validation position MSE")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--png")
    parser.add_argument("--json")
    args = parser.parse_args()
    summaries = [summarise(run) for run in args.runs]
    print(
        "| run | task | model | parameters | loss | CPU min | epochs | best epoch | test position MSE | "
        "test velocity MSE × horizon² | constant velocity |"
    )
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        loss = "positions" if not s["velocity_weight"] else f"positions + {s['velocity_weight']:g} × velocities"
        print(
            f"| {s['run']} | {s['task']} | {s['architecture']} | {s['parameters']:,} | {loss} | "
            f"{s['cpu_minutes']:.1f} | {s['epochs']} | {s['best_epoch']} | {s['test_position_mse']:.4g} | "
            f"{s['test_velocity_mse']:.4g} | {s['constant_velocity_position_mse']:.4g} |"
        )
    if args.png:
        plot(summaries, Path(args.png))
    if args.json:
        write_json(args.json, [{k: v for k, v in s.items() if k != "curve"} for s in summaries])


if __name__ == "__main__":
    main()
