"""Training learned integrators (:mod:`integrators.dynamics`) on a forecasting task (:mod:`systems.forecasting`).

The papers' protocol (EGNN, SAKE): MSE on positions, the model of the epoch with the lowest validation loss kept,
its test error reported. A run directory holds ``config.yaml`` (resolved), ``best.pt`` (a saved learned integrator,
see :mod:`integrators.saved`), ``last.pt`` (for ``attnforce train --resume``), ``metrics.csv`` (one row per epoch)
and ``learning_curve.png``. The epoch loop, resume and DDP are :mod:`training.loop`'s, shared with the energy
trainer.
"""

import copy
import csv
import dataclasses
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from attnforce.checkpoint import DTYPES
from integrators.dynamics import build_dynamics
from integrators.forecast import step
from integrators.saved import load_forecaster, save_forecaster
from systems.forecasting import ForecastSamples, load_split, load_task
from training import distributed
from training.config import ForecastExperimentConfig, check_config
from training.loop import Objective, final_test, run_directory, run_epochs, training_session

logger = logging.getLogger(__name__)

VALIDATION_COLUMNS = ["val_position_mse"]
TEST_COLUMNS = ["test_position_mse"]


@dataclass
class ForecastTrainResult:
    """What a run produced: the best model's path, its test metrics, the epochs run and the wall-clock time."""

    best_model: Path
    test_metrics: dict[str, float]
    epochs: int
    wall_seconds: float


def forecast_metrics(model: torch.nn.Module, samples: ForecastSamples, horizon: float) -> dict[str, float]:
    """Test-style errors of ``model`` on ``samples``: position MSE (the papers' metric, mean over particles and
    coordinates), velocity-times-horizon MSE, and the constant-velocity baseline's position MSE."""
    positions, velocities = step(model, samples.positions, samples.velocities, samples.types)
    constant_velocity = samples.positions + horizon * samples.velocities
    return {
        "position_mse": float(np.mean((positions - samples.target_positions) ** 2)),
        "velocity_mse": float(np.mean(((velocities - samples.target_velocities) * horizon) ** 2)),
        "constant_velocity_position_mse": float(np.mean((constant_velocity - samples.target_positions) ** 2)),
        "samples": len(samples),
    }


def _loss(model, samples: ForecastSamples, indices: np.ndarray, horizon: float, velocity_weight: float, dtype, device):
    tensors = [
        torch.as_tensor(a[indices], dtype=dtype, device=device)
        for a in (samples.positions, samples.velocities, samples.target_positions, samples.target_velocities)
    ]
    positions, velocities = model(tensors[0], tensors[1], torch.as_tensor(samples.types[indices], device=device))
    loss = (positions - tensors[2]).pow(2).mean()
    if velocity_weight:
        loss = loss + velocity_weight * ((velocities - tensors[3]) * horizon).pow(2).mean()
    return loss


def _validation_loss(model, samples: ForecastSamples, horizon: float, velocity_weight: float) -> tuple[float, float]:
    """(validation loss, validation position MSE)."""
    metrics = forecast_metrics(model, samples, horizon)
    return metrics["position_mse"] + velocity_weight * metrics["velocity_mse"], metrics["position_mse"]


