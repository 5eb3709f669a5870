"""Energy and force errors of a potential on labelled frames."""

import logging

import numpy as np
import torch

from attnforce import keys
from attnforce.models import Potential
from attnforce.units import EV_PER_ENERGY_UNIT, mev_per_ev
from systems.frames import Frames, collate
from training.statistics import PLAUSIBLE_FORCE_RMS, nearest_unit, rms

logger = logging.getLogger(__name__)


def predict(potential: Potential, frames: Frames, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Predicted energies (F,) eV and forces (F, N, 3) eV/Å, computed on the potential's device."""
    dtype, device = potential.energy_scale.dtype, potential.energy_scale.device
    energies, forces = [], []
    with torch.enable_grad():
        for start in range(0, len(frames), batch_size):
            indices = np.arange(start, min(start + batch_size, len(frames)))
            batch = {k: v.to(device) for k, v in collate(frames, indices, dtype).items()}
            energy, force = potential(
                batch[keys.POSITIONS], batch[keys.ATOMIC_NUMBERS], batch[keys.BATCH], len(indices)
            )
            energies.append(energy.detach().double().cpu().numpy())
            forces.append(force.detach().double().cpu().numpy().reshape(len(indices), -1, 3))
    return np.concatenate(energies), np.concatenate(forces)


def check_predictions(energies: np.ndarray, forces: np.ndarray, model: str, data: str) -> None:
    """Refuse predictions (energies (F,) eV, forces (F, N, 3) eV/Å) of ``model`` on ``data`` that are not finite, or
    forces of a size no molecule has (an RMS outside :data:`~training.statistics.PLAUSIBLE_FORCE_RMS`): the model file
    is then damaged or altered, whatever the data's unit, so the data's unit must not be blamed."""
    if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(forces))):
        raise FloatingPointError(f"{model} predicts NaN or infinite energies or forces on {data}")
    predicted = rms(forces)
    low, high = PLAUSIBLE_FORCE_RMS
    if predicted > 0 and not low <= predicted <= high:
        raise ValueError(
            f"{model}: its forces on {data} have an RMS of {predicted:.3g} eV/Å, outside the {low:g}-{high:g} eV/Å "
            "of any molecule: the model file was altered or damaged (use the file training wrote)"
        )


#: Factor by which the reference energies may vary more or less than the model's from frame to frame before
#: :func:`warn_energy_scale_or_offset` calls them scaled (the energy units differ by 23 (kcal/mol and eV) or more,
#: except kcal and kJ; a model worth evaluating follows the energies' variation to well within this).
ENERGY_SPREAD_FACTOR = 10.0


def warn_energy_scale_or_offset(
    energies: np.ndarray, frames: Frames, per_atom: float = 0.05, spread: float = 10.0
) -> None:
    """Warn when the reference energies are the predictions (eV) scaled: their spread over the frames
    :data:`ENERGY_SPREAD_FACTOR` times the predictions' or more, or that much less (an energy unit other than the
    one stated, judged from as few as 2 frames, where :func:`training.statistics.energy_force_agreement` needs 20).
    Else warn when they differ by nearly a constant, of more than ``per_atom`` eV per atom and ``spread`` times the
    errors' standard deviation: the data then have another zero of energy (atomization energies, another code or
    level of theory), which the energy errors measure and the force errors do not."""
    reference = np.asarray(frames.energies, dtype=np.float64)
    reference_spread, predicted_spread = float(np.std(reference)), float(np.std(energies))
    if len(reference) > 1 and predicted_spread > 1e-3:  # the frames differ by more than 1 meV: a ratio to judge
        ratio = reference_spread / predicted_spread
        if not 1 / ENERGY_SPREAD_FACTOR < ratio < ENERGY_SPREAD_FACTOR:
            logger.warning(
                "%s: its energies vary %.3g times as much as the model's over these %d frames (standard deviation "
                "%.3g eV against %.3g eV): they are scaled, most likely in another unit than the one given "
                "(--energy-unit); the energy errors measure that scale",
                frames.source,
                ratio,
                len(reference),
                reference_spread,
                predicted_spread,
            )
            return
    difference = reference - energies
    offset = float(np.mean(difference))
    if (
        len(difference) > 1
        and abs(offset) > per_atom * len(frames.atomic_numbers)
        and abs(offset) > spread * float(np.std(difference))
    ):
        logger.warning(
            "%s: its energies are the model's %+.6g eV (%+.3g eV per atom, nearly constant): another zero of energy "
            "(atomization energies, another code or level of theory); the energy errors measure that offset, the "
            "force errors do not",
            frames.source,
            offset,
            offset / len(frames.atomic_numbers),
        )


