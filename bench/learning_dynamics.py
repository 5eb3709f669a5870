"""Learning dynamics of SAKE and the small Equiformer: which training levers buy accuracy per CPU-minute, measured
over seeds.

Every run trains ``sake-small`` (the embedded model's size) or ``equiformer-small`` (``--model``) from scratch on one
molecule through the product's own trainer (:func:`training.trainer.train`): the embedded model's split
(800/100/100, data seed 0), a CPU-time budget
(``--cpu-minutes``, 1 thread per run; ``--jobs`` runs side by side, one per core), a cosine schedule run to that
budget, and the test errors logged after every epoch (``test_every: 1``; the test set chooses nothing). A run's
force MAE "after t CPU-minutes" is the test force MAE of the last epoch finished within t CPU-minutes of that run
(so the 5-minute figure of a 15-minute run is read off its learning curve, not from a run scheduled to end there).

``baseline`` is ``bench.accuracy_budget``'s protocol as the study began (Adam, 1e-3 for SAKE and 5e-4 for the
Equiformer, batch 4, MSE, energy weight 20, force weight 1, energy scale = the training energies' standard deviation,
SAKE over all pairs), fixed in :data:`PROTOCOLS` whatever the configs say since; every other
setting changes one thing (learning rates as factors of the model's), except those whose name joins two (single
levers that helped, tried together). A setting of hyperparameters the model does not have (SAKE's aggregation, say),
or whose hyperparameters it already has (the Equiformer's 5 Å cutoff), is not run for it.
Seeds vary the initialisation and the batch order. Each run writes its own JSON under ``--results`` and a finished
run is not run again, so a study can continue over several sessions. ``--report`` prints the table of mean and
spread over seeds.

Run from the repository root (needs ``../shared/data``)::

    python -m bench.learning_dynamics --model sake-small --molecules aspirin --seeds 0 1 2 --cpu-minutes 15 --jobs 2
    python -m bench.learning_dynamics --report
"""

import argparse
import csv
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.output import write_json

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "md17"
MOLECULES = {"aspirin": ("rmd17_aspirin_1000.xyz", "meV"), "ethanol": ("rmd17_ethanol_a.xyz", "eV")}
#: model -> its base config (the embedded SAKE's, and the Equiformer ablation's)
BASE_CONFIGS = {
    "sake-small": REPO / "training" / "configs" / "sake_aspirin_cpu.yaml",
    "equiformer-small": REPO / "training" / "configs" / "equiformer_small_aspirin_cpu.yaml",
}
#: model -> (training, model hyperparameter) values of the study's ``baseline``, fixed here so that a config changed
#: by what the study found (the embedded SAKE's, say) leaves every setting's meaning and the earlier runs as they were.
PROTOCOLS: dict[str, tuple[dict, dict]] = {
    "sake-small": (
        {
            "learning_rate": 1.0e-3,
            "min_learning_rate": 1.0e-5,
            "warmup_epochs": 2,
            "batch_size": 4,
            "energy_weight": 20.0,
        },
        {"cutoff": None},
    ),
    "equiformer-small": (
        {
            "learning_rate": 5.0e-4,
            "min_learning_rate": 5.0e-6,
            "warmup_epochs": 2,
            "batch_size": 4,
            "energy_weight": 20.0,
        },
        {},
    ),
}
RESULTS = REPO / "bench" / "results" / "learning_dynamics"
#: CPU-minute marks at which the table reads each run's learning curve.
MARKS = (5.0, 15.0)

