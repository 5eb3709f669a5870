"""Experiment configs: one YAML per experiment, loaded strictly (unknown or missing keys are errors)."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


@dataclass
class DataConfig:
    """Where the reference data is, its energy unit and the split (sizes: train, validation, test; -1 = rest)."""

    path: str
    energy_unit: str
    split: list[int] = field(default_factory=lambda: [800, 100, 100])
    seed: int = 0


@dataclass
class ModelConfig:
    """Architecture name (see :data:`attnforce.models.ARCHITECTURES`) and its keyword arguments.

    ``preset`` (see :data:`attnforce.models.PRESETS`) sets both; ``hyperparameters`` given beside it override the
    preset's one by one. The resolved config saved with a run names the architecture and every hyperparameter.
    """

    architecture: Optional[str] = None  # "sake" when neither it nor a preset is given
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    preset: Optional[str] = None

    def resolved(self) -> "ModelConfig":
        """The architecture and full hyperparameters, with any preset expanded."""
        if self.preset is None:
            return ModelConfig(self.architecture or "sake", dict(self.hyperparameters))
        from attnforce.models import preset

        architecture, hyperparameters = preset(self.preset)
        if self.architecture not in (None, architecture):
            raise ValueError(f"model: preset {self.preset!r} is a {architecture} model, not {self.architecture}")
        return ModelConfig(architecture, {**hyperparameters, **self.hyperparameters}, self.preset)


@dataclass
class TrainingConfig:
    """Optimisation settings.

    The loss is ``energy_weight * MSE(E / n_atoms) + force_weight * MSE(F)`` in eV and eV/Å; the learning rate
    warms up linearly for ``warmup_epochs`` then follows a cosine to ``min_learning_rate`` at ``epochs``.
    ``max_minutes`` stops early on a wall-clock budget, ``max_cpu_minutes`` on the process's CPU time summed over
    its threads (a budget that other work on the machine does not eat into: for comparing models), and the
    cosine then runs over whichever of the epochs or the budgets is spent first.
    """

    epochs: int = 100
    batch_size: int = 8
    learning_rate: float = 1.0e-3
    min_learning_rate: float = 1.0e-5
    warmup_epochs: int = 2
    energy_weight: float = 1.0
    force_weight: float = 1.0
    max_minutes: Optional[float] = None
    max_cpu_minutes: Optional[float] = None
    seed: int = 0
    dtype: str = "float32"
    threads: Optional[int] = None


@dataclass
class ExperimentConfig:
    """A whole experiment; ``output`` is the run directory (checkpoints, metrics, plots, resolved config)."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: str = "runs/experiment"


def _build(cls, values: Any, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        nested = fields[name].type
        if dataclasses.is_dataclass(nested):
            value = _build(nested, value, f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML strictly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    values = yaml.safe_load(path.read_text())
    return _build(ExperimentConfig, values, str(path))


def dump_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
