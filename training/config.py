"""Experiment configs: one YAML per experiment, loaded strictly (unknown or missing keys are errors)."""

import collections
import collections.abc
import dataclasses
import math
import os
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from attnforce.paths import require_file, text_file


@dataclass
class DataConfig:
    """Where the reference data is, its energy unit and the split: sizes (train, validation, test; -1 = rest) or a
    paper's split by name (``equiformer``: 950 / 50 / rest, ``sake``: 1000 / 1000 / rest; see
    :data:`systems.splits.NAMED_SPLITS`), drawn with ``seed``."""

    path: str
    energy_unit: str
    split: list[int] | str = field(default_factory=lambda: [800, 100, 100])
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
class OptimiserConfig:
    """Optimisation settings shared by every trainer (see :mod:`training.loop`).

    Learning rate: a linear warm-up over ``warmup_epochs``, then ``schedule``: ``cosine`` to ``min_learning_rate``
    at ``epochs`` (or when a budget is spent, whichever comes first), ``constant``, or ``plateau`` (multiplied by
    ``plateau_factor`` after ``plateau_patience`` epochs without a better validation loss, down to
    ``min_learning_rate``). ``max_minutes`` stops early on a wall-clock budget, ``max_cpu_minutes`` on the
    process's CPU time summed over its threads (a budget that other work on the machine does not eat into: for
    comparing models).

    ``optimizer`` is ``adam`` or ``adamw`` (decoupled ``weight_decay``), with ``amsgrad`` its AMSGrad variant
    (the running maximum of the second moments, as NequIP trains); ``gradient_clip`` caps the gradient norm;
    ``ema_decay`` keeps an exponential moving average of the weights, which is then the model validated, saved and
    tested; ``patience`` stops after that many epochs without a better validation loss. ``test_every`` also logs
    the test errors every that many epochs, for learning curves (the test set never chooses anything).
    ``tensorboard`` writes every metric to ``<output>/tensorboard`` as well as to ``metrics.csv``. ``device`` is
    ``auto`` (the GPU when one is visible), ``cpu``, ``cuda`` (under torchrun: the GPU of the process's local rank)
    or ``cuda:K``.
    """

    epochs: int = 100
    batch_size: int = 8
    learning_rate: float = 1.0e-3
    min_learning_rate: float = 1.0e-5
    warmup_epochs: int = 2
    schedule: str = "cosine"
    plateau_factor: float = 0.8
    plateau_patience: int = 10
    max_minutes: Optional[float] = None
    max_cpu_minutes: Optional[float] = None
    optimizer: str = "adam"
    amsgrad: bool = False
    weight_decay: float = 0.0
    gradient_clip: Optional[float] = None
    ema_decay: Optional[float] = None
    patience: Optional[int] = None
    test_every: Optional[int] = None
    tensorboard: bool = True
    seed: int = 0
    dtype: str = "float32"
    threads: Optional[int] = None
    device: str = "auto"


@dataclass
class TrainingConfig(OptimiserConfig):
    """Energy + force training: the loss is ``energy_weight * err(E / n_atoms) + force_weight * err(F)`` in eV and
    eV/Å, ``err`` one of :data:`training.losses.LOSSES` (``loss``).

    ``energy_scale`` is what the network's per-atom outputs are multiplied by (see
    :data:`training.statistics.ENERGY_SCALES`): ``energy_std``, the standard deviation of the training energies
    (SAKE's normalisation), or ``force_rms``, the root mean square of the training force components times 1 Å
    (NequIP's and MACE's), which makes the forces the network must produce of order one."""

    energy_weight: float = 1.0
    force_weight: float = 1.0
    loss: str = "mse"
    energy_scale: str = "energy_std"


