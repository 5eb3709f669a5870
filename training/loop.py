"""The epoch loop that every trainer shares: optimiser, learning-rate schedule, budgets, early stopping, EMA,
DDP, NaN checks, metrics (CSV and TensorBoard), best-model selection, and a resumable state.

A trainer describes what it trains with an :class:`Objective` (the loss of a batch of training samples, the
validation of the model) and a callback that saves the best model; :func:`run_epochs` does the rest. Every epoch
ends by writing ``last.pt`` atomically: the weights, optimiser, EMA, random-number states, epoch, best validation
loss, the best weights, the schedule's state, the budgets spent and the data file's fingerprint. With ``resume`` the
loop continues from it, and on a deterministic CPU set-up (fixed threads) ends with the same weights as an
uninterrupted run. A run locks its directory (:func:`run_directory`): one run writes there at a time.
"""

import contextlib
import csv
import fcntl
import hashlib
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from attnforce.atomic import PACKAGE, make_folders, remove_empty_folders
from attnforce.checkpoint import DTYPES, TRAINING_STATE_KIND, atomic_save, read_stored
from training import distributed
from training.config import OptimiserConfig, dump_config

logger = logging.getLogger(__name__)

SCHEDULES = ("cosine", "constant", "plateau")
#: Columns of ``metrics.csv`` that every run writes; an objective adds its own.
COMMON_COLUMNS = ["epoch", "wall_s", "cpu_s", "learning_rate", "train_loss", "val_loss"]
#: Keys of ``training`` that may change when a run is resumed (to extend it or move it); anything else must match.
RESUMABLE_CHANGES = {"epochs", "max_minutes", "max_cpu_minutes", "device", "threads"}


@dataclass
class Objective:
    """What a trainer trains.

    Attributes:
        train_size: the number of training samples; batches are arrays of indices into them.
        batch_loss: ``(module, indices) -> loss``, a differentiable scalar; ``module`` is the trained model,
            wrapped in DistributedDataParallel under torchrun.
        validate: ``(model) -> (validation loss, metrics)``, the metrics (named as in ``columns``) logged per epoch;
            the model is the one saved (the EMA's when there is one).
        columns: the names of the validation (and test) metrics, for ``metrics.csv``.
        test: ``(model) -> metrics`` on the test set, logged every ``test_every`` epochs (learning curves only).
        unused_parameters: some parameters may get no gradient in a step (DDP must then look for them).
        data_file: the file the samples were read from; its fingerprint (:func:`data_fingerprint`) is kept in
            ``last.pt``, and a resumed run refuses a file that has changed since.
    """

    train_size: int
    batch_loss: Callable[[nn.Module, np.ndarray], torch.Tensor]
    validate: Callable[[nn.Module], tuple[float, dict[str, float]]]
    columns: list[str]
    test: Optional[Callable[[nn.Module], dict[str, float]]] = None
    unused_parameters: bool = False
    data_file: Optional[str | Path] = None


@dataclass
class LoopResult:
    """How the loop ended: epochs run (in all, over resumes), wall-clock seconds, and the model that was saved
    (the EMA's when there is one)."""

    epochs: int
    wall_seconds: float
    evaluated: nn.Module


def check_settings(settings: OptimiserConfig) -> None:
    """ValueError naming the first setting that no trainer accepts."""
    if settings.dtype not in DTYPES:
        raise ValueError(f"training.dtype must be one of {sorted(DTYPES)}, got {settings.dtype!r}")
    if settings.optimizer not in ("adam", "adamw"):
        raise ValueError(f"training.optimizer must be adam or adamw, got {settings.optimizer!r}")
    if settings.schedule not in SCHEDULES:
        raise ValueError(f"training.schedule must be one of {list(SCHEDULES)}, got {settings.schedule!r}")
    if not 0.0 < settings.plateau_factor < 1.0:
        raise ValueError(f"training.plateau_factor must lie in (0, 1), got {settings.plateau_factor}")
    if settings.ema_decay is not None and not 0.0 < settings.ema_decay < 1.0:
        raise ValueError(f"training.ema_decay must lie in (0, 1), got {settings.ema_decay}")
    if settings.batch_size < 1 or settings.epochs < 1:
        raise ValueError("training.batch_size and training.epochs must be positive")


