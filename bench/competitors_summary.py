"""One PNG of the side-by-side benchmarks, drawn from their JSON results.

Panels: test force MAE at an equal training budget (``bench.accuracy_budget``), MD ms/step (``bench.md_compare``),
energy + forces time against batch size (``bench.model_cost``), and the learned integrators' N-body test error
against forecast time (``bench.forecast_accuracy`` and ``bench.forecast_speed`` on the runs of ``bench.all``).
Run from the repository root after them (``python -m bench.all`` runs them all)::

    python -m bench.competitors_summary --output bench/results/competitors/summary.png
"""

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "competitors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="folder of the benchmarks' JSON files")
    parser.add_argument("--output", default=str(RESULTS / "summary.png"))
    args = parser.parse_args()
    results = Path(args.results)
    accuracy = json.loads((results / "accuracy_budget.json").read_text())
    md = json.loads((results / "md_compare.json").read_text())["rows"]
    cost = json.loads((results / "model_cost.json").read_text())["rows"]
    integrator_accuracy = json.loads((results / "integrator_accuracy.json").read_text())
    integrator_speed = json.loads((results / "integrator_speed.json").read_text())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((ax_accuracy, ax_md), (ax_cost, ax_integrator)) = plt.subplots(2, 2, figsize=(12, 8.4))
    molecules = list(dict.fromkeys(row["molecule"] for row in accuracy["rows"]))
    models = list(dict.fromkeys(row["model"] for row in accuracy["rows"]))
    width = 0.8 / len(models)
    for index, model in enumerate(models):
        values = [
            next(r["force_mae_mev_per_a"] for r in accuracy["rows"] if r["model"] == model and r["molecule"] == m)
            for m in molecules
        ]
        ax_accuracy.bar([i + index * width for i in range(len(molecules))], values, width, label=model)
    ax_accuracy.set_xticks([i + 0.4 - width / 2 for i in range(len(molecules))], molecules)
    ax_accuracy.set_ylabel("test force MAE (meV/Å)")
    ax_accuracy.set_title(f"after {accuracy['minutes']:g} min of training each")
    ax_accuracy.legend()

    systems = list(dict.fromkeys(row["system"] for row in md))
    md_models = list(dict.fromkeys(row["model"] for row in md))
    width = 0.8 / len(md_models)
    for index, model in enumerate(md_models):
        values = [next(r["ms_per_step"] for r in md if r["model"] == model and r["system"] == s) for s in systems]
        ax_md.bar([i + index * width for i in range(len(systems))], values, width, label=model)
    ax_md.set_xticks([i + 0.4 - width / 2 for i in range(len(systems))], systems)
    ax_md.set_ylabel("ms per MD step (OpenMM CPU platform)")
    ax_md.set_title("MD throughput: ours TorchForce, TensorNet via openmm-ml")
    ax_md.legend()

    for model in dict.fromkeys(row["model"] for row in cost):
        rows = [r for r in cost if r["model"] == model and r["pass"] == "forward + forces"]
        ax_cost.loglog([r["structures"] for r in rows], [r["ms"] for r in rows], "o-", label=model)
    ax_cost.set_xlabel("aspirin structures per call")
    ax_cost.set_ylabel("ms, energy + forces")
    ax_cost.set_title("Equiformer implementations at matched size")
    ax_cost.legend()
    seconds = {row["method"].split(" (")[0]: row["seconds"] for row in integrator_speed}
    for row in integrator_accuracy:
        label = row["architecture"]
        ax_integrator.scatter(
            seconds[label], row["test_position_mse"], s=60, label=f"{label} ({row['cpu_minutes']:.0f} CPU min)"
        )
    for row in integrator_speed:
        if row["method"].startswith("simulator") and row["position_mse"] > 0:
            ax_integrator.scatter(row["seconds"], row["position_mse"], marker="x", color="0.4")
            ax_integrator.annotate(
                row["method"].replace("simulator, ", ""), (row["seconds"], row["position_mse"]), fontsize=8
            )
    reference = next(row["seconds"] for row in integrator_speed if "(reference)" in row["method"])
    ax_integrator.axvline(reference, color="0.5", ls=":", label="simulator, dt = 0.001 (the reference)")
    ax_integrator.set_xscale("log")
    ax_integrator.set_yscale("log")
    ax_integrator.set_xlabel("s to forecast the 2000 N-body test systems")
    ax_integrator.set_ylabel("test position MSE")
    ax_integrator.set_title("learned integrators, N-body")
    ax_integrator.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