@dataclass
class ExperimentConfig:
    """A whole experiment; ``output`` is the run directory (checkpoints, metrics, plots, resolved config)."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: str = "runs/experiment"


@dataclass
class ForecastDataConfig:
    """A forecasting task (:data:`systems.forecasting.TASK_NAMES`); the motion tasks read ``data_dir`` (the folder
    holding ``cmu_mocap/`` and ``eghn_motion/``). ``train_limit`` keeps only the first training samples."""

    task: str
    data_dir: Optional[str] = None
    train_limit: Optional[int] = None


@dataclass
class ForecastModelConfig:
    """A learned-integrator architecture (:data:`integrators.dynamics.DYNAMICS_ARCHITECTURES`) and its keyword
    arguments; ``num_types`` and ``horizon`` come from the task."""

    architecture: str = "sake"
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class ForecastTrainingConfig(OptimiserConfig):
    """Learned-integrator training: the loss is ``MSE(x) + velocity_weight * MSE(v * horizon)`` (both in squared
    length units; the papers' protocol is ``velocity_weight: 0``, a model that rolls out needs velocities too)."""

    batch_size: int = 100
    learning_rate: float = 5.0e-4
    weight_decay: float = 1.0e-12
    velocity_weight: float = 0.0


@dataclass
class ForecastExperimentConfig:
    """A learned-integrator experiment; ``output`` is the run directory."""

    data: ForecastDataConfig
    model: ForecastModelConfig = field(default_factory=ForecastModelConfig)
    training: ForecastTrainingConfig = field(default_factory=ForecastTrainingConfig)
    output: str = "runs/forecast"


def _finite(low: float, high: float = math.inf, closed_low: bool = True, closed_high: bool = True):
    def test(value: float) -> bool:
        above = value >= low if closed_low else value > low
        below = value <= high if closed_high else value < high
        return math.isfinite(value) and above and below

    return test


#: Field -> (test, what it must be) for the numbers of every section; None (where allowed) passes.
RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "epochs": (_finite(1), "at least 1"),
    "batch_size": (_finite(1), "at least 1"),
    "learning_rate": (_finite(0, closed_low=False), "a positive number"),
    "min_learning_rate": (_finite(0), "a number of 0 or more"),
    "warmup_epochs": (_finite(0), "0 or more"),
    "plateau_factor": (_finite(0, 1, closed_low=False), "above 0 and at most 1"),
    "plateau_patience": (_finite(0), "0 or more"),
    "max_minutes": (_finite(0, closed_low=False), "a positive number of minutes"),
    "max_cpu_minutes": (_finite(0, closed_low=False), "a positive number of minutes"),
    "weight_decay": (_finite(0), "a number of 0 or more"),
    "gradient_clip": (_finite(0, closed_low=False), "a positive number"),
    "ema_decay": (_finite(0, 1, closed_high=False), "at least 0 and below 1"),
    "patience": (_finite(1), "at least 1"),
    "test_every": (_finite(1), "at least 1"),
    "threads": (_finite(1), "at least 1"),
    "energy_weight": (_finite(0), "a number of 0 or more"),
    "force_weight": (_finite(0), "a number of 0 or more"),
    "velocity_weight": (_finite(0), "a number of 0 or more"),
    "train_limit": (_finite(1), "at least 1"),
    "seed": (_finite(0, 2**32 - 1), "an integer from 0 to 4294967295"),
}
#: Fields that name a file or folder: ``~`` in them is the home folder, as in a shell.
PATHS = {"path", "data_dir", "output"}


def check_config(config: Any, where: str = "config") -> None:
    """ValueError naming the first field of ``config`` (and its nested sections) outside :data:`RANGES`, or
    breaking a rule between fields."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            check_config(value, f"{where}.{item.name}")
        elif item.name in RANGES and value is not None:
            test, wanted = RANGES[item.name]
            if not test(value):
                raise ValueError(f"{where}.{item.name}: must be {wanted}, got {shown(value)}")
    if isinstance(config, OptimiserConfig) and config.min_learning_rate > config.learning_rate:
        raise ValueError(f"{where}.min_learning_rate: {config.min_learning_rate} is above learning_rate")
    if isinstance(config, TrainingConfig) and config.energy_weight + config.force_weight == 0:
        raise ValueError(f"{where}: energy_weight and force_weight are both 0; nothing would be learned")
    if isinstance(config, DataConfig) and isinstance(config.split, list):
        if len(config.split) != 3 or any(size == 0 or size < -1 for size in config.split) or config.split.count(-1) > 1:
            raise ValueError(
                f"{where}.split: three sizes (train, validation, test), each positive or one of them -1 (the rest); "
                f"got {config.split}"
            )
    if isinstance(config, (ExperimentConfig, ForecastExperimentConfig)) and not config.output.strip():
        raise ValueError(f"{where}.output: an empty path; name the run directory")


MERGE_TAG = "tag:yaml.org,2002:merge"
#: How a message shows a config value: YAML anchors can make a small file hold a list of billions of items.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """``repr(value)``, shortened (a few items per level, two levels, 200 characters)."""
    text = _REPR.repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the last silently). Merge
    keys (``<<: *anchor``) stand: a key given beside one overrides the merged mapping's, as YAML specifies."""

    def construct_mapping(self, node, deep=False):
        self._refuse_repeated_keys(node, deep)
        return super().construct_mapping(node, deep=deep)  # SafeLoader's flattens the merge keys

    def _refuse_repeated_keys(self, node, deep: bool) -> None:
        """ConstructorError naming the keys given twice in the mapping ``node`` or in a mapping merged into it."""
        keys = []
        for key, value in node.value:
            if key.tag != MERGE_TAG:
                keys.append(self.construct_object(key, deep=deep))
                continue
            for merged in value.value if isinstance(value, yaml.SequenceNode) else [value]:
                if isinstance(merged, yaml.MappingNode):
                    self._refuse_repeated_keys(merged, deep)
        counts = collections.Counter(key if isinstance(key, collections.abc.Hashable) else str(key) for key in keys)
        repeated = sorted(str(key) for key, count in counts.items() if count > 1)  # linear: 60,000 keys take no time
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key(s) {repeated} given more than once", node.start_mark
            )


