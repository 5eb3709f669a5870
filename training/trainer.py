"""Energy + force training of a :class:`~attnforce.models.Potential` on MD17-style frames.

A run directory holds ``config.yaml`` (resolved), ``best.pt`` (best validation loss, a saved model),
``metrics.csv`` (one row per epoch) and ``learning_curve.png``. The test set is evaluated once, on the best model,
and its errors are stored in the saved model's metadata.
"""

import csv
import dataclasses
import inspect
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from attnforce import keys
from attnforce.checkpoint import load_model, save_model
from attnforce.models import ARCHITECTURES, Potential, build_model
from systems import Frames, collate, random_split, read_dataset
from training.config import ExperimentConfig, dump_config
from training.evaluation import error_metrics, metrics, predict
from training.losses import energy_force_loss
from training.statistics import fit_average_degree, fit_energy_statistics

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
METRIC_COLUMNS = [
    "epoch",
    "wall_s",
    "learning_rate",
    "train_loss",
    "val_loss",
    "val_energy_mae_mev",
    "val_force_mae_mev_per_a",
]


@dataclass
class TrainResult:
    """What a run produced: the best model's path, its test errors and the number of epochs run."""

    best_model: Path
    test_metrics: dict[str, float]
    epochs: int
    wall_seconds: float


