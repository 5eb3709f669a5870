"""Forecasting tasks for learned integrators: a state (positions, velocities, particle types) and the state one
fixed horizon later.

- ``nbody``: charged 5-body systems (:mod:`systems.nbody`), the EGNN protocol: frame 30 -> frame 40, i.e. 1000
  steps of 0.001 = 1 time unit ahead; 3000 / 2000 / 2000 systems simulated with seeds 1 / 2 / 3 (dimensionless
  units). Types: 0 = charge -1, 1 = charge +1.
- ``walking``: CMU subject 35 walking (``cmu_mocap/cmu35WalkJog.mat`` through forward kinematics over ``35.asf``;
  ASF length units, seconds). Frames at 30 fps; the state at frame t is the joint positions and the backward
  difference ``(x_t - x_{t-1}) * 30`` (known at time t); the target is frame t + 8 (0.267 s; GMN forecasts 30
  frames at 120 fps, 0.25 s). Every frame with a target is a sample. Trials are split as GMN/EGHN split them (see
  :data:`GMN_WALKING_SPLIT`). Types: the 31 joints.
- ``running``: the CMU running trials of EGHN (``eghn_motion/motion_run.pkl``, joint positions at 120 fps),
  30 frames (0.25 s) ahead, split as in ``split_run.pkl`` (:data:`EGHN_RUNNING_SPLIT`).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnforce.paths import require_file
from systems.mocap import forward_kinematics, read_asf
from systems.nbody import simulate
from systems.restricted_pickle import load_array_pickle

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class ForecastTask:
    """What a task is: its horizon, units and particles.

    Attributes:
        name: ``nbody``, ``walking`` or ``running``.
        horizon: time one forecast advances, in ``time_unit``.
        horizon_frames: the same in frames of the task's data.
        length_unit, time_unit: units of positions and of time (velocities are length_unit / time_unit).
        particle_names: one name per particle type (types index this list).
        bonds: pairs of particle indices drawn as bonds (the skeleton); empty for N-body.
    """

    name: str
    horizon: float
    horizon_frames: int
    length_unit: str
    time_unit: str
    particle_names: tuple[str, ...]
    bonds: tuple[tuple[int, int], ...] = ()

    @property
    def num_types(self) -> int:
        return len(self.particle_names)


@dataclass
class ForecastSamples:
    """S initial states and their targets one horizon later.

    Attributes:
        positions, velocities: (S, N, 3) initial state.
        types: (S, N) int64 particle types.
        target_positions, target_velocities: (S, N, 3) the state one horizon later.
        charges: (S, N) for N-body, else None.
    """

    positions: np.ndarray
    velocities: np.ndarray
    types: np.ndarray
    target_positions: np.ndarray
    target_velocities: np.ndarray
    charges: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, indices: np.ndarray) -> "ForecastSamples":
        return ForecastSamples(
            self.positions[indices],
            self.velocities[indices],
            self.types[indices],
            self.target_positions[indices],
            self.target_velocities[indices],
            None if self.charges is None else self.charges[indices],
        )


# ---------------------------------------------------------------------------------------------------------- N-body

#: (number of systems, simulation seed) of each split.
NBODY_SPLITS = {"train": (3000, 1), "validation": (2000, 2), "test": (2000, 3)}
NBODY_START_FRAME, NBODY_HORIZON_FRAMES, NBODY_SAMPLE_EVERY, NBODY_DT = 30, 10, 100, 0.001
NBODY_PARTICLES = 5

NBODY = ForecastTask(
    "nbody",
    horizon=NBODY_HORIZON_FRAMES * NBODY_SAMPLE_EVERY * NBODY_DT,
    horizon_frames=NBODY_HORIZON_FRAMES,
    length_unit="dimensionless",
    time_unit="dimensionless",
    particle_names=("negative", "positive"),
)


def charge_types(charges: np.ndarray) -> np.ndarray:
    """Particle types (0 for charge -1, 1 for +1) of ``charges`` (S, N); ValueError for any other charge."""
    charges = np.asarray(charges)
    if not np.all(np.isin(charges, (-1.0, 1.0))):
        raise ValueError("N-body charges must each be +1 or -1")
    return (charges > 0).astype(np.int64)


def nbody_trajectories(split: str, horizons: int = 1, num_systems: int | None = None):
    """The split's systems (the first ``num_systems`` of them if given) simulated far enough for ``horizons``
    forecasts from frame 30 (see :func:`systems.nbody.simulate`; longer runs repeat the shorter ones' frames)."""
    size, seed = NBODY_SPLITS[split]
    last = NBODY_START_FRAME + horizons * NBODY_HORIZON_FRAMES
    steps = max(5000, (last + 1) * NBODY_SAMPLE_EVERY)
    return simulate(
        size, seed, NBODY_PARTICLES, steps=steps, sample_every=NBODY_SAMPLE_EVERY, dt=NBODY_DT, keep=num_systems
    )


def nbody_samples(split: str, num_systems: int | None = None) -> ForecastSamples:
    """Frame 30 -> frame 40 of the split's systems (the first ``num_systems`` of them if given)."""
    data = nbody_trajectories(split, num_systems=num_systems)
    start, end = NBODY_START_FRAME, NBODY_START_FRAME + NBODY_HORIZON_FRAMES
    return ForecastSamples(
        data.positions[:, start],
        data.velocities[:, start],
        charge_types(data.charges),
        data.positions[:, end],
        data.velocities[:, end],
        data.charges,
    )


# --------------------------------------------------------------------------------------------------------- motion

WALKING_FPS, WALKING_HORIZON_FRAMES = 30, 8
RUNNING_FPS, RUNNING_HORIZON_FRAMES = 120, 30

#: The 23 walking trials of ``cmu35WalkJog.mat`` (``Y``'s 31 sequences, then ``Ytest``'s 2), in file order. The
#: other 10 are the jogging trials, all shorter than 45 frames (at most 180 at 120 fps: too short for GMN's start
#: frames, which reach 299).
WALKING_SEQUENCES = (*range(16), *range(25, 31), 32)

#: GMN/EGHN's walking split (``eghn_motion/split.pkl``: 11/6/6 trial ids 0-22), applied to
#: :data:`WALKING_SEQUENCES` in order. GMN's own files number the trials of the 120 fps originals; that their order
#: is this file's order is an assumption (both list CMU's walking trials of subject 35).
GMN_WALKING_SPLIT = {
    "train": (1, 2, 4, 5, 7, 9, 13, 14, 16, 17, 20),
    "validation": (3, 8, 11, 12, 15, 18),
    "test": (0, 6, 10, 19, 21, 22),
}

#: EGHN's running split (``eghn_motion/split_run.pkl``): indices into ``motion_run.pkl``'s trials.
EGHN_RUNNING_SPLIT = {"train": (1, 2, 5, 6, 10), "validation": (0, 4, 9), "test": (3, 7, 8)}


def _mocap_sequences(mat_path: Path) -> list[np.ndarray]:
    """Every trial of ``cmu35WalkJog.mat`` as channels (T, 62): ``Y``'s, then ``Ytest``'s, in order."""
    from scipy.io import loadmat

    require_file(mat_path, "motion")
    try:
        mat = loadmat(mat_path)
        sequences = []
        for frames, labels in ((mat["Y"], mat["lbls"]), (mat["Ytest"], mat["lblstest"])):
            trial = np.argmax(labels, axis=1)
            sequences += [frames[trial == k] for k in range(labels.shape[1])]
    except (KeyError, ValueError, OSError) as error:
        raise ValueError(f"{mat_path}: not the cmu35WalkJog motion file ({type(error).__name__}: {error})") from None
    return sequences


def walking_trials(cmu_dir: str | Path) -> tuple[list[np.ndarray], list[tuple[int, int]], list[str]]:
    """Joint positions (T, 31, 3) of the 23 walking trials, the skeleton's bonds and joint names."""
    cmu_dir = Path(cmu_dir)
    skeleton = read_asf(cmu_dir / "35.asf")
    sequences = _mocap_sequences(cmu_dir / "cmu35WalkJog.mat")
    trials = [forward_kinematics(skeleton, sequences[k]) for k in WALKING_SEQUENCES]
    return trials, skeleton.edges, skeleton.joint_names


def running_trials(motion_run_pkl: str | Path) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Joint positions (T, 31, 3) of EGHN's 11 running trials and their bonds."""
    path = require_file(motion_run_pkl, "motion")
    content = load_array_pickle(path)  # never the full unpickler: a crafted file could run code
    try:
        edges, trials = content
        if not all(isinstance(trial, np.ndarray) for trial in trials):  # nested lists could be a reference bomb
            raise ValueError("its trials must be NumPy arrays (T, 31, 3)")
        trials = [np.asarray(trial, dtype=np.float64) for trial in trials]
        bonds = [(int(i), int(j)) for i, j in edges]
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not EGHN's motion pickle ({type(error).__name__}: {error})") from None
    if any(trial.ndim != 3 or trial.shape[1:] != (31, 3) for trial in trials):
        raise ValueError(f"{path}: trials must be arrays (T, 31, 3)")
    needed = 1 + max(max(ids) for ids in EGHN_RUNNING_SPLIT.values())
    if len(trials) < needed:
        raise ValueError(f"{path}: holds {len(trials)} trials; EGHN's running split uses {needed}")
    if not all(np.all(np.isfinite(trial)) for trial in trials):
        raise ValueError(f"{path}: joint positions contain NaN or infinite values")
    if not all(0 <= i < 31 and 0 <= j < 31 for i, j in bonds):
        raise ValueError(f"{path}: bonds must join joints 0 to 30")
    return trials, bonds


def trial_samples(trials: list[np.ndarray], fps: float, horizon_frames: int) -> ForecastSamples:
    """Every frame t >= 1 with t + horizon < T of each trial (T, J, 3): state (x_t, (x_t - x_{t-1}) fps), target
    (x_{t+h}, (x_{t+h} - x_{t+h-1}) fps); types are joint indices."""
    parts = []
    for trial in trials:
        velocity = np.diff(trial, axis=0) * fps  # velocity[k] belongs to frame k + 1
        starts = np.arange(1, len(trial) - horizon_frames)
        ends = starts + horizon_frames
        parts.append((trial[starts], velocity[starts - 1], trial[ends], velocity[ends - 1]))
    positions, velocities, targets, target_velocities = (np.concatenate(a) for a in zip(*parts, strict=True))
    types = np.broadcast_to(np.arange(positions.shape[1]), positions.shape[:2]).copy()
    return ForecastSamples(positions, velocities, types, targets, target_velocities)


def _walking_task(names: list[str], bonds: list[tuple[int, int]]) -> ForecastTask:
    return ForecastTask(
        "walking",
        horizon=WALKING_HORIZON_FRAMES / WALKING_FPS,
        horizon_frames=WALKING_HORIZON_FRAMES,
        length_unit="ASF unit (1/0.45 inch)",
        time_unit="s",
        particle_names=tuple(names),
        bonds=tuple(bonds),
    )


def _running_task(bonds: list[tuple[int, int]]) -> ForecastTask:
    return ForecastTask(
        "running",
        horizon=RUNNING_HORIZON_FRAMES / RUNNING_FPS,
        horizon_frames=RUNNING_HORIZON_FRAMES,
        length_unit="ASF unit (1/0.45 inch)",
        time_unit="s",
        particle_names=tuple(f"joint{k}" for k in range(31)),
        bonds=tuple(bonds),
    )


@dataclass
class ReferencePaths:
    """Initial states and the reference motion that follows them, for roll-outs of several horizons.

    Attributes:
        positions, velocities: (S, N, 3) initial states; types (S, N); charges (S, N) for N-body, else None.
        paths: (S, F, N, 3) the reference positions at every data frame from the initial state on; F - 1 is a
            multiple of the horizon in frames, and ``paths[:, ::horizon_frames]`` are the states at each horizon.
    """

    positions: np.ndarray
    velocities: np.ndarray
    types: np.ndarray
    paths: np.ndarray
    charges: np.ndarray | None = None


def trial_paths(trials: list[np.ndarray], fps: float, horizon_frames: int, horizons: int) -> ReferencePaths:
    """Every start frame t >= 1 of each trial with t + horizons * horizon_frames in it, and the frames up to there."""
    length = horizons * horizon_frames
    starts_of = [np.arange(1, len(trial) - length) for trial in trials]
    if sum(map(len, starts_of)) == 0:
        raise ValueError(f"no trial is longer than {length + 1} frames: ask for fewer horizons")
    positions = np.concatenate([trial[starts] for trial, starts in zip(trials, starts_of, strict=True)])
    velocities = np.concatenate(
        [(trial[starts] - trial[starts - 1]) * fps for trial, starts in zip(trials, starts_of, strict=True)]
    )
    paths = np.concatenate(
        [
            np.stack([trial[t : t + length + 1] for t in starts])
            for trial, starts in zip(trials, starts_of, strict=True)
            if len(starts)
        ]
    )
    types = np.broadcast_to(np.arange(positions.shape[1]), positions.shape[:2]).copy()
    return ReferencePaths(positions, velocities, types, paths)


#: The walking test trials' joint positions, shipped with the package (``attnforce/data``) so that forecasts on
#: the test set need no download: ``trial_<k>`` (T, 31, 3), the GMN test trials in order.
EMBEDDED_WALKING_TEST_TRIALS = "walking_test_trials.npz"


def _embedded_walking_test_trials() -> list[np.ndarray]:
    from importlib import resources

    path = resources.files("attnforce") / "data" / EMBEDDED_WALKING_TEST_TRIALS
    with np.load(str(path)) as stored:
        return [stored[f"trial_{k}"].astype(np.float64) for k in range(len(stored.files))]


def reference_paths(name: str, horizons: int, data_dir: str | Path | None = None) -> ReferencePaths:
    """The test set's initial states with the reference motion over ``horizons`` horizons. N-body simulates the
    test systems further; walking reads ``data_dir`` or, without one, the test trials shipped with the package."""
    if horizons < 1:
        raise ValueError(f"horizons must be at least 1, got {horizons}")
    if name == "nbody":
        data = nbody_trajectories("test", horizons)
        start, end = NBODY_START_FRAME, NBODY_START_FRAME + horizons * NBODY_HORIZON_FRAMES
        return ReferencePaths(
            data.positions[:, start],
            data.velocities[:, start],
            charge_types(data.charges),
            data.positions[:, start : end + 1],
            data.charges,
        )
    if name == "walking":
        if data_dir is None:
            trials = _embedded_walking_test_trials()
        else:
            all_trials = walking_trials(Path(data_dir) / "cmu_mocap")[0]
            trials = [all_trials[k] for k in GMN_WALKING_SPLIT["test"]]
        return trial_paths(trials, WALKING_FPS, WALKING_HORIZON_FRAMES, horizons)
    if name == "running":
        if data_dir is None:
            raise ValueError("the running task reads eghn_motion/motion_run.pkl: give the data folder")
        all_trials = running_trials(Path(data_dir) / "eghn_motion" / "motion_run.pkl")[0]
        return trial_paths(
            [all_trials[k] for k in EGHN_RUNNING_SPLIT["test"]], RUNNING_FPS, RUNNING_HORIZON_FRAMES, horizons
        )
    raise ValueError(f"unknown forecasting task {name!r}; known: {list(TASK_NAMES)}")


# ----------------------------------------------------------------------------------------------------------- tasks

TASK_NAMES = ("nbody", "walking", "running")


def load_task(name: str, data_dir: str | Path | None = None) -> ForecastTask:
    """The task's description; the motion tasks read their skeleton from ``data_dir`` (the folder holding
    ``cmu_mocap/`` and ``eghn_motion/``)."""
    if name == "nbody":
        return NBODY
    if name not in TASK_NAMES:
        raise ValueError(f"unknown forecasting task {name!r}; known: {list(TASK_NAMES)}")
    if data_dir is None:
        raise ValueError(f"the {name} task reads its data from a folder: give data_dir")
    data_dir = Path(data_dir)
    if name == "walking":
        skeleton = read_asf(data_dir / "cmu_mocap" / "35.asf")
        return _walking_task(skeleton.joint_names, skeleton.edges)
    return _running_task(running_trials(data_dir / "eghn_motion" / "motion_run.pkl")[1])


def load_split(name: str, split: str, data_dir: str | Path | None = None, limit: int | None = None) -> ForecastSamples:
    """Samples of one split (``train``, ``validation`` or ``test``) of a task; ``limit`` keeps the first ones
    (N-body simulates only those)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
    if name == "nbody":
        return nbody_samples(split, limit)
    load_task(name, data_dir)  # validates the name and the folder
    data_dir = Path(data_dir)
    if name == "walking":
        trials = walking_trials(data_dir / "cmu_mocap")[0]
        samples = trial_samples([trials[k] for k in GMN_WALKING_SPLIT[split]], WALKING_FPS, WALKING_HORIZON_FRAMES)
    else:
        trials = running_trials(data_dir / "eghn_motion" / "motion_run.pkl")[0]
        samples = trial_samples([trials[k] for k in EGHN_RUNNING_SPLIT[split]], RUNNING_FPS, RUNNING_HORIZON_FRAMES)
    if len(samples) == 0:
        raise ValueError(f"the {split} split of the {name} task has no samples: its trials are shorter than a horizon")
    return samples if limit is None else samples.subset(np.arange(min(limit, len(samples))))