def usable_threads(threads: int) -> int:
    """``threads``, or the cores this process may use when that is fewer (with a warning: more threads than cores
    only wait on each other, and 100,000 of them would not even start)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads > cores:
        logger.warning("training.threads is %d but this process may use %d cores: using %d", threads, cores, cores)
    return min(threads, cores)


@contextlib.contextmanager
def training_session(settings: OptimiserConfig) -> Iterator[distributed.ProcessGroup]:
    """The frame of every training run: the settings checked, the process group started (torchrun's, or this
    process alone) and stopped on the way out, the batch checked to split evenly among its processes, torch's
    threads and seed set. Yields the group."""
    check_settings(settings)
    group = distributed.start(settings.device)
    try:
        distributed.check_shares(settings.batch_size, group.world_size)
        if settings.threads:
            torch.set_num_threads(usable_threads(settings.threads))
        torch.manual_seed(settings.seed)
        yield group
    finally:
        distributed.stop(group)


def final_test(
    group: distributed.ProcessGroup, test_and_store: Callable[[], dict], read_back: Callable[[], dict]
) -> dict:
    """The test metrics of the best model: rank 0 computes them and stores them in the saved model
    (``test_and_store``) while the other processes wait, then read them back (``read_back``). If rank 0 fails
    there, the others wait until torchrun stops them."""
    if not group.is_main:
        distributed.barrier(group)
        return read_back()
    test = test_and_store()
    distributed.barrier(group)
    return test


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


def scheduled_learning_rate(settings: OptimiserConfig, epoch: int, time_fraction: float, plateau_scale: float) -> float:
    """The learning rate of ``epoch`` under ``settings.schedule``; ``plateau_scale`` is the product of the plateau
    reductions so far."""
    min_factor = settings.min_learning_rate / settings.learning_rate
    if settings.schedule == "cosine":
        factor = learning_rate_factor(epoch, settings.warmup_epochs, settings.epochs, min_factor, time_fraction)
    else:
        warmup = (epoch + 1) / (settings.warmup_epochs + 1) if epoch < settings.warmup_epochs else 1.0
        factor = warmup * (max(plateau_scale, min_factor) if settings.schedule == "plateau" else 1.0)
    return settings.learning_rate * factor


def budget_spent(settings: OptimiserConfig, wall_seconds: float, cpu_seconds: float) -> tuple[float, str]:
    """The largest fraction spent of the wall-clock and CPU-time budgets (0 without budgets), and its name."""
    spent, name = 0.0, ""
    if settings.max_minutes is not None:
        spent, name = wall_seconds / (60 * settings.max_minutes), f"{settings.max_minutes}-minute wall-clock"
    if settings.max_cpu_minutes is not None and cpu_seconds / (60 * settings.max_cpu_minutes) > spent:
        spent, name = cpu_seconds / (60 * settings.max_cpu_minutes), f"{settings.max_cpu_minutes}-minute CPU-time"
    return spent, name


def make_optimizer(parameters, settings: OptimiserConfig) -> torch.optim.Optimizer:
    kind = torch.optim.Adam if settings.optimizer == "adam" else torch.optim.AdamW
    return kind(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay, amsgrad=settings.amsgrad)


#: What ``last.pt`` holds (see :func:`run_epochs`); states written since the data's fingerprint was kept also
#: hold ``data_fingerprint`` (None when the objective names no data file), which older ones lack.
TRAINING_STATE_KEYS = (
    "kind",
    "config",
    "epoch",
    "model",
    "optimizer",
    "ema",
    "random",
    "best_val",
    "best",
    "epochs_since_best",
    "plateau_scale",
    "plateau_wait",
    "wall_seconds",
    "cpu_seconds",
)


def read_training_state(path: Path, config) -> dict:
    """The state stored by an earlier run of ``config`` (an experiment dataclass) in ``path``; ValueError if it
    belongs to another experiment."""
    state = read_stored(path, "training state")
    if not isinstance(state, dict) or state.get("kind") != TRAINING_STATE_KIND:
        raise ValueError(f"{path}: not an attnforce training state")
    missing = sorted(set(TRAINING_STATE_KEYS) - set(state))
    if not missing and not (isinstance(state["epoch"], int) and state["epoch"] >= 0):
        missing = ["a non-negative epoch"]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["config"].get("training"), dict):
        raise ValueError(f"{path}: a damaged training state (lacks {missing or ['config.training']}); start a new run")
    changed = _changed_keys(state["config"], asdict(config))
    if changed:
        raise ValueError(
            f"{path} was written by a run with another config ({', '.join(changed[:5])} differ); resume only the same "
            f"experiment (only training.{{{', '.join(sorted(RESUMABLE_CHANGES))}}} may change)"
        )
    if config.training.epochs < state["epoch"]:
        raise ValueError(
            f"{path}: the run has finished {state['epoch']} epochs; training.epochs: {config.training.epochs} would "
            f"end it before where it is (give {state['epoch']} or more)"
        )
    return state


def data_fingerprint(path: str | Path) -> dict:
    """The size (bytes) and SHA-256 (hex) of a file's bytes, read as a stream."""
    with open(path, "rb") as handle:
        return {"size": os.fstat(handle.fileno()).st_size, "sha256": hashlib.file_digest(handle, "sha256").hexdigest()}


