"""Forecasting with a learned integrator: one horizon, autoregressive roll-outs and ensembles.

Arrays are NumPy in the task's units; the network runs in batches without gradients.
"""

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from attnforce.memory import available_memory_bytes

#: Particles closer than this (in the task's length unit) coincide: their direction is undefined, and for charges the
#: Coulomb force is infinite. The tasks' data never come closer than 0.02 (N-body) or 0.26 (motion capture).
COINCIDENT_DISTANCE = 1e-6
#: Largest position or velocity component accepted (task units): the tasks' data stay within 11 (N-body), 50
#: (walking) and 180 (running velocities); a learned integrator far beyond its data extrapolates meaninglessly.
MAX_STATE = 1e4


def _check_inputs(positions: np.ndarray, velocities: np.ndarray, types: np.ndarray) -> None:
    """ValueError naming the problem for arrays of the wrong shape, non-finite values, values beyond
    :data:`MAX_STATE` and coinciding particles."""
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape (S, N, 3), got {list(positions.shape)}")
    if velocities.shape != positions.shape:
        raise ValueError(
            f"velocities must have the positions' shape {list(positions.shape)}, got {list(velocities.shape)}"
        )
    if types.shape != positions.shape[:2]:
        raise ValueError(f"particle types must have shape {list(positions.shape[:2])}, got {list(types.shape)}")
    for name, values in (("positions", positions), ("velocities", velocities)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contain NaN or infinite values")
        largest = float(np.abs(values).max()) if values.size else 0.0
        if largest > MAX_STATE:
            raise ValueError(
                f"{name} reach {largest:.3g}, far beyond any of the tasks' data (within 200 in their units): a "
                "forecast there means nothing; give them in the task's units"
            )
    separations = np.linalg.norm(positions[:, :, None] - positions[:, None], axis=-1)
    separations[:, np.arange(positions.shape[1]), np.arange(positions.shape[1])] = np.inf
    if separations.size and separations.min() < COINCIDENT_DISTANCE:
        system, first, second = np.unravel_index(np.argmin(separations), separations.shape)
        raise ValueError(
            f"particles {first} and {second} of system {system} coincide ({separations.min():.3g} apart): their "
            "interaction is undefined; give distinct positions"
        )


def step(
    model: nn.Module, positions: np.ndarray, velocities: np.ndarray, types: np.ndarray, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """One horizon ahead: ``positions``, ``velocities`` (S, N, 3), ``types`` (S, N) -> the same two arrays (the
    network runs on the model's device)."""
    _check_inputs(positions, velocities, types)
    return _advance(model, positions, velocities, types, batch_size)


def _advance(
    model: nn.Module, positions: np.ndarray, velocities: np.ndarray, types: np.ndarray, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`step` without the checks of its inputs (a roll-out checks its initial state once)."""
    dtype, device = next(model.parameters()).dtype, next(model.parameters()).device
    out_x, out_v = np.empty_like(positions, dtype=np.float64), np.empty_like(velocities, dtype=np.float64)
    with torch.no_grad():
        for first in range(0, len(positions), batch_size):
            part = slice(first, first + batch_size)
            x, v = model(
                torch.as_tensor(positions[part], dtype=dtype, device=device),
                torch.as_tensor(velocities[part], dtype=dtype, device=device),
                torch.as_tensor(types[part], dtype=torch.int64, device=device),
            )
            out_x[part], out_v[part] = x.double().cpu().numpy(), v.double().cpu().numpy()
    if not (np.all(np.isfinite(out_x)) and np.all(np.isfinite(out_v))):
        raise FloatingPointError("the learned integrator produced NaN or infinite positions or velocities")
    return out_x, out_v


def check_forecast_memory(
    systems: int, particles: int, horizons: int, members: int = 0, reference_frames_per_horizon: int = 0
) -> None:
    """Refuse, before allocating, a forecast whose arrays would not fit in memory (ValueError naming the size).

    Counts float64 positions and velocities (S, K + 1, N, 3) and their copy in the written NPZ, the reference
    paths (S, K * frames + 1, N, 3) when compared against, and an ensemble's members with their deviations.
    """
    states = systems * (horizons + 1) * particles * 3 * 8
    needed = 3 * states + systems * (horizons * reference_frames_per_horizon + 1) * particles * 3 * 8
    needed += 3 * members * states
    available = available_memory_bytes()
    if needed > 0.8 * available:
        ensemble = f" with an ensemble of {members} member(s) each" if members else ""
        largest = "a smaller --ensemble" if 3 * members * states > needed / 2 else "fewer --horizons"
        raise ValueError(
            f"{horizons} horizon(s) of {systems} system(s){ensemble} need about {needed / 2**30:.3g} GiB, and "
            f"{available / 2**30:.3g} GiB of memory is free: ask for {largest} (or fewer --horizons, systems in "
            "--initial or --ensemble members)"
        )


def rollout(
    model: nn.Module,
    positions: np.ndarray,
    velocities: np.ndarray,
    types: np.ndarray,
    horizons: int,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``horizons`` forecasts, each starting from the last: positions and velocities (S, horizons + 1, N, 3),
    index 0 being the input (a tqdm bar over the horizons with ``progress``)."""
    if horizons < 1:
        raise ValueError(f"horizons must be at least 1, got {horizons}")
    positions, velocities = np.asarray(positions, np.float64), np.asarray(velocities, np.float64)
    _check_inputs(positions, velocities, types)
    xs = np.empty((len(positions), horizons + 1) + positions.shape[1:])
    vs = np.empty_like(xs)
    xs[:, 0], vs[:, 0] = positions, velocities
    for k in tqdm(range(horizons), desc="forecast", unit="horizon", disable=not progress):
        xs[:, k + 1], vs[:, k + 1] = _advance(model, xs[:, k], vs[:, k], types)
    return xs, vs


def ensemble(
    model: nn.Module,
    positions: np.ndarray,
    velocities: np.ndarray,
    types: np.ndarray,
    horizons: int,
    members: int,
    position_noise: float,
    velocity_noise: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Roll out ``members`` copies of every initial state perturbed by Gaussian noise (standard deviations in the
    task's length and velocity units, per coordinate).

    Returns:
        positions (S, members, horizons + 1, N, 3), and the spread (S, horizons + 1): the root-mean-square distance
        of the members' particles from the ensemble mean at each step.
    """
    if members < 1:
        raise ValueError(f"an ensemble needs at least 1 member, got {members}")
    rng = np.random.default_rng(seed)
    num_systems = len(positions)
    noisy_x = positions[:, None] + position_noise * rng.standard_normal((num_systems, members) + positions.shape[1:])
    noisy_v = velocities[:, None] + velocity_noise * rng.standard_normal((num_systems, members) + velocities.shape[1:])
    flat = (num_systems * members,) + positions.shape[1:]
    trajectories, _ = rollout(
        model, noisy_x.reshape(flat), noisy_v.reshape(flat), np.repeat(types, members, axis=0), horizons, progress
    )
    trajectories = trajectories.reshape((num_systems, members) + trajectories.shape[1:])
    deviation = trajectories - trajectories.mean(axis=1, keepdims=True)
    spread = np.sqrt((deviation**2).sum(-1).mean(axis=(1, 3)))
    return trajectories, spread
