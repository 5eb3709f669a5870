"""Forecasting with a learned integrator: one horizon, autoregressive roll-outs and ensembles.

Arrays are NumPy in the task's units; the network runs in batches without gradients.
"""

import numpy as np
import torch
from torch import nn


def _check_inputs(positions: np.ndarray, velocities: np.ndarray, types: np.ndarray) -> None:
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


def step(
    model: nn.Module, positions: np.ndarray, velocities: np.ndarray, types: np.ndarray, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """One horizon ahead: ``positions``, ``velocities`` (S, N, 3), ``types`` (S, N) -> the same two arrays (the
    network runs on the model's device)."""
    _check_inputs(positions, velocities, types)
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


def rollout(
    model: nn.Module, positions: np.ndarray, velocities: np.ndarray, types: np.ndarray, horizons: int
) -> tuple[np.ndarray, np.ndarray]:
    """``horizons`` forecasts, each starting from the last: positions and velocities (S, horizons + 1, N, 3),
    index 0 being the input."""
    if horizons < 1:
        raise ValueError(f"horizons must be at least 1, got {horizons}")
    xs, vs = [np.asarray(positions, np.float64)], [np.asarray(velocities, np.float64)]
    for _ in range(horizons):
        x, v = step(model, xs[-1], vs[-1], types)
        xs.append(x)
        vs.append(v)
    return np.stack(xs, axis=1), np.stack(vs, axis=1)


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
        model, noisy_x.reshape(flat), noisy_v.reshape(flat), np.repeat(types, members, axis=0), horizons
    )
    trajectories = trajectories.reshape((num_systems, members) + trajectories.shape[1:])
    deviation = trajectories - trajectories.mean(axis=1, keepdims=True)
    spread = np.sqrt((deviation**2).sum(-1).mean(axis=(1, 3)))
    return trajectories, spread
