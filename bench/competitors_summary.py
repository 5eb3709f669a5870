"""One PNG of the side-by-side benchmarks, drawn from their JSON results.

Panels: test force MAE at an equal training budget (``bench.accuracy_budget``), MD ms/step (``bench.md_compare``)
and energy + forces time against batch size (``bench.model_cost``). Run from the repository root after them::

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

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_accuracy, ax_md, ax_cost) = plt.subplots(1, 3, figsize=(15, 4.2))
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
    ax_md.set_title("MD throughput, TorchForce")
    ax_md.legend()

    for model in dict.fromkeys(row["model"] for row in cost):
        rows = [r for r in cost if r["model"] == model and r["pass"] == "forward + forces"]
        ax_cost.loglog([r["structures"] for r in rows], [r["ms"] for r in rows], "o-", label=model)
    ax_cost.set_xlabel("aspirin structures per call")
    ax_cost.set_ylabel("ms, energy + forces")
    ax_cost.set_title("Equiformer implementations at matched size")
    ax_cost.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
