"""Saved learned integrators: ``state_dict`` + config + metadata, read back with ``weights_only=True``.

The format is that of :mod:`attnforce.checkpoint` with ``"kind": "forecaster"``::

    {
      "schema_version": 1,
      "kind": "forecaster",
      "architecture": "sake" | "egnn",
      "hyperparameters": {...},      # keyword arguments, including num_types and horizon
      "state_dict": {...},
      "metadata": {
        "task": {...},               # systems.forecasting.ForecastTask as a dict: horizon, units, particle names, bonds
        "units": {"length": ..., "time": ...},
        "predicts_velocities": bool, # trained with a velocity loss: can roll out autoregressively
        "dtype": "float32", "attnforce_version": "...", ...   # training data, split, metrics
      },
    }
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import attnforce
from attnforce.checkpoint import FORECASTER_KIND, atomic_save, read_stored
from attnforce.paths import embedded_or_file, require_file
from integrators.dynamics import build_dynamics
from systems.forecasting import ForecastTask

#: The layout of a saved learned integrator (its own: energy models' schema versions move independently).
FORECASTER_SCHEMA_VERSION = 1
#: Learned integrators that ship with the package: ``default`` for each task.
EMBEDDED_FORECASTERS = {"nbody": "nbody_sake.pt", "walking": "walking_sake.pt"}


@dataclass
class SavedForecaster:
    """A learned integrator read from disk and everything stored beside it."""

    model: nn.Module
    architecture: str
    hyperparameters: dict
    task: ForecastTask
    metadata: dict = field(default_factory=dict)
    path: str = ""

    @property
    def predicts_velocities(self) -> bool:
        """Whether the model was trained on velocities too, so that its forecasts can be rolled out."""
        return bool(self.metadata.get("predicts_velocities", False))


def task_to_dict(task: ForecastTask) -> dict:
    return {
        **dataclasses.asdict(task),
        "particle_names": list(task.particle_names),
        "bonds": [list(b) for b in task.bonds],
    }


def task_from_dict(values: dict) -> ForecastTask:
    """The task stored in a saved learned integrator; ValueError for bonds between particles it does not have."""
    task = ForecastTask(
        **{**values, "particle_names": tuple(values["particle_names"]), "bonds": tuple(map(tuple, values["bonds"]))}
    )
    count = len(task.particle_names)
    if any(len(bond) != 2 or not all(isinstance(i, int) and 0 <= i < count for i in bond) for bond in task.bonds):
        raise ValueError(f"its task's bonds join particles outside its {count} particles")
    return task


def save_forecaster(
    path: str | Path,
    model: nn.Module,
    architecture: str,
    hyperparameters: dict,
    task: ForecastTask,
    predicts_velocities: bool,
    extra_metadata: dict | None = None,
) -> None:
    """Write a learned integrator atomically to ``path`` (see the module docstring)."""
    dtype = next(model.parameters()).dtype
    metadata = {
        "task": task_to_dict(task),
        "units": {"length": task.length_unit, "time": task.time_unit},
        "predicts_velocities": bool(predicts_velocities),
        "dtype": str(dtype).replace("torch.", ""),
        "attnforce_version": attnforce.__version__,
        **(extra_metadata or {}),
    }
    atomic_save(
        {
            "schema_version": FORECASTER_SCHEMA_VERSION,
            "kind": FORECASTER_KIND,
            "architecture": architecture,
            "hyperparameters": dict(hyperparameters),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "metadata": metadata,
        },
        path,
    )


def resolve_forecaster_path(model: str | Path, task: str | None = None) -> Path:
    """A saved model's path, or for ``default`` (or a task's name) the embedded model of ``task``."""
    name = str(model)
    if name == "default" and task is not None:
        name = task
    embedded = embedded_or_file(name, EMBEDDED_FORECASTERS, "learned integrator")
    if embedded is not None:
        return embedded
    if str(model) == "default":
        raise ValueError(
            f"no embedded learned integrator for {'the task' if task is None else repr(task)}: embedded ones are "
            f"{sorted(EMBEDDED_FORECASTERS)}; train one (attnforce train CONFIG) and give it with --model"
        )
    return require_file(model, "model", f" (or name an embedded learned integrator: {sorted(EMBEDDED_FORECASTERS)})")


def is_forecaster(model: str | Path) -> bool:
    """Whether ``model`` names an embedded learned integrator or a readable file holding one."""
    if str(model) in EMBEDDED_FORECASTERS:
        return True
    if not Path(str(model)).is_file():
        return False
    try:
        stored = read_stored(model)
    except ValueError:  # anything unreadable is not one; the energy-model loader names the problem
        return False
    return isinstance(stored, dict) and stored.get("kind") == FORECASTER_KIND


def load_forecaster(model: str | Path, task: str | None = None, dtype: torch.dtype = torch.float32) -> SavedForecaster:
    """Read a saved learned integrator (a path, ``default`` for ``task``'s embedded one, or a task's name)."""
    path = resolve_forecaster_path(model, task)
    stored = read_stored(path)
    if not isinstance(stored, dict) or stored.get("kind") != FORECASTER_KIND:
        raise ValueError(f"{path}: not an attnforce learned integrator (an energy model goes to `attnforce md`)")
    if stored.get("schema_version") != FORECASTER_SCHEMA_VERSION:
        raise ValueError(
            f"{path}: schema version {stored.get('schema_version')} is not {FORECASTER_SCHEMA_VERSION}, the one this "
            "attnforce reads for learned integrators"
        )
    try:
        network = build_dynamics(stored["architecture"], stored["hyperparameters"], dtype)
        network.load_state_dict(stored["state_dict"])
        saved_task = task_from_dict(stored["metadata"]["task"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{path}: malformed learned integrator ({type(error).__name__}: {error})") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if task is not None and saved_task.name != task:
        raise ValueError(f"{path} was trained on the {saved_task.name} task, not {task}")
    return SavedForecaster(
        network.eval(), stored["architecture"], stored["hyperparameters"], saved_task, stored["metadata"], str(path)
    )