def learning_rate_factor(
    epoch: int, warmup_epochs: int, epochs: int, min_factor: float, time_fraction: float = 0.0
) -> float:
    """Linear warm-up over ``warmup_epochs``, then a cosine from 1 to ``min_factor``.

    The cosine's progress is the larger of the fraction of epochs done and ``time_fraction``, the fraction of a
    time budget spent, so a run stopped by its budget still ends at the low learning rate.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    progress = max((epoch - warmup_epochs) / max(1, epochs - warmup_epochs), time_fraction)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _budget_spent(settings, wall_seconds: float, cpu_seconds: float) -> tuple[float, str]:
    """The largest fraction spent of the wall-clock and CPU-time budgets (0 without budgets), and its name."""
    spent, name = 0.0, ""
    if settings.max_minutes is not None:
        spent, name = wall_seconds / (60 * settings.max_minutes), f"{settings.max_minutes}-minute wall-clock"
    if settings.max_cpu_minutes is not None and cpu_seconds / (60 * settings.max_cpu_minutes) > spent:
        spent, name = cpu_seconds / (60 * settings.max_cpu_minutes), f"{settings.max_cpu_minutes}-minute CPU-time"
    return spent, name


def _fit_model_statistics(model_config, train_frames: Frames):
    """Fill the hyperparameters that are fitted on the training set (Equiformer's ``avg_degree``)."""
    hyperparameters = dict(model_config.hyperparameters)
    architecture = ARCHITECTURES.get(model_config.architecture)
    accepts = inspect.signature(architecture).parameters if architecture is not None else {}
    if "avg_degree" in accepts and hyperparameters.get("avg_degree") is None:
        cutoff = hyperparameters.get("cutoff", accepts["cutoff"].default)
        hyperparameters["avg_degree"] = fit_average_degree(train_frames, cutoff)
        logger.info("mean number of neighbours within %.2f Å: %.3f", cutoff, hyperparameters["avg_degree"])
    return dataclasses.replace(model_config, hyperparameters=hyperparameters)


def _batch_loss(potential: Potential, frames: Frames, indices: np.ndarray, dtype, config) -> torch.Tensor:
    """The training loss of one batch, differentiable through the forces."""
    batch = collate(frames, indices, dtype)
    energy, forces = potential(
        batch[keys.POSITIONS], batch[keys.ATOMIC_NUMBERS], batch[keys.BATCH], len(indices), create_graph=True
    )
    return energy_force_loss(
        energy,
        forces,
        batch[keys.ENERGY],
        batch[keys.FORCES],
        batch[keys.NUM_ATOMS],
        config.training.energy_weight,
        config.training.force_weight,
    )


def _validate(potential: Potential, frames: Frames, config: ExperimentConfig) -> tuple[float, dict[str, float]]:
    """Validation loss (the training loss over all frames) and error metrics, from one pass of predictions."""
    energies, forces = predict(potential, frames)
    loss = energy_force_loss(
        torch.as_tensor(energies),
        torch.as_tensor(forces.reshape(-1, 3)),
        torch.as_tensor(frames.energies),
        torch.as_tensor(frames.forces.reshape(-1, 3)),
        torch.full((len(frames),), len(frames.atomic_numbers)),
        config.training.energy_weight,
        config.training.force_weight,
    )
    return loss.item(), metrics(energies, forces, frames)


def plot_learning_curve(metrics_csv: Path, output_png: Path) -> None:
    """Training and validation loss, and validation force MAE, against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv) as handle:
        rows = list(csv.DictReader(handle))
    epoch = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_mae) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.semilogy(epoch, [float(r["train_loss"]) for r in rows], label="train")
    ax_loss.semilogy(epoch, [float(r["val_loss"]) for r in rows], label="validation")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (eV², eV²/Å²)")
    ax_loss.legend()
    ax_mae.semilogy(epoch, [float(r["val_force_mae_mev_per_a"]) for r in rows], color="C2")
    ax_mae.set_xlabel("epoch")
    ax_mae.set_ylabel("validation force MAE (meV/Å)")
    fig.tight_layout()
    fig.savefig(output_png, dpi=120)
    plt.close(fig)


def train(config: ExperimentConfig, progress: bool = True) -> TrainResult:
    """Run one experiment end to end; see the module docstring for what is written."""
    settings = config.training
    if settings.dtype not in DTYPES:
        raise ValueError(f"training.dtype must be one of {sorted(DTYPES)}, got {settings.dtype!r}")
    dtype = DTYPES[settings.dtype]
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)

    # Everything that can fail on bad input happens before the run directory is written.
    frames = read_dataset(config.data.path, config.data.energy_unit)
    train_idx, val_idx, test_idx = random_split(len(frames), config.data.split, config.data.seed)
    train_frames, val_frames, test_frames = (frames.subset(i) for i in (train_idx, val_idx, test_idx))
    logger.info(
        "data %s: %d train, %d validation, %d test frames", frames.source, *map(len, (train_idx, val_idx, test_idx))
    )
    scale, shifts = fit_energy_statistics(train_frames)
    config = dataclasses.replace(config, model=_fit_model_statistics(config.model.resolved(), train_frames))
    try:
        model = build_model(config.model.architecture, config.model.hyperparameters)
    except TypeError as error:
        raise ValueError(f"model.hyperparameters: {error}") from None
    potential = Potential(model, scale, shifts).to(dtype)
    logger.info("%s: %d parameters", config.model.architecture, sum(p.numel() for p in potential.parameters()))

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "best.pt").unlink(missing_ok=True)  # a reused run directory must not hand back an older run's model
    dump_config(config, output / "config.yaml")

    optimizer = torch.optim.Adam(potential.parameters(), lr=settings.learning_rate)
    min_factor = settings.min_learning_rate / settings.learning_rate
    best_path, metrics_path = output / "best.pt", output / "metrics.csv"
    metadata = {
        "training_data": str(config.data.path),
        "energy_unit_of_data": config.data.energy_unit,
        "split": {"sizes": list(config.data.split), "seed": config.data.seed},
        "training": asdict(settings),
    }

    best_val = math.inf
    start = time.perf_counter()
    start_cpu = time.process_time()
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
            potential.train()
            order = rng.permutation(len(train_frames))
            losses = []
            for first in range(0, len(order), settings.batch_size):
                loss = _batch_loss(potential, train_frames, order[first : first + settings.batch_size], dtype, config)
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(f"epoch {epoch}: loss is {loss.item()}; best model kept at {best_path}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())

            potential.eval()
            val_loss, val = _validate(potential, val_frames, config)
            row = {
                "epoch": epoch,
                "wall_s": round(time.perf_counter() - start, 2),
                "learning_rate": lr,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_energy_mae_mev": val["energy_mae_mev"],
                "val_force_mae_mev_per_a": val["force_mae_mev_per_a"],
            }
            writer.writerow(row)
            handle.flush()
            if val_loss < best_val:
                best_val = val_loss
                save_model(
                    best_path,
                    potential,
                    config.model.architecture,
                    config.model.hyperparameters,
                    frames.atomic_numbers.tolist(),
                    {**metadata, "epoch": epoch, "validation_metrics": val},
                )
            bar.set_postfix(val_E=f"{val['energy_mae_mev']:.1f}meV", val_F=f"{val['force_mae_mev_per_a']:.1f}meV/A")
            logger.debug(
                "epoch %d: train loss %.4g, val loss %.4g, val E MAE %.2f meV, val F MAE %.2f meV/Å",
                epoch,
                row["train_loss"],
                val_loss,
                val["energy_mae_mev"],
                val["force_mae_mev_per_a"],
            )
            epochs_run = epoch + 1
            spent, budget = _budget_spent(settings, time.perf_counter() - start, time.process_time() - start_cpu)
            if spent >= 1.0:
                logger.info("stopping after %d epochs: the %s budget is spent", epochs_run, budget)
                break

    wall = time.perf_counter() - start
    plot_learning_curve(metrics_path, output / "learning_curve.png")
    best = load_model(best_path, dtype)
    test = error_metrics(best.potential, test_frames)
    logger.info("test: E MAE %.2f meV, F MAE %.2f meV/Å", test["energy_mae_mev"], test["force_mae_mev_per_a"])
    save_model(
        best_path,
        best.potential,
        best.architecture,
        best.hyperparameters,
        best.atomic_numbers,
        {
            **best.metadata,
            "test_metrics": test,
            "test_frames": len(test_frames),
            "epochs_run": epochs_run,
            "wall_seconds": wall,
        },
    )
    return TrainResult(best_path, test, epochs_run, wall)
