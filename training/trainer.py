"""Energy + force training of a :class:`~attnforce.models.Potential` on MD17-style frames.

A run directory holds ``config.yaml`` (resolved), ``best.pt`` (best validation loss, a saved model), ``last.pt``
(the whole training state after the last finished epoch, for ``attnforce train --resume``), ``metrics.csv`` (one
row per epoch) and ``learning_curve.png``. Both ``.pt`` files are replaced atomically: a crash mid-write leaves the
previous one intact. The test set is evaluated once, on the best model,
and its errors are stored in the saved model's metadata.
"""

import copy
import csv
import dataclasses
import inspect
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from attnforce import keys
from attnforce.checkpoint import DTYPES, load_model, save_model
from attnforce.models import ARCHITECTURES, Potential, build_model
from systems import Frames, collate, random_split, read_dataset
from systems.splits import NAMED_SPLITS
from training import distributed
from training.config import ExperimentConfig, check_config
from training.evaluation import error_metrics, metrics, predict
from training.loop import Objective, final_test, run_directory, run_epochs, training_session
from training.losses import LOSSES, energy_force_loss
from training.statistics import ENERGY_SCALES, check_data, fit_average_degree, fit_energy_statistics

logger = logging.getLogger(__name__)

VALIDATION_COLUMNS = ["val_energy_mae_mev", "val_force_mae_mev_per_a"]
TEST_COLUMNS = ["test_energy_mae_mev", "test_force_mae_mev_per_a"]


@dataclass
class TrainResult:
    """What a run produced: the best model's path, its test errors and the number of epochs run."""

    best_model: Path
    test_metrics: dict[str, float]
    epochs: int
    wall_seconds: float


def _split_sizes(split: list[int] | str) -> list[int]:
    """The sizes of a split given as sizes or by name."""
    return list(NAMED_SPLITS[split]) if isinstance(split, str) else list(split)


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


def batch_loss(potential, frames: Frames, indices: np.ndarray, dtype, config, device=None) -> torch.Tensor:
    """The training loss of one batch, differentiable through the forces, computed on ``device``."""
    batch = {k: v.to(device) for k, v in collate(frames, indices, dtype).items()}
    energy, forces = potential(
        batch[keys.POSITIONS], batch[keys.ATOMIC_NUMBERS], batch[keys.BATCH], len(indices), create_graph=True
    )
    settings = config.training
    return energy_force_loss(
        energy,
        forces,
        batch[keys.ENERGY],
        batch[keys.FORCES],
        batch[keys.NUM_ATOMS],
        settings.energy_weight,
        settings.force_weight,
        settings.loss,
    )


def validation_pass(potential: Potential, frames: Frames, config: ExperimentConfig) -> tuple[float, dict[str, float]]:
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
        config.training.loss,
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


def train(config: ExperimentConfig, progress: bool = True, resume: bool = False) -> TrainResult:
    """Run one experiment end to end; see the module docstring for what is written.

    With ``resume``, a run directory holding ``last.pt`` continues that run from the end of its last finished
    epoch (see :mod:`training.loop`). Under ``torchrun`` the processes share every batch (see
    :mod:`training.distributed`).
    """
    if config.training.loss not in LOSSES:
        raise ValueError(f"training.loss must be one of {list(LOSSES)}, got {config.training.loss!r}")
    if config.training.energy_scale not in ENERGY_SCALES:
        raise ValueError(
            f"training.energy_scale must be one of {list(ENERGY_SCALES)}, got {config.training.energy_scale!r}"
        )
    check_config(config)
    with training_session(config.training) as group, run_directory(config.output, resume, group):
        return _train(config, progress and group.is_main, resume, group)


def _train(config: ExperimentConfig, progress: bool, resume: bool, group: distributed.ProcessGroup) -> TrainResult:
    settings = config.training
    dtype = DTYPES[settings.dtype]

    # Everything that can fail on bad input happens before the run directory is written.
    frames = read_dataset(config.data.path, config.data.energy_unit)
    check_data(frames, config.data.energy_unit)
    train_idx, val_idx, test_idx = random_split(len(frames), config.data.split, config.data.seed)
    train_frames, val_frames, test_frames = (frames.subset(i) for i in (train_idx, val_idx, test_idx))
    logger.info(
        "data %s: %d train, %d validation, %d test frames", frames.source, *map(len, (train_idx, val_idx, test_idx))
    )
    scale, shifts = fit_energy_statistics(train_frames, config.training.energy_scale)
    config = dataclasses.replace(config, model=_fit_model_statistics(config.model.resolved(), train_frames))
    try:
        model = build_model(config.model.architecture, config.model.hyperparameters)
    except TypeError as error:
        raise ValueError(f"model.hyperparameters: {error}") from None
    potential = Potential(model, scale, shifts).to(device=group.device, dtype=dtype)
    logger.info(
        "%s: %d parameters, training on %s",
        config.model.architecture,
        sum(p.numel() for p in potential.parameters()),
        group.device,
    )

    best_path = Path(config.output) / "best.pt"
    metadata = {
        "training_data": str(config.data.path),
        "energy_unit_of_data": config.data.energy_unit,
        "split": {"sizes": _split_sizes(config.data.split), "seed": config.data.seed},
        "training": asdict(settings),
    }

    def save_best(evaluated: Potential, weights: dict, extra: dict) -> None:
        best_model = copy.deepcopy(evaluated).cpu()
        best_model.load_state_dict(weights)
        save_model(
            best_path,
            best_model,
            config.model.architecture,
            config.model.hyperparameters,
            frames.atomic_numbers.tolist(),
            {**metadata, "epoch": extra["epoch"], "validation_metrics": extra["validation_metrics"]},
        )

    def test_errors(evaluated: Potential) -> dict[str, float]:
        errors = error_metrics(evaluated, test_frames)
        return {f"test_{k}": errors[k] for k in ("energy_mae_mev", "force_mae_mev_per_a")}

    def validate(evaluated: Potential) -> tuple[float, dict[str, float]]:
        loss, errors = validation_pass(evaluated, val_frames, config)
        return loss, {f"val_{k}": errors[k] for k in ("energy_mae_mev", "force_mae_mev_per_a")}

    objective = Objective(
        train_size=len(train_frames),
        batch_loss=lambda module, indices: batch_loss(module, train_frames, indices, dtype, config, group.device),
        validate=validate,
        columns=VALIDATION_COLUMNS + TEST_COLUMNS,
        test=test_errors,
        data_file=config.data.path,
    )
    result = run_epochs(potential, objective, config, save_best, group, resume, progress)

    def test_and_store() -> dict:
        output = Path(config.output)
        plot_learning_curve(output / "metrics.csv", output / "learning_curve.png")
        best = load_model(best_path, dtype)
        test = error_metrics(best.potential.to(group.device), test_frames)
        logger.info("test: E MAE %.2f meV, F MAE %.2f meV/Å", test["energy_mae_mev"], test["force_mae_mev_per_a"])
        save_model(
            best_path,
            best.potential.cpu(),
            best.architecture,
            best.hyperparameters,
            best.atomic_numbers,
            {
                **best.metadata,
                "test_metrics": test,
                "test_frames": len(test_frames),
                "epochs_run": result.epochs,
                "wall_seconds": result.wall_seconds,
            },
        )
        return test

    test = final_test(group, test_and_store, lambda: load_model(best_path, dtype).metadata["test_metrics"])
    return TrainResult(best_path, test, result.epochs, result.wall_seconds)