def check_energy_unit(forces: np.ndarray, frames: Frames, energy_unit: str, margin: float = 5.0) -> None:
    """Refuse a stated energy unit that the predictions contradict: ValueError when reading the reference forces in
    another unit of :data:`~attnforce.units.EV_PER_ENERGY_UNIT` brings them ``margin`` times closer to the
    predicted forces (eV/Å, (F, N, 3)) than ``energy_unit`` does, either in their mean error or in their size (root
    mean square: a model far from its training molecule still predicts forces of the right size, while its errors
    may be as large as the forces). Forces decide, since energies carry an arbitrary per-molecule offset; a factor
    of 5 separates every pair of the units but kcal and kJ (4.2 in the forces' size), which the error ratio
    separates for any model worth evaluating."""
    stated = EV_PER_ENERGY_UNIT[energy_unit]
    raw = np.asarray(frames.forces[: min(len(frames), 256)]) / stated  # the file's numbers
    predicted = forces[: len(raw)]
    errors = {unit: float(np.mean(np.abs(predicted - raw * ev))) for unit, ev in EV_PER_ENERGY_UNIT.items()}
    best = min(errors, key=errors.get)
    if best != energy_unit and errors[best] * margin < errors[energy_unit]:
        raise ValueError(
            f"{frames.source}: its forces match the model's in {best} (mean error {errors[best] * mev_per_ev:.3g} "
            f"meV/Å), not in {energy_unit} ({errors[energy_unit] * mev_per_ev:.3g} meV/Å): give --energy-unit {best} "
            "if that is the file's unit"
        )
    predicted_rms, raw_rms = rms(predicted), rms(raw)
    if not (predicted_rms > 0 and raw_rms > 0):
        return
    closest, closest_rms = nearest_unit(raw_rms, predicted_rms)
    stated_off, closest_off = abs(np.log(raw_rms * stated / predicted_rms)), abs(np.log(closest_rms / predicted_rms))
    if closest != energy_unit and stated_off > np.log(margin) + closest_off:
        raise ValueError(
            f"{frames.source}: read in {energy_unit}, its forces' RMS is {raw_rms * stated:.3g} eV/Å, and the "
            f"model's on the same frames is {predicted_rms:.3g} eV/Å; in {closest} it would be "
            f"{closest_rms:.3g} eV/Å: give --energy-unit {closest} if that is the file's unit"
        )


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


def bootstrap_metrics(
    energies: np.ndarray, forces: np.ndarray, frames: Frames, resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """:func:`metrics` with bootstrap 95% intervals: frames (with all their atoms) are resampled with replacement
    ``resamples`` times, and each interval is the 2.5th to 97.5th percentile of the metric over the resamples.

    Returns:
        ``{metric: {"value": v, "low": l, "high": h}}`` for the four metrics of :func:`metrics`; ``low`` and ``high``
        are None for a single frame, which resampling cannot give an interval (a warning says so).
    """
    if resamples < 1:
        raise ValueError(f"the bootstrap needs at least 1 resample, got {resamples}")
    if len(frames) < 2:
        logger.warning("%s: one frame, so no bootstrap interval; evaluate more frames for one", frames.source)
        return {name: {"value": v, "low": None, "high": None} for name, v in metrics(energies, forces, frames).items()}
    energy_error = (energies - frames.energies) * mev_per_ev  # (F,)
    force_error = ((forces - frames.forces) * mev_per_ev).reshape(len(frames), -1)  # (F, 3N)
    per_frame = {
        "energy_mae_mev": np.abs(energy_error),
        "energy_rmse_mev": energy_error**2,
        "force_mae_mev_per_a": np.abs(force_error).mean(axis=1),
        "force_rmse_mev_per_a": (force_error**2).mean(axis=1),
    }
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(frames), size=(resamples, len(frames)))
    value = metrics(energies, forces, frames)
    result = {}
    for name, terms in per_frame.items():
        resampled = terms[draws].mean(axis=1)
        if "rmse" in name:
            resampled = np.sqrt(resampled)
        low, high = np.percentile(resampled, [2.5, 97.5])
        result[name] = {"value": value[name], "low": float(low), "high": float(high)}
    return result