def _check_same_data(state: dict, data_file: Optional[str | Path], fingerprint: Optional[dict]) -> None:
    """ValueError naming ``data_file`` if its ``fingerprint`` is not the one a training ``state`` was written with
    (reordered frames would make the split draw others); states without a fingerprint pass."""
    stored = state.get("data_fingerprint")
    if stored is not None and fingerprint is not None and stored != fingerprint:
        raise ValueError(
            f"{data_file} is not the data file this run started with (its size or SHA-256 has changed): resume with "
            "that data, or start a new run (another --output)"
        )


def _changed_keys(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configs (as dicts), ignoring what a resumed run may
    change (:data:`RESUMABLE_CHANGES`) and spellings of the same run directory (``run`` and ``./run/``)."""
    changed = []
    for key in sorted(set(stored) | set(current), key=str):
        name = f"{prefix}{key}"
        old, new = stored.get(key), current.get(key)
        if prefix == "training." and key in RESUMABLE_CHANGES:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_keys(old, new, f"{name}.")
        elif name == "output" and isinstance(old, str) and isinstance(new, str):
            if os.path.normpath(old) != os.path.normpath(new):
                changed.append(name)
        elif old != new or key not in stored or key not in current:
            changed.append(name)
    return changed


def _random_states(rng: np.random.Generator, device: torch.device) -> dict:
    states = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_random_states(states: dict, rng: np.random.Generator, device: torch.device) -> None:
    rng.bit_generator.state = states["numpy"]
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _last_good(output: Path) -> str:
    """Where a run that stopped on a NaN can go on from, or that none of its epochs finished."""
    if (output / "last.pt").is_file():
        return (
            f"The best model so far is {output / 'best.pt'} and the last good state {output / 'last.pt'}; lower "
            "training.learning_rate and start a new run (another --output)"
        )
    return "No epoch had finished: lower training.learning_rate and start again"


#: What a run writes into its directory, as glob patterns: :func:`run_epochs`'s files, the trainers'
#: ``learning_curve.png``, and the temporary files that ``best.pt`` and ``last.pt`` are written through
#: (:func:`attnforce.atomic.atomic_output`).
RUN_FILES = (
    "best.pt",
    "last.pt",
    "metrics.csv",
    "config.yaml",
    "learning_curve.png",
    "tensorboard",
    ".best.*.partial.pt",
    ".last.*.partial.pt",
)


def run_files(output: Path) -> set[Path]:
    """The files and folders of :data:`RUN_FILES` that the folder ``output`` holds."""
    if not output.is_dir():
        return set()
    found = {path for pattern in RUN_FILES if "*" in pattern for path in output.glob(pattern)}
    return found | {output / name for name in RUN_FILES if "*" not in name and os.path.lexists(output / name)}


def check_run_directory(output: str | Path, resume: bool) -> None:
    """Refuse, before any work, a run that would spoil its output folder (ValueError naming the fix): a fresh run
    refuses a folder holding any of :data:`RUN_FILES` (another run's, or the user's own files of those names),
    since it would replace them; a resumed run refuses a folder with ``best.pt`` but no ``last.pt``."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file, not a run directory: give a folder")
    if output.resolve().is_relative_to(PACKAGE):
        raise ValueError(f"output {output} is inside the installed attnforce package: give a folder elsewhere")
    linked = sorted(
        path.name for path in run_files(output) if path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1)
    )
    if linked:
        raise ValueError(
            f"{output}: {', '.join(linked)} link to other files, which a run would overwrite through the link; "
            "remove the links or give another output folder"
        )
    held = sorted(path.name + ("/" if path.is_dir() else "") for path in run_files(output))
    if resume and "best.pt" in held and "last.pt" not in held:
        raise ValueError(f"{output} holds best.pt but no last.pt to resume from: give another output folder")
    if held and not resume:
        raise ValueError(
            f"{output} already holds a run or files a run writes ({', '.join(held)}): give an empty or new --output, "
            "or --resume to continue the run they are from (nothing was changed)"
        )