def plot_forecast_learning_curve(metrics_csv: Path, output_png: Path) -> None:
    """Training loss and validation loss and position MSE against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv) as handle:
        rows = list(csv.DictReader(handle))
    epoch = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(epoch, [float(r["train_loss"]) for r in rows], label="train loss")
    ax.semilogy(epoch, [float(r["val_loss"]) for r in rows], label="validation loss")
    ax.semilogy(epoch, [float(r["val_position_mse"]) for r in rows], "--", label="validation position MSE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("squared length units")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_png, dpi=120)
    plt.close(fig)


def train_forecaster(
    config: ForecastExperimentConfig, progress: bool = True, resume: bool = False
) -> ForecastTrainResult:
    """Run one learned-integrator experiment end to end (see the module docstring); ``resume`` and torchrun as
    for :func:`training.trainer.train`."""
    check_config(config)
    with training_session(config.training) as group, run_directory(config.output, resume, group):
        return _train_forecaster(config, progress and group.is_main, resume, group)


def _train_forecaster(
    config: ForecastExperimentConfig, progress: bool, resume: bool, group: distributed.ProcessGroup
) -> ForecastTrainResult:
    settings = config.training
    dtype = DTYPES[settings.dtype]

    # Everything that can fail on bad input happens before the run directory is written.
    data = config.data
    task = load_task(data.task, data.data_dir)
    train_set = load_split(data.task, "train", data.data_dir, data.train_limit)
    val_set = load_split(data.task, "validation", data.data_dir)
    test_set = load_split(data.task, "test", data.data_dir)
    logger.info(
        "task %s: %d train, %d validation, %d test samples", task.name, len(train_set), len(val_set), len(test_set)
    )
    hyperparameters = {**config.model.hyperparameters, "num_types": task.num_types, "horizon": task.horizon}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, hyperparameters=hyperparameters))
    model = build_dynamics(config.model.architecture, hyperparameters, dtype).to(group.device)
    logger.info(
        "%s: %d parameters, training on %s",
        config.model.architecture,
        sum(p.numel() for p in model.parameters()),
        group.device,
    )

    best_path = Path(config.output) / "best.pt"
    predicts_velocities = settings.velocity_weight > 0
    metadata = {"training_data": asdict(data), "training": asdict(settings)}

    def save(path: Path, trained: torch.nn.Module, extra: dict) -> None:
        save_forecaster(
            path, trained, config.model.architecture, hyperparameters, task, predicts_velocities, {**metadata, **extra}
        )

    def save_best(evaluated: torch.nn.Module, weights: dict, extra: dict) -> None:
        best_model = copy.deepcopy(evaluated).cpu()
        best_model.load_state_dict(weights)
        save(best_path, best_model, extra)

    def validate(evaluated: torch.nn.Module) -> tuple[float, dict[str, float]]:
        loss, position_mse = _validation_loss(evaluated, val_set, task.horizon, settings.velocity_weight)
        return loss, {"val_position_mse": position_mse}

    objective = Objective(
        train_size=len(train_set),
        batch_loss=lambda module, indices: _loss(
            module, train_set, indices, task.horizon, settings.velocity_weight, dtype, group.device
        ),
        validate=validate,
        columns=VALIDATION_COLUMNS + TEST_COLUMNS,
        test=lambda evaluated: {
            "test_position_mse": forecast_metrics(evaluated, test_set, task.horizon)["position_mse"]
        },
        unused_parameters=True,  # EGNN's last layer computes features that nothing reads
    )
    result = run_epochs(model, objective, config, save_best, group, resume, progress)

    def test_and_store() -> dict:
        output = Path(config.output)
        plot_forecast_learning_curve(output / "metrics.csv", output / "learning_curve.png")
        best = load_forecaster(best_path, dtype=dtype)
        test = forecast_metrics(best.model.to(group.device), test_set, task.horizon)
        logger.info(
            "test position MSE %.5g (constant velocity: %.5g) at epoch %d",
            test["position_mse"],
            test["constant_velocity_position_mse"],
            best.metadata["epoch"],
        )
        save(
            best_path,
            best.model.cpu(),
            {
                **{k: best.metadata[k] for k in ("epoch", "validation_loss", "validation_metrics")},
                "test_metrics": test,
                "epochs_run": result.epochs,
                "wall_seconds": result.wall_seconds,
            },
        )
        return test

    test = final_test(group, test_and_store, lambda: load_forecaster(best_path, dtype=dtype).metadata["test_metrics"])
    return ForecastTrainResult(best_path, test, result.epochs, result.wall_seconds)