#: setting -> (what it changes, training overrides, model hyperparameter overrides)
SETTINGS: dict[str, tuple[str, dict, dict]] = {
    "baseline": ("bench.accuracy_budget's protocol", {}, {}),
    "force_rms_scale": (
        "energy scale = RMS of the training forces x 1 Å (NequIP, MACE)",
        {"energy_scale": "force_rms"},
        {},
    ),
    "mean_aggregation": (
        "spatial vectors averaged over the neighbourhood (the official layer)",
        {},
        {"aggregation": "mean"},
    ),
    "official_layer": (
        "no distance attention, mean aggregation: the official layer",
        {},
        {"distance_attention": False, "aggregation": "mean"},
    ),
    "cutoff_5A": ("a 5 Å cutoff with a cosine envelope instead of all pairs (locality)", {}, {"cutoff": 5.0}),
    "amsgrad": ("AMSGrad (NequIP)", {"amsgrad": True}, {}),
    "lr_x3": ("learning rate x3", {"learning_rate_factor": 3.0}, {}),
    "lr_x0.3": ("learning rate x0.3", {"learning_rate_factor": 0.3}, {}),
    "lr_x10": ("learning rate x10", {"learning_rate_factor": 10.0}, {}),
    "cutoff_5A_lr_x3": (
        "a 5 Å cutoff and learning rate x3 (two single levers that helped, together)",
        {"learning_rate_factor": 3.0},
        {"cutoff": 5.0},
    ),
    "cutoff_5A_lr_x3_energy_weight_1": (
        "a 5 Å cutoff, learning rate x3 and energy weight 1 (the three single levers that helped, together)",
        {"learning_rate_factor": 3.0, "energy_weight": 1.0},
        {"cutoff": 5.0},
    ),
    "no_warmup": ("no warm-up epochs", {"warmup_epochs": 0}, {}),
    "batch_1": ("batch size 1", {"batch_size": 1}, {}),
    "batch_16": ("batch size 16", {"batch_size": 16}, {}),
    "ema_0.99": ("EMA of the weights, decay 0.99", {"ema_decay": 0.99}, {}),
    "loss_mae": ("MAE loss, same weights", {"loss": "mae"}, {}),
    "loss_sake_paper": (
        "the SAKE paper's loss: force MAE + 0.001 energy MAE",
        {"loss": "mae", "energy_weight": 0.001},
        {},
    ),
    "loss_l2mae": ("L2-MAE loss (Equiformer's)", {"loss": "l2mae"}, {}),
    "energy_weight_1": ("energy weight 1 (forces dominate)", {"energy_weight": 1.0}, {}),
}


def experiment(
    setting: str,
    molecule: str,
    seed: int,
    cpu_minutes: float,
    output: Path,
    data: Path = DATA,
    model: str = "sake-small",
):
    """The run's experiment config: the model's base config with the budget, the seed and the setting."""
    from training.config import load_config

    _, training_overrides, model_overrides = SETTINGS[setting]
    protocol_training, protocol_model = PROTOCOLS[model]
    training_overrides = {**protocol_training, **training_overrides}
    model_overrides = {**protocol_model, **model_overrides}
    file_name, energy_unit = MOLECULES[molecule]
    config = load_config(BASE_CONFIGS[model])
    factor = training_overrides.pop("learning_rate_factor", 1.0)
    training_overrides["learning_rate"] *= factor
    training_overrides["min_learning_rate"] *= factor
    training = dataclasses.replace(
        config.training,
        epochs=100000,
        max_minutes=None,
        max_cpu_minutes=cpu_minutes,
        threads=1,
        device="cpu",
        seed=seed,
        test_every=1,
        tensorboard=False,
        **training_overrides,
    )
    model = dataclasses.replace(config.model, hyperparameters={**config.model.hyperparameters, **model_overrides})
    data_config = dataclasses.replace(config.data, path=str(data / file_name), energy_unit=energy_unit)
    return dataclasses.replace(config, data=data_config, model=model, training=training, output=str(output))


def applies(setting: str, model: str) -> bool:
    """Whether ``setting`` changes ``model``: its architecture has every hyperparameter the setting sets, and one
    of them differs from the model's (the Equiformer's cutoff is 5 Å already)."""
    import inspect

    from attnforce.models import ARCHITECTURES, preset

    architecture, hyperparameters = preset(model)
    parameters = inspect.signature(ARCHITECTURES[architecture]).parameters
    overrides = SETTINGS[setting][2]
    if not set(overrides) <= set(parameters):
        return False
    return not overrides or any(hyperparameters.get(k, parameters[k].default) != v for k, v in overrides.items())


def result_path(results: Path, model: str, molecule: str, setting: str, seed: int) -> Path:
    return results / model / molecule / f"{setting}_seed{seed}.json"


def read_curve(run: Path) -> list[dict]:
    """Per epoch: CPU minutes and test errors (meV, meV/Å)."""
    with open(run / "metrics.csv") as handle:
        return [
            {
                "cpu_minutes": float(row["cpu_s"]) / 60,
                "energy_mae_mev": float(row["test_energy_mae_mev"]),
                "force_mae_mev_per_a": float(row["test_force_mae_mev_per_a"]),
            }
            for row in csv.DictReader(handle)
            if row.get("test_force_mae_mev_per_a")
        ]


def at_mark(curve: list[dict], minutes: float, key: str = "force_mae_mev_per_a") -> float | None:
    """``key`` of the last epoch finished within ``minutes`` CPU-minutes (None before the first)."""
    done = [point[key] for point in curve if point["cpu_minutes"] <= minutes]
    return done[-1] if done else None