@contextlib.contextmanager
def run_directory(output: str | Path, resume: bool, group: distributed.ProcessGroup) -> Iterator[None]:
    """The run directory, for the block: every process checks it (:func:`check_run_directory`), and the main
    process, the only one that writes there, claims it (:func:`_claimed`) before any process goes on."""
    check_run_directory(output, resume)
    with _claimed(Path(output), resume) if group.is_main else contextlib.nullcontext():
        distributed.barrier(group)  # no process checks a folder that the main one has begun to write
        yield


@contextlib.contextmanager
def _claimed(output: Path, resume: bool) -> Iterator[None]:
    """``output`` made and locked for the block, then checked again: another run may have written there between
    the first check and the lock. A block that fails before the run's first ``last.pt`` exists (bad data found
    late, a NaN in the first epoch, Ctrl-C) removes the run files it wrote and the folders it made, so the disk is
    as it was; a later failure keeps ``last.pt`` to resume from."""
    made = make_folders(output)
    with _locked(output):
        check_run_directory(output, resume)
        before = run_files(output)
        try:
            yield
        except BaseException:
            if not (output / "last.pt").exists():
                _remove_written(run_files(output) - before, made)
            raise


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder itself, held through the block (it leaves no lock file behind); ValueError
    if another process holds it. The lock goes when the block ends or the process dies."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"another attnforce run is writing to {folder}: wait until it ends, or give another --output"
            ) from None
        yield
    finally:
        os.close(handle)


def _remove_written(written: set[Path], made: list[Path]) -> None:
    """Remove the run files ``written``, then the folders ``made`` for the run that are left empty."""
    for path in written:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    remove_empty_folders(made)