def _checked(value: Any, annotation: Any, where: str) -> Any:
    """``value`` if it has the field's type (ints are accepted as floats); ValueError naming the key if not.

    Checks scalars, ``Optional``/unions of them, ``list[T]`` and ``dict`` fields; ``Any`` passes.
    """
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        errors = []
        for option in (a for a in arguments if a is not type(None)):
            try:
                return _checked(value, option, where)
            except ValueError as error:
                errors.append(str(error).split(": ", 1)[1])
        raise ValueError(f"{where}: {' or '.join(errors)}")
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {shown(value)}")
        return [_checked(item, arguments[0], f"{where}[{i}]") for i, item in enumerate(value)] if arguments else value
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {shown(value)}")
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, bool, str) and type(value) is not annotation:
        raise ValueError(f"{where}: expected {annotation.__name__}, got {shown(value)}")
    if annotation is float:
        hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str) else ""
        raise ValueError(f"{where}: expected a number, got {shown(value)}{hint}")
    return value


def _build(cls, values: Any, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if not isinstance(key, str):
            raise ValueError(
                f"{where}: the key {shown(key)} is not a setting name (YAML read it as {type(key).__name__}); allowed: "
                f"{sorted(fields)}"
            )
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        nested = fields[name].type
        if dataclasses.is_dataclass(nested):
            value = _build(nested, value, f"{where}.{name}")
        else:
            value = _checked(value, nested, f"{where}.{name}")
        if name in PATHS and isinstance(value, str):
            value = os.path.expanduser(value)
        kwargs[name] = value
    required = [
        name
        for name, field in fields.items()
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in values]
    if missing:
        raise ValueError(f"{where}: missing the required key(s) {missing}")
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"{where}: {error}") from None


def load_config(path: str | Path) -> ExperimentConfig | ForecastExperimentConfig:
    """Read an experiment YAML strictly: a learned-integrator experiment if its ``data`` names a ``task``, an
    energy + force experiment otherwise."""
    path = require_file(path, "config")
    try:
        with text_file(path, "a YAML config"):
            values = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_StrictLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    except RecursionError:
        raise ValueError(f"{path}: values nested too deeply to be a config (lists or mappings in each other)") from None
    forecast = isinstance(values, dict) and isinstance(values.get("data"), dict) and "task" in values["data"]
    if not forecast and isinstance(values, dict) and isinstance(values.get("data"), dict):
        names = {f.name for f in dataclasses.fields(ForecastDataConfig)} - {
            f.name for f in dataclasses.fields(DataConfig)
        }
        integrator_keys = sorted(set(values["data"]) & names)
        if integrator_keys:
            from systems.forecasting import TASK_NAMES

            raise ValueError(
                f"{path}.data: {integrator_keys} belong to a learned-integrator config, which names its task: add "
                f"data.task (one of {', '.join(TASK_NAMES)})"
            )
    config = _build(ForecastExperimentConfig if forecast else ExperimentConfig, values, str(path))
    check_config(config, str(path))
    return config


def dump_config(config: ExperimentConfig | ForecastExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