def run_one(
    model: str, setting: str, molecule: str, seed: int, cpu_minutes: float, runs: Path, results: Path, data: Path
) -> dict:
    """Train one run and write its JSON (the curve, the marks and the best-validation model's test errors)."""
    import shutil

    from training.trainer import train

    output = runs / model / molecule / f"{setting}_seed{seed}"
    shutil.rmtree(output, ignore_errors=True)  # this study's own scratch folder: an unfinished run starts again
    result = train(experiment(setting, molecule, seed, cpu_minutes, output, data, model), progress=False)
    curve = read_curve(output)
    record = {
        "model": model,
        "setting": setting,
        "molecule": molecule,
        "seed": seed,
        "cpu_minutes": cpu_minutes,
        "epochs": result.epochs,
        "marks": {f"{mark:g}": at_mark(curve, mark) for mark in MARKS if mark <= cpu_minutes},
        "best_validation_test": result.test_metrics,
        "curve": curve,
    }
    write_json(result_path(results, model, molecule, setting, seed), record)
    return record


def report(results: Path) -> str:
    """The Markdown tables: per model, molecule and setting, test force MAE at each mark, mean and spread over
    seeds."""
    lines = []
    for model, molecule in itertools.product(BASE_CONFIGS, MOLECULES):
        records: dict[str, list[dict]] = {}
        for path in sorted((results / model / molecule).glob("*.json")):
            record = json.loads(path.read_text())
            records.setdefault(record["setting"], []).append(record)
        if not records:
            continue
        base = {mark: _mean(records.get("baseline", []), mark) for mark in map(str, map(_g, MARKS))}
        lines += [
            f"**{model} on {molecule}**: test force MAE (meV/Å) after t CPU-minutes, mean ± standard deviation over "
            "seeds (ratio to baseline)",
            "",
            "| setting | what changes | seeds | epochs | " + " | ".join(f"{_g(m)} min" for m in MARKS) + " |",
            "|---|---|---:|---:|" + "---:|" * len(MARKS),
        ]
        for setting in SETTINGS:
            runs = records.get(setting)
            if not runs:
                continue
            cells = []
            for mark in map(str, map(_g, MARKS)):
                values = [r["marks"][mark] for r in runs if r["marks"].get(mark) is not None]
                if not values:
                    cells.append("-")
                    continue
                spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else " (1 seed)"
                ratio = f" ({statistics.fmean(values) / base[mark]:.2f}x)" if base.get(mark) else ""
                cells.append(f"{statistics.fmean(values):.1f}{spread}{ratio}")
            epochs = statistics.fmean(r["epochs"] for r in runs)
            lines.append(
                f"| {setting} | {SETTINGS[setting][0]} | {len(runs)} | {epochs:.0f} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def _g(mark: float) -> str:
    return f"{mark:g}"


def _mean(runs: list[dict], mark: str) -> float | None:
    values = [r["marks"][mark] for r in runs if r["marks"].get(mark) is not None]
    return statistics.fmean(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sake-small", choices=list(BASE_CONFIGS))
    parser.add_argument("--molecules", nargs="+", default=["aspirin"], choices=list(MOLECULES))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cpu-minutes", type=float, default=15.0, help="CPU-time budget of each run")
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (one thread each)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "learning_dynamics", help="scratch run folders")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the rMD17 files")
    parser.add_argument("--report", action="store_true", help="print the table of the finished runs and stop")
    parser.add_argument("--one", nargs=3, metavar=("SETTING", "MOLECULE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        print(report(args.results))
        return
    if args.one:
        setting, molecule, seed = args.one
        run_one(args.model, setting, molecule, int(seed), args.cpu_minutes, args.runs, args.results, args.data)
        return
    # Seeds outermost: a study cut short still has every setting at the first seeds.
    pending = [
        (setting, molecule, seed)
        for seed in args.seeds
        for molecule in args.molecules
        for setting in args.settings
        if applies(setting, args.model) and not result_path(args.results, args.model, molecule, setting, seed).is_file()
    ]
    print(f"{len(pending)} runs to go of {args.cpu_minutes:g} CPU-minutes, {args.jobs} at a time", file=sys.stderr)
    running: list[subprocess.Popen] = []
    for setting, molecule, seed in pending:
        while len(running) >= args.jobs:
            time.sleep(2.0)
            running = [p for p in running if p.poll() is None]
        command = [sys.executable, "-m", "bench.learning_dynamics", "--model", args.model, "--one", setting, molecule]
        command += [str(seed)]
        command += ["--cpu-minutes", str(args.cpu_minutes), "--runs", str(args.runs), "--results", str(args.results)]
        command += ["--data", str(args.data)]
        print(f"start {setting} {molecule} seed {seed}", file=sys.stderr)
        running.append(subprocess.Popen(command, cwd=REPO))
    for process in running:
        process.wait()
    print(report(args.results))


if __name__ == "__main__":
    main()
