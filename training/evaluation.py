"""Energy and force errors of a potential on labelled frames."""

import numpy as np
import torch

from attnforce import keys
from attnforce.models import Potential
from attnforce.units import mev_per_ev
from systems.frames import Frames, collate


def predict(potential: Potential, frames: Frames, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Predicted energies (F,) eV and forces (F, N, 3) eV/Å."""
    dtype = potential.energy_scale.dtype
    energies, forces = [], []
    with torch.enable_grad():
        for start in range(0, len(frames), batch_size):
            indices = np.arange(start, min(start + batch_size, len(frames)))
            batch = collate(frames, indices, dtype)
            energy, force = potential(
                batch[keys.POSITIONS], batch[keys.ATOMIC_NUMBERS], batch[keys.BATCH], len(indices)
            )
            energies.append(energy.detach().double().numpy())
            forces.append(force.detach().double().numpy().reshape(len(indices), -1, 3))
    return np.concatenate(energies), np.concatenate(forces)


def metrics(energies: np.ndarray, forces: np.ndarray, frames: Frames) -> dict[str, float]:
    """Energy MAE/RMSE (meV) and force-component MAE/RMSE (meV/Å) of predictions (eV, eV/Å) against ``frames``."""
    energy_error = (energies - frames.energies) * mev_per_ev
    force_error = (forces - frames.forces) * mev_per_ev
    return {
        "energy_mae_mev": float(np.mean(np.abs(energy_error))),
        "energy_rmse_mev": float(np.sqrt(np.mean(energy_error**2))),
        "force_mae_mev_per_a": float(np.mean(np.abs(force_error))),
        "force_rmse_mev_per_a": float(np.sqrt(np.mean(force_error**2))),
    }


def error_metrics(potential: Potential, frames: Frames, batch_size: int = 32) -> dict[str, float]:
    """:func:`metrics` of the potential's predictions on ``frames``."""
    return metrics(*predict(potential, frames, batch_size), frames)
