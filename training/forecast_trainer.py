"""Training learned integrators (:mod:`integrators.dynamics`) on a forecasting task (:mod:`systems.forecasting`).

The papers' protocol (EGNN, SAKE): MSE on positions, the model of the epoch with the lowest validation loss kept,
its test error reported. A run directory holds ``config.yaml`` (resolved), ``best.pt`` (a saved learned integrator,
see :mod:`integrators.saved`), ``metrics.csv`` (one row per epoch) and ``learning_curve.png``.
"""

import csv
import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from integrators.dynamics import build_dynamics
from integrators.forecast import step
from integrators.saved import load_forecaster, save_forecaster
from systems.forecasting import ForecastSamples, load_split, load_task
from training.config import ForecastExperimentConfig, dump_config
from training.trainer import DTYPES, _budget_spent, learning_rate_factor

logger = logging.getLogger(__name__)

METRIC_COLUMNS = ["epoch", "wall_s", "cpu_s", "learning_rate", "train_loss", "val_loss", "val_position_mse"]


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


def _loss(model, samples: ForecastSamples, indices: np.ndarray, horizon: float, velocity_weight: float, dtype):
    tensors = [
        torch.as_tensor(a[indices], dtype=dtype)
        for a in (samples.positions, samples.velocities, samples.target_positions, samples.target_velocities)
    ]
    positions, velocities = model(tensors[0], tensors[1], torch.as_tensor(samples.types[indices]))
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


def train_forecaster(config: ForecastExperimentConfig, progress: bool = True) -> ForecastTrainResult:
    """Run one learned-integrator experiment end to end (see the module docstring)."""
    settings = config.training
    if settings.dtype not in DTYPES:
        raise ValueError(f"training.dtype must be one of {sorted(DTYPES)}, got {settings.dtype!r}")
    dtype = DTYPES[settings.dtype]
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)

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
    model = build_dynamics(config.model.architecture, hyperparameters, dtype)
    logger.info("%s: %d parameters", config.model.architecture, sum(p.numel() for p in model.parameters()))

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "best.pt").unlink(missing_ok=True)  # a reused run directory must not hand back an older run's model
    dump_config(config, output / "config.yaml")

    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    min_factor = settings.min_learning_rate / settings.learning_rate
    best_path, metrics_path = output / "best.pt", output / "metrics.csv"
    predicts_velocities = settings.velocity_weight > 0
    metadata = {"training_data": asdict(data), "training": asdict(settings)}

    def save(path: Path, extra: dict) -> None:
        save_forecaster(
            path, model, config.model.architecture, hyperparameters, task, predicts_velocities, {**metadata, **extra}
        )

    best_val = math.inf
    start, start_cpu = time.perf_counter(), time.process_time()
    epochs_run = 0
    with open(metrics_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        bar = tqdm(range(settings.epochs), desc="epochs", unit="epoch", disable=not progress)
        for epoch in bar:
            spent, _ = _budget_spent(settings, time.perf_counter() - start, time.process_time() - start_cpu)
            lr = settings.learning_rate * learning_rate_factor(
                epoch, settings.warmup_epochs, settings.epochs, min_factor, spent
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            order = rng.permutation(len(train_set))
            losses = []
            for first in range(0, len(order), settings.batch_size):
                indices = order[first : first + settings.batch_size]
                loss = _loss(model, train_set, indices, task.horizon, settings.velocity_weight, dtype)
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(f"epoch {epoch}: loss is {loss.item()}; best model kept at {best_path}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())

            model.eval()
            val_loss, val_position_mse = _validation_loss(model, val_set, task.horizon, settings.velocity_weight)
            if not math.isfinite(val_loss):
                raise FloatingPointError(
                    f"epoch {epoch}: validation loss is {val_loss}; best model kept at {best_path}"
                )
            writer.writerow(
                {
                    "epoch": epoch,
                    "wall_s": round(time.perf_counter() - start, 2),
                    "cpu_s": round(time.process_time() - start_cpu, 2),
                    "learning_rate": lr,
                    "train_loss": float(np.mean(losses)),
                    "val_loss": val_loss,
                    "val_position_mse": val_position_mse,
                }
            )
            handle.flush()
            if val_loss < best_val:
                best_val = val_loss
                save(
                    best_path,
                    {"epoch": epoch, "validation_loss": val_loss, "validation_position_mse": val_position_mse},
                )
            bar.set_postfix(val_mse=f"{val_position_mse:.4g}")
            epochs_run = epoch + 1
            spent, budget = _budget_spent(settings, time.perf_counter() - start, time.process_time() - start_cpu)
            if spent >= 1.0:
                logger.info("stopping after %d epochs: the %s budget is spent", epochs_run, budget)
                break

    wall = time.perf_counter() - start
    plot_forecast_learning_curve(metrics_path, output / "learning_curve.png")
    best = load_forecaster(best_path, dtype=dtype)
    test = forecast_metrics(best.model, test_set, task.horizon)
    logger.info(
        "test position MSE %.5g (constant velocity: %.5g) at epoch %d",
        test["position_mse"],
        test["constant_velocity_position_mse"],
        best.metadata["epoch"],
    )
    model.load_state_dict(best.model.state_dict())
    save(
        best_path,
        {
            **{k: best.metadata[k] for k in ("epoch", "validation_loss", "validation_position_mse")},
            "test_metrics": test,
            "epochs_run": epochs_run,
            "wall_seconds": wall,
        },
    )
    return ForecastTrainResult(best_path, test, epochs_run, wall)
