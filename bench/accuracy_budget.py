"""Accuracy at an equal training budget: our SAKE and Equiformer against TorchMD-Net's TensorNet.

Every model trains from scratch on the same frames through the same loop (:func:`training.loop.run_epochs`): the
split of the embedded SAKE model (800/100/100, seed 0), the same loss (energy weight 20, force weight 1), batch
size 4, Adam with a linear warm-up and a cosine schedule run to the budget, the same wall-clock budget (``--minutes``,
2 threads, one run at a time), and the same energy model around the network (a scale and per-element shifts fitted
on the training set). The best validation epoch is tested on the 100 test frames.

Models, TensorNet at two widths matched in parameter count to our small presets:
- ``sake-small`` (325,053 parameters; learning rate 1e-3, its config's);
- ``equiformer-small`` (265,409; 5e-4, its config's);
- ``tensornet-80`` (310,321; matched to SAKE) and ``tensornet-72`` (253,657; matched to Equiformer), 2 layers,
  32 radial functions, 5 Å cutoff, learning rate 1e-3 (torchmd-net's rMD17 examples use 1e-3 to 4e-4).

Needs the ``bench`` extra. Run from the repository root::

    python -m bench.accuracy_budget --minutes 5 --json bench/results/competitors/accuracy_budget.json
"""

import argparse
import copy
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch

from bench.output import write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "md17"
MOLECULES = {"aspirin": ("rmd17_aspirin_1000.xyz", "meV"), "ethanol": ("rmd17_ethanol_a.xyz", "eV")}
#: name -> (kind, preset or TensorNet width, learning rate)
MODELS = {
    "sake-small": ("ours", "sake-small", 1.0e-3),
    "equiformer-small": ("ours", "equiformer-small", 5.0e-4),
    "tensornet-80": ("tensornet", 80, 1.0e-3),
    "tensornet-72": ("tensornet", 72, 1.0e-3),
}
BASE_CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "sake_aspirin_cpu.yaml"


def experiment(model: str, molecule: str, minutes: float, output: Path):
    """The shared experiment config, for one model and molecule."""
    from training.config import ModelConfig, load_config

    kind, spec, learning_rate = MODELS[model]
    file_name, energy_unit = MOLECULES[molecule]
    config = load_config(BASE_CONFIG)
    training = dataclasses.replace(
        config.training,
        epochs=100000,
        max_minutes=minutes,
        max_cpu_minutes=None,
        learning_rate=learning_rate,
        min_learning_rate=learning_rate / 100,
        threads=2,
        device="cpu",  # a CPU comparison, also on a machine with a GPU
    )
    model_config = ModelConfig(preset=spec) if kind == "ours" else config.model
    data = dataclasses.replace(config.data, path=str(DATA / file_name), energy_unit=energy_unit)
    return dataclasses.replace(config, data=data, model=model_config, training=training, output=str(output))


def train_tensornet(config, width: int) -> dict:
    """TensorNet through the same loop as ours: returns test metrics and the epochs run."""
    from bench.tensornet import TensorNetPotential
    from systems import random_split, read_dataset
    from training.evaluation import error_metrics
    from training.loop import Objective, run_epochs, training_session
    from training.statistics import fit_energy_statistics
    from training.trainer import batch_loss, validation_pass

    frames = read_dataset(config.data.path, config.data.energy_unit)
    train_idx, val_idx, test_idx = random_split(len(frames), config.data.split, config.data.seed)
    train_frames, val_frames, test_frames = (frames.subset(i) for i in (train_idx, val_idx, test_idx))
    best: dict = {}
    with training_session(config.training) as group:
        scale, shifts = fit_energy_statistics(train_frames, config.training.energy_scale)
        potential = TensorNetPotential(width, scale, shifts)

        def save_best(evaluated, weights: dict, extra: dict) -> None:
            best["model"] = copy.deepcopy(evaluated)
            best["model"].load_state_dict(weights)

        def validate(evaluated):
            loss, errors = validation_pass(evaluated, val_frames, config)
            return loss, {f"val_{k}": errors[k] for k in ("energy_mae_mev", "force_mae_mev_per_a")}

        objective = Objective(
            train_size=len(train_frames),
            batch_loss=lambda module, indices: batch_loss(module, train_frames, indices, torch.float32, config),
            validate=validate,
            columns=["val_energy_mae_mev", "val_force_mae_mev_per_a"],
        )
        result = run_epochs(potential, objective, config, save_best, group, False, False)
    test = error_metrics(best["model"], test_frames)
    return {"test": test, "epochs": result.epochs, "parameters": sum(p.numel() for p in potential.parameters())}


def run_one(model: str, molecule: str, minutes: float, output: Path) -> dict:
    """Train one model on one molecule for the budget; its test errors."""
    config = experiment(model, molecule, minutes, output)
    shutil.rmtree(output, ignore_errors=True)  # this benchmark's own run folder: training refuses an earlier run's
    start = time.perf_counter()
    if MODELS[model][0] == "ours":
        from attnforce.checkpoint import load_model
        from training.trainer import train

        result = train(config, progress=False)
        outcome = {
            "test": result.test_metrics,
            "epochs": result.epochs,
            "parameters": sum(p.numel() for p in load_model(result.best_model).potential.parameters()),
        }
    else:
        outcome = train_tensornet(config, MODELS[model][1])
    return {
        "model": model,
        "molecule": molecule,
        "minutes": minutes,
        "wall_minutes": (time.perf_counter() - start) / 60,
        "epochs": outcome["epochs"],
        "parameters": outcome["parameters"],
        "energy_mae_mev": outcome["test"]["energy_mae_mev"],
        "force_mae_mev_per_a": outcome["test"]["force_mae_mev_per_a"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget per run")
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--output", default="runs/accuracy_budget", help="run directories of our models")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    for molecule in args.molecules:
        for model in args.models:
            rows.append(run_one(model, molecule, args.minutes, Path(args.output) / f"{model}_{molecule}"))
            row = rows[-1]
            print(
                f"{molecule} {model}: E {row['energy_mae_mev']:.1f} meV, F {row['force_mae_mev_per_a']:.1f} meV/Å "
                f"({row['epochs']} epochs)",
                file=sys.stderr,
            )
    print(f"test MAE after {args.minutes:g} min of training each (wall clock, 2 threads, one run at a time)")
    print("| molecule | model | parameters | epochs | energy MAE (meV) | force MAE (meV/Å) |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['molecule']} | {row['model']} | {row['parameters']:,} | {row['epochs']} "
            f"| {row['energy_mae_mev']:.1f} | {row['force_mae_mev_per_a']:.1f} |"
        )
    if args.json:
        write_json(args.json, {"minutes": args.minutes, "rows": rows})


if __name__ == "__main__":
    main()