def run_epochs(
    model: nn.Module,
    objective: Objective,
    config,
    save_best: Callable[[nn.Module, dict, dict], None],
    group: distributed.ProcessGroup,
    resume: bool = False,
    progress: bool = True,
) -> LoopResult:
    """Train ``model`` (already on ``group.device`` in its dtype) on ``objective`` under ``config.training``,
    writing into ``config.output``: ``config.yaml``, ``metrics.csv``, ``last.pt``, ``tensorboard/``, and the best
    model through ``save_best(model, weights, {"epoch", "validation_loss", "validation_metrics"})`` (rank 0 only).

    The run stops, before an epoch, when ``settings.epochs`` are done, a budget is spent or ``patience`` epochs
    passed without a better validation loss; a NaN or infinite loss stops it with FloatingPointError naming the
    last good state.
    """
    settings: OptimiserConfig = config.training
    rng = np.random.default_rng(settings.seed)
    optimizer = make_optimizer(model.parameters(), settings)
    device_ids = [group.device] if group.device.type == "cuda" else None
    trained = model
    if group.distributed:
        # Force training's double backward leaves a (1, F) weight's gradient in another memory layout than DDP's
        # bucket; DDP copies it (correctly) and warns on every run. The warning is about speed, not results.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        trained = DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=objective.unused_parameters
        )
    ema = None
    if settings.ema_decay is not None:
        # use_buffers=False: buffers are constants (energy scale, shifts, e3nn index tables), and averaging would
        # corrupt the integer ones; the averaged copy keeps its own copies of them.
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay), use_buffers=False)
    evaluated = ema.module if ema is not None else model  # the weights that are validated, saved and tested

    output = Path(config.output)
    last_path, metrics_path = output / "last.pt", output / "metrics.csv"
    epoch_start, best_val, epochs_since_best, spent_wall, spent_cpu = 0, math.inf, 0, 0.0, 0.0
    plateau_scale, plateau_wait = 1.0, 0
    best = None  # the best model's weights and metadata, kept in last.pt so that the best model can be rewritten
    fingerprint = None if objective.data_file is None else data_fingerprint(objective.data_file)
    if resume and last_path.is_file():
        state = read_training_state(last_path, config)
        _check_same_data(state, objective.data_file, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        _restore_random_states(state["random"], rng, group.device)
        epoch_start, best_val, epochs_since_best = state["epoch"], state["best_val"], state["epochs_since_best"]
        plateau_scale, plateau_wait = state["plateau_scale"], state["plateau_wait"]
        best, spent_wall, spent_cpu = state["best"], state["wall_seconds"], state["cpu_seconds"]
        logger.info("resuming %s at epoch %d (best validation loss %.4g)", output, epoch_start, best_val)
    elif resume:
        logger.info("nothing to resume in %s: starting the run", output)
    board = None
    if group.is_main:
        output.mkdir(parents=True, exist_ok=True)
        dump_config(config, output / "config.yaml")
        if settings.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            board = SummaryWriter(str(output / "tensorboard"), purge_step=epoch_start)
        if best is not None:  # a kill between last.pt and the best model must not leave another run's best model
            save_best(evaluated, best["weights"], best["metadata"])

    rows = []
    if epoch_start > 0 and metrics_path.is_file():  # drop rows of an epoch that was cut short after being logged
        with open(metrics_path) as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < epoch_start]
    start, start_cpu = time.perf_counter() - spent_wall, time.process_time() - spent_cpu
    epochs_run = epoch_start
    with open(metrics_path, "w", newline="") if group.is_main else open(os.devnull, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=COMMON_COLUMNS + objective.columns)
        writer.writeheader()
        writer.writerows(rows)
        bar = tqdm(
            range(epoch_start, settings.epochs),
            initial=epoch_start,
            total=settings.epochs,
            desc="epochs",
            unit="epoch",
            disable=not progress,
        )
        for epoch in bar:
            # Stop here, before an epoch, so that a resumed run that had stopped stays stopped. Rank 0's clocks
            # decide for every process, so that their learning rates and decisions never diverge.
            spent, budget = budget_spent(settings, time.perf_counter() - start, time.process_time() - start_cpu)
            spent = distributed.from_main(spent, group)
            if epoch > 0 and spent >= 1.0:  # every run trains at least one epoch
                logger.info("stopping after %d epochs: the %s budget is spent", epoch, budget)
                break
            if epoch > 0 and settings.patience is not None and epochs_since_best >= settings.patience:
                logger.info("stopping after %d epochs: no better validation loss for %d", epoch, settings.patience)
                break
            lr = scheduled_learning_rate(settings, epoch, spent, plateau_scale)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            model.train()
            order = rng.permutation(objective.train_size)
            losses = []
            for first in range(0, len(order), settings.batch_size):
                batch = order[first : first + settings.batch_size]
                batch = batch[: len(batch) - len(batch) % group.world_size]  # equal shares; alone: the whole batch
                if len(batch) == 0:
                    continue
                loss = objective.batch_loss(trained, batch[group.rank :: group.world_size])
                batch_loss = distributed.mean_over_processes(loss.detach(), group)
                if not torch.isfinite(batch_loss):
                    raise FloatingPointError(
                        f"epoch {epoch}: the training loss is {batch_loss.item()}; stopped. {_last_good(output)}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.gradient_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.gradient_clip)
                optimizer.step()
                if ema is not None:
                    ema.update_parameters(model)
                losses.append(batch_loss.item())

            evaluated.eval()
            val_loss, val = objective.validate(evaluated)
            val_loss = distributed.from_main(val_loss, group)
            if not math.isfinite(val_loss):
                raise FloatingPointError(
                    f"epoch {epoch}: the validation loss is {val_loss}; stopped. {_last_good(output)}"
                )
            row = {
                "epoch": epoch,
                "wall_s": round(time.perf_counter() - start, 2),
                "cpu_s": round(time.process_time() - start_cpu, 2),
                "learning_rate": lr,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_loss,
                **val,
            }
            if objective.test is not None and settings.test_every and (epoch + 1) % settings.test_every == 0:
                # For learning curves only (never for selection), and outside the clocks of the budgets.
                test_wall, test_cpu = time.perf_counter(), time.process_time()
                row.update(objective.test(evaluated))
                start += time.perf_counter() - test_wall
                start_cpu += time.process_time() - test_cpu
            writer.writerow(row)
            handle.flush()
            if board is not None:
                for key, value in row.items():
                    if key != "epoch":
                        board.add_scalar(key, value, epoch)
                board.flush()
            if val_loss < best_val:
                best_val, epochs_since_best, plateau_wait = val_loss, 0, 0
                best = {
                    "weights": {k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()},
                    "metadata": {"epoch": epoch, "validation_loss": val_loss, "validation_metrics": val},
                }
                if group.is_main:
                    save_best(evaluated, best["weights"], best["metadata"])
            else:
                epochs_since_best += 1
                plateau_wait += 1
                if settings.schedule == "plateau" and plateau_wait > settings.plateau_patience:
                    plateau_scale, plateau_wait = plateau_scale * settings.plateau_factor, 0
                    logger.info("validation loss on a plateau: learning rate x %g", settings.plateau_factor)
            epochs_run = epoch + 1
            if group.is_main:
                atomic_save(
                    {
                        "kind": TRAINING_STATE_KIND,
                        "config": asdict(config),
                        "epoch": epochs_run,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "ema": None if ema is None else ema.state_dict(),
                        "random": _random_states(rng, group.device),
                        "best_val": best_val,
                        "best": best,
                        "epochs_since_best": epochs_since_best,
                        "plateau_scale": plateau_scale,
                        "plateau_wait": plateau_wait,
                        "wall_seconds": time.perf_counter() - start,
                        "cpu_seconds": time.process_time() - start_cpu,
                        "data_fingerprint": fingerprint,
                    },
                    last_path,
                )
            bar.set_postfix(val_loss=f"{val_loss:.4g}")
            logger.debug("epoch %d: %s", epoch, row)
    if board is not None:
        board.close()
    return LoopResult(epochs_run, time.perf_counter() - start, evaluated)
