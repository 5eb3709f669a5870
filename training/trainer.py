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
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from attnforce import keys
from attnforce.checkpoint import atomic_save, load_model, read_stored, save_model
from attnforce.models import ARCHITECTURES, Potential, build_model
from systems import Frames, collate, random_split, read_dataset
from systems.splits import NAMED_SPLITS
from training import distributed
from training.config import ExperimentConfig, dump_config
from training.evaluation import error_metrics, metrics, predict
from training.losses import LOSSES, energy_force_loss
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
    "cpu_s",
    "test_energy_mae_mev",
    "test_force_mae_mev_per_a",
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


def _batch_loss(potential, frames: Frames, indices: np.ndarray, dtype, config) -> torch.Tensor:
    """The training loss of one batch, differentiable through the forces."""
    batch = collate(frames, indices, dtype)
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


#: Keys of ``training`` that may change when a run is resumed (to extend it); anything else must match.
RESUMABLE_CHANGES = {"epochs", "max_minutes", "max_cpu_minutes"}
TRAINING_STATE_KIND = "training_state"


def _optimizer(parameters, settings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    raise ValueError(f"training.optimizer must be adam or adamw, got {settings.optimizer!r}")


def _check_settings(settings) -> None:
    if settings.dtype not in DTYPES:
        raise ValueError(f"training.dtype must be one of {sorted(DTYPES)}, got {settings.dtype!r}")
    if settings.loss not in LOSSES:
        raise ValueError(f"training.loss must be one of {list(LOSSES)}, got {settings.loss!r}")
    if settings.optimizer not in ("adam", "adamw"):
        raise ValueError(f"training.optimizer must be adam or adamw, got {settings.optimizer!r}")
    if settings.ema_decay is not None and not 0.0 < settings.ema_decay < 1.0:
        raise ValueError(f"training.ema_decay must lie in (0, 1), got {settings.ema_decay}")


def _read_training_state(path: Path, config: ExperimentConfig) -> dict:
    """The state stored by an earlier run of ``config`` in ``path``; ValueError if it belongs to another run."""
    state = read_stored(path, "training state")
    if not isinstance(state, dict) or state.get("kind") != TRAINING_STATE_KIND:
        raise ValueError(f"{path}: not an attnforce training state")
    stored, current = state["config"], asdict(config)
    stored_training = {k: v for k, v in stored["training"].items() if k not in RESUMABLE_CHANGES}
    current_training = {k: v for k, v in current["training"].items() if k not in RESUMABLE_CHANGES}
    if {**stored, "training": stored_training} != {**current, "training": current_training}:
        raise ValueError(
            f"{path} was written by a run with another config; resume only the same experiment (only "
            f"{sorted(RESUMABLE_CHANGES)} may change)"
        )
    return state


def train(config: ExperimentConfig, progress: bool = True, resume: bool = False) -> TrainResult:
    """Run one experiment end to end; see the module docstring for what is written.

    With ``resume``, a run directory holding ``last.pt`` continues that run from the end of its last finished
    epoch: weights, optimiser, EMA, random-number states, epoch, best validation loss and budgets spent. On a
    deterministic CPU set-up (fixed threads) the resumed run ends with the same weights as an uninterrupted one.
    Under ``torchrun`` the processes share every batch (see :mod:`training.distributed`).
    """
    group = distributed.start()
    try:
        return _train(config, progress and group.is_main, resume, group)
    finally:
        distributed.stop(group)


def _train(config: ExperimentConfig, progress: bool, resume: bool, group: distributed.ProcessGroup) -> TrainResult:
    settings = config.training
    _check_settings(settings)
    if settings.batch_size % group.world_size:
        raise ValueError(
            f"training.batch_size ({settings.batch_size}) must be divisible by the {group.world_size} processes"
        )
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
    optimizer = _optimizer(potential.parameters(), settings)
    trained = DistributedDataParallel(potential) if group.distributed else potential
    ema = None
    if settings.ema_decay is not None:
        # use_buffers=False: the buffers are constants (energy scale, shifts, e3nn index tables), and averaging
        # would corrupt the integer ones; the averaged copy keeps its own copies of them.
        ema = AveragedModel(potential, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay), use_buffers=False)

    output = Path(config.output)
    best_path, last_path, metrics_path = output / "best.pt", output / "last.pt", output / "metrics.csv"
    first_epoch, best_val, epochs_since_best, spent_wall, spent_cpu = 0, math.inf, 0, 0.0, 0.0
    best_saved = None  # the best model's weights and metadata, kept in last.pt so that best.pt can be rewritten
    if resume and last_path.is_file():
        state = _read_training_state(last_path, config)
        potential.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        first_epoch, best_val, epochs_since_best = state["epoch"], state["best_val"], state["epochs_since_best"]
        best_saved = state["best"]
        spent_wall, spent_cpu = state["wall_seconds"], state["cpu_seconds"]
        logger.info("resuming %s at epoch %d (best validation loss %.4g)", output, first_epoch, best_val)
    elif resume:
        logger.info("nothing to resume in %s: starting the run", output)
    board = None
    if group.is_main:
        output.mkdir(parents=True, exist_ok=True)
        if first_epoch == 0:  # a reused run directory must not hand back an older run's model or state
            best_path.unlink(missing_ok=True)
            last_path.unlink(missing_ok=True)
        dump_config(config, output / "config.yaml")
        if settings.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            board = SummaryWriter(str(output / "tensorboard"), purge_step=first_epoch)

    min_factor = settings.min_learning_rate / settings.learning_rate
    metadata = {
        "training_data": str(config.data.path),
        "energy_unit_of_data": config.data.energy_unit,
        "split": {"sizes": _split_sizes(config.data.split), "seed": config.data.seed},
        "training": asdict(settings),
    }
    evaluated = ema.module if ema is not None else potential  # the weights that are validated, saved and tested

    def save_best(weights: dict, extra: dict) -> None:
        if not group.is_main:
            return
        best_model = copy.deepcopy(evaluated)
        best_model.load_state_dict(weights)
        save_model(
            best_path,
            best_model,
            config.model.architecture,
            config.model.hyperparameters,
            frames.atomic_numbers.tolist(),
            {**metadata, **extra},
        )

    if best_saved is not None:  # a kill between last.pt and best.pt must not leave another run's best model
        save_best(best_saved["weights"], best_saved["metadata"])

    def save_state(next_epoch: int, wall: float, cpu: float) -> None:
        if not group.is_main:
            return
        atomic_save(
            {
                "kind": TRAINING_STATE_KIND,
                "config": asdict(config),
                "epoch": next_epoch,
                "model": potential.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": None if ema is None else ema.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "best_val": best_val,
                "best": best_saved,
                "epochs_since_best": epochs_since_best,
                "wall_seconds": wall,
                "cpu_seconds": cpu,
            },
            last_path,
        )

    rows = []
    if first_epoch > 0 and metrics_path.is_file():  # drop rows of an epoch that was cut short after being logged
        with open(metrics_path) as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < first_epoch]
    start, start_cpu = time.perf_counter() - spent_wall, time.process_time() - spent_cpu
    epochs_run = first_epoch
    with open(metrics_path, "w", newline="") if group.is_main else open(os.devnull, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        bar = tqdm(
            range(first_epoch, settings.epochs),
            initial=first_epoch,
            total=settings.epochs,
            desc="epochs",
            unit="epoch",
            disable=not progress,
        )
        for epoch in bar:
            # Stop here, before an epoch, so that a resumed run that had stopped stays stopped. Rank 0's clocks
            # decide for every process, so that their learning rates and decisions never diverge.
            spent, budget = _budget_spent(settings, time.perf_counter() - start, time.process_time() - start_cpu)
            spent = distributed.from_main(spent, group)
            if epoch > 0 and spent >= 1.0:  # every run trains at least one epoch
                logger.info("stopping after %d epochs: the %s budget is spent", epoch, budget)
                break
            if epoch > 0 and settings.patience is not None and epochs_since_best >= settings.patience:
                logger.info("stopping after %d epochs: no better validation loss for %d", epoch, settings.patience)
                break
            lr = settings.learning_rate * learning_rate_factor(
                epoch, settings.warmup_epochs, settings.epochs, min_factor, spent
            )
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            potential.train()
            order = rng.permutation(len(train_frames))
            losses = []
            for first in range(0, len(order), settings.batch_size):
                batch = order[first : first + settings.batch_size]
                batch = batch[: len(batch) - len(batch) % group.world_size]  # equal shares; alone: the whole batch
                if len(batch) == 0:
                    continue
                share = batch[group.rank :: group.world_size]
                loss = _batch_loss(trained, train_frames, share, dtype, config)
                batch_loss = distributed.mean_over_processes(loss.detach(), group)
                if not torch.isfinite(batch_loss):
                    raise FloatingPointError(
                        f"epoch {epoch}: the training loss is {batch_loss.item()}; stopped. The last good state is "
                        f"{last_path} (resume from it with a lower learning rate), the best model {best_path}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.gradient_clip is not None:
                    torch.nn.utils.clip_grad_norm_(potential.parameters(), settings.gradient_clip)
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(potential)
                losses.append(batch_loss.item())

            evaluated.eval()
            val_loss, val = _validate(evaluated, val_frames, config)
            val_loss = distributed.from_main(val_loss, group)
            if not math.isfinite(val_loss):
                raise FloatingPointError(f"epoch {epoch}: the validation loss is {val_loss}; stopped (see {last_path})")
            row = {
                "epoch": epoch,
                "wall_s": round(time.perf_counter() - start, 2),
                "learning_rate": lr,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                "val_energy_mae_mev": val["energy_mae_mev"],
                "val_force_mae_mev_per_a": val["force_mae_mev_per_a"],
                "cpu_s": round(time.process_time() - start_cpu, 2),
            }
            if settings.test_every and (epoch + 1) % settings.test_every == 0:
                # For learning curves only (never for selection), and outside the clocks of the budgets.
                test_wall, test_cpu = time.perf_counter(), time.process_time()
                test_now = error_metrics(evaluated, test_frames)
                start += time.perf_counter() - test_wall
                start_cpu += time.process_time() - test_cpu
                row["test_energy_mae_mev"] = test_now["energy_mae_mev"]
                row["test_force_mae_mev_per_a"] = test_now["force_mae_mev_per_a"]
            writer.writerow(row)
            handle.flush()
            if board is not None:
                for key, value in row.items():
                    if key != "epoch":
                        board.add_scalar(key, value, epoch)
                board.flush()
            if val_loss < best_val:
                best_val, epochs_since_best = val_loss, 0
                best_saved = {
                    "weights": {k: v.detach().clone() for k, v in evaluated.state_dict().items()},
                    "metadata": {"epoch": epoch, "validation_metrics": val},
                }
                save_best(best_saved["weights"], best_saved["metadata"])
            else:
                epochs_since_best += 1
            epochs_run = epoch + 1
            save_state(epochs_run, time.perf_counter() - start, time.process_time() - start_cpu)
            bar.set_postfix(val_E=f"{val['energy_mae_mev']:.1f}meV", val_F=f"{val['force_mae_mev_per_a']:.1f}meV/A")
            logger.debug(
                "epoch %d: train loss %.4g, val loss %.4g, val E MAE %.2f meV, val F MAE %.2f meV/Å",
                epoch,
                row["train_loss"],
                val_loss,
                val["energy_mae_mev"],
                val["force_mae_mev_per_a"],
            )

    wall = time.perf_counter() - start
    if board is not None:
        board.close()
    if not group.is_main:
        distributed.barrier(group)  # rank 0 tests the best model and stores the result
        test = load_model(best_path, dtype).metadata["test_metrics"]
        return TrainResult(best_path, test, epochs_run, wall)
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
    distributed.barrier(group)
    return TrainResult(best_path, test, epochs_run, wall)
