"""Data-derived constants of a model, fitted on its training set, and the checks that data are what they claim."""

import logging
from typing import NamedTuple

import numpy as np
import torch

from systems.frames import Frames

logger = logging.getLogger(__name__)

#: How the energy scale is fitted (``TrainingConfig.energy_scale``).
ENERGY_SCALES = ("energy_std", "force_rms")


def fit_energy_statistics(frames: Frames, energy_scale: str = "energy_std") -> tuple[float, torch.Tensor]:
    """Per-element energy shifts (eV) by least squares on composition, and the energy scale (eV).

    For frames of one molecule the composition matrix has rank one: least squares then gives the
    minimum-norm shifts whose sum over the molecule is the mean energy: a model trained on one molecule gives
    meaningful forces for another made of the same elements, but its absolute energies there are arbitrary.
    The scale is the standard deviation of the training energies about those shifts (``energy_std``, SAKE's
    normalisation), or the root mean square of the training force components times 1 Å (``force_rms``, NequIP's
    and MACE's), in eV.

    Returns:
        (energy_scale, shifts) with shifts a (119,) float64 tensor.
    """
    if len(frames) < 2:
        raise ValueError(f"{frames.source}: energy statistics need at least 2 training frames, got {len(frames)}")
    elements = np.unique(frames.atomic_numbers)
    counts = np.array([[np.sum(frames.atomic_numbers == z) for z in elements]], dtype=np.float64)
    composition = np.repeat(counts, len(frames), axis=0)
    solution, *_ = np.linalg.lstsq(composition, frames.energies, rcond=None)
    shifts = torch.zeros(119, dtype=torch.float64)
    shifts[torch.as_tensor(elements)] = torch.as_tensor(solution)
    if energy_scale not in ENERGY_SCALES:
        raise ValueError(f"unknown energy scale {energy_scale!r}; choose from {list(ENERGY_SCALES)}")
    if energy_scale == "force_rms":
        scale = rms(np.asarray(frames.forces, dtype=np.float64))
        if not scale > 0:
            raise ValueError(f"{frames.source}: the training forces are all zero; no force scale can be fitted")
    else:
        scale = float(np.std(frames.energies - composition @ solution))
        if not scale > 0:
            raise ValueError(f"{frames.source}: the training energies do not vary; no energy scale can be fitted")
    return scale, shifts


def fit_average_degree(frames: Frames, cutoff: float, chunk: int = 256) -> float:
    """Mean number of neighbours within ``cutoff`` (Å) per atom over the frames (``chunk`` frames at a time)."""
    num_frames, num_atoms = frames.positions.shape[:2]
    neighbours = 0
    for first in range(0, num_frames, chunk):
        positions = np.asarray(frames.positions[first : first + chunk], dtype=np.float64)
        distances = np.linalg.norm(positions[:, :, None, :] - positions[:, None, :, :], axis=-1)
        neighbours += int((distances < cutoff).sum()) - len(positions) * num_atoms  # minus each atom itself
    return neighbours / (num_frames * num_atoms)


#: Root mean square of force components (eV/Å) that molecular data lie within, with a wide margin. Outside, no
#: data set is molecular in the stated energy unit (see :data:`TYPICAL_FORCE_RMS` for the usual range).
PLAUSIBLE_FORCE_RMS = (0.02, 20.0)
#: Root mean square of force components (eV/Å) of MD and normal-mode samples at 100-1000 K: molecules with
#: hydrogen, whose bonds are stiff, reach about 1 eV/Å (rMD17 aspirin 1.27, rMD17 ethanol 1.20, MD17 ethanol 1.15).
#: Data outside are accepted with a warning naming the unit that would bring them here: near-equilibrium frames,
#: or soft heavy-atom solids at low temperature, can be lower.
TYPICAL_FORCE_RMS = (0.2, 5.0)
#: Largest plausible size of a total energy per atom (eV): all-electron energies of the heaviest atoms are below
#: 1e6 eV, so data beyond this are not energies in any unit the loaders take.
PLAUSIBLE_ENERGY_PER_ATOM = 1e7


def rms(values: np.ndarray) -> float:
    """Root mean square of ``values``, without overflow for values near the float64 limit."""
    largest = float(np.max(np.abs(values), initial=0.0))
    return 0.0 if largest == 0 else largest * float(np.sqrt(np.mean(np.square(values / largest))))


def nearest_unit(rms_in_file: float, target: float = 1.0) -> tuple[str, float]:
    """The energy unit that brings forces whose RMS is ``rms_in_file`` in the file's numbers closest to ``target``
    eV/Å on a log scale (by default 1 eV/Å, the middle of :data:`TYPICAL_FORCE_RMS`), and the RMS in eV/Å that it
    gives."""
    from attnforce.units import EV_PER_ENERGY_UNIT

    unit = min(EV_PER_ENERGY_UNIT, key=lambda name: abs(np.log(rms_in_file * EV_PER_ENERGY_UNIT[name] / target)))
    return unit, rms_in_file * EV_PER_ENERGY_UNIT[unit]


def check_data(frames: Frames, energy_unit: str, samples: int = 100) -> None:
    """ValueError, before training or evaluating, for data that cannot be what they claim: forces whose size says
    the energy unit is wrong (naming the unit that fits) or that no unit makes molecular, energies that are not
    energies (beyond any molecule's, or one value for frames whose forces say they differ), or structures whose
    geometry says the length unit is (up to ``samples`` frames spread over the set are checked, see
    :func:`attnforce.geometry.check_positions`), or energies and forces in different units (their changes between
    neighbouring frames outside :data:`PLAUSIBLE_ENERGY_WORK_SCALE`, see :func:`energy_force_agreement`). Forces
    outside :data:`TYPICAL_FORCE_RMS`, and energies that do not follow the forces, get a warning."""
    from attnforce.units import EV_PER_ENERGY_UNIT

    sampled = frames.spread(samples)
    force_rms = rms(np.asarray(frames.forces[sampled], dtype=np.float64))
    in_file = force_rms / EV_PER_ENERGY_UNIT[energy_unit]  # the file's numbers
    fitting, refitted = nearest_unit(in_file) if force_rms > 0 else (energy_unit, force_rms)
    energies = np.asarray(frames.energies[sampled], dtype=np.float64)
    per_atom = float(np.max(np.abs(energies))) / len(frames.atomic_numbers)
    if per_atom > PLAUSIBLE_ENERGY_PER_ATOM:
        raise ValueError(
            f"{frames.source}: read in {energy_unit}, an energy of {per_atom:.3g} eV per atom is beyond any "
            f"molecule's ({PLAUSIBLE_ENERGY_PER_ATOM:g} eV per atom): the energies are not physical"
        )
    moved = np.ptp(np.asarray(frames.positions[sampled], dtype=np.float64), axis=0).max(initial=0.0) > 0
    if len(sampled) > 1 and np.ptp(energies) == 0 and force_rms > 0 and moved:
        raise ValueError(
            f"{frames.source}: every frame's energy is {energies[0]:.8g} eV, while its forces say the frames' "
            "energies differ: the energy labels are placeholders (give a file with each frame's energy)"
        )
    frames.check_geometry(samples)  # before the energies' changes, which assume Å
    agreement = energy_force_agreement(frames)
    window = plausible_scale(agreement.compared)
    if agreement.scale is not None and window is not None and not window[0] <= agreement.scale <= window[1]:
        candidates = unit_pairs_near(agreement.scale)
        raise ValueError(
            f"{frames.source}: its energies and forces are in different units: between neighbouring frames the "
            f"energies change {agreement.scale:.3g} times the forces' work (labelled data: {window[0]:g}-{window[1]:g} "
            f"over {agreement.compared} pairs"
            + (f"; {', '.join(candidates)}" if candidates else "")
            + "): convert the energies or the forces so that both use one energy unit"
        )
    low, high = PLAUSIBLE_FORCE_RMS
    if force_rms > 0 and not low <= force_rms <= high:
        if not low <= refitted <= high:
            raise ValueError(
                f"{frames.source}: its forces' RMS is {in_file:.3g} in the file's units, which no energy unit "
                f"brings within the {low:g}-{high:g} eV/Å of molecular data: the forces are not physical"
            )
        raise ValueError(
            f"{frames.source}: read in {energy_unit}, its forces' RMS is {force_rms:.3g} eV/Å, outside the "
            f"{low:g}-{high:g} eV/Å of molecular data; check the energy unit ({fitting} would give "
            f"{refitted:.3g} eV/Å)"
        )
    typical_low, typical_high = TYPICAL_FORCE_RMS
    if force_rms > 0 and not typical_low <= force_rms <= typical_high and fitting != energy_unit:
        logger.warning(
            "%s: read in %s, its forces' RMS is %.3g eV/Å, outside the %g-%g eV/Å of molecular data sampled at "
            "100-1000 K; check the energy unit (%s would give %.3g eV/Å)",
            frames.source,
            energy_unit,
            force_rms,
            typical_low,
            typical_high,
            fitting,
            refitted,
        )
    if agreement.correlation is not None and agreement.correlation < 3.0 / np.sqrt(agreement.compared):
        logger.warning(
            "%s: its energies do not follow its forces: over %d pairs of neighbouring frames, the energy difference "
            "and the forces' work between them correlate r = %.2f (labelled MD data: 0.5-1.0); energies and forces "
            "from different frames (a shuffled or misaligned file)?",
            frames.source,
            agreement.compared,
            agreement.correlation,
        )


def _rotation_onto(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The proper rotation R (3, 3) minimising ``|moving @ R - fixed|`` for centred (N, 3) coordinates (Kabsch)."""
    left, _, right = np.linalg.svd(moving.T @ fixed)
    handedness = np.sign(np.linalg.det(left @ right))
    return left @ np.diag([1.0, 1.0, handedness]) @ right


#: Interatomic distances, at most, that describe a frame in :func:`energy_force_agreement`'s neighbour search.
DESCRIPTOR_PAIRS = 2000
#: Energy changes over force work, median over median, that labelled data give between neighbouring frames, by the
#: fewest pairs compared: measured on random subsets of rMD17 aspirin, rMD17 ethanol and MD17 ethanol, 0.11-4.3 for
#: 10 pairs (20 frames, 100 subsets each), 0.33-1.75 for 25, 0.48-1.49 for 50; energies shuffled between frames give
#: 0.4-1.7. Outside, energies and forces are in different units (meV against eV gives 1000). Fewer than 10 pairs
#: (6 frames: 0.005-3752) say nothing.
PLAUSIBLE_ENERGY_WORK_SCALE = {10: (0.02, 50.0), 25: (0.1, 10.0)}


def plausible_scale(compared: int) -> tuple[float, float] | None:
    """The range of :data:`PLAUSIBLE_ENERGY_WORK_SCALE` for ``compared`` pairs, None for too few."""
    fitting = [fewest for fewest in PLAUSIBLE_ENERGY_WORK_SCALE if compared >= fewest]
    return PLAUSIBLE_ENERGY_WORK_SCALE[max(fitting)] if fitting else None


#: Displacement (Å, RMS over atoms) below which two frames count as one repeated frame in
#: :func:`energy_force_agreement`.
MIN_DISPLACEMENT_A = 1e-3


class EnergyForceAgreement(NamedTuple):
    """How the energies of neighbouring frames follow their forces (see :func:`energy_force_agreement`)."""

    #: Pearson correlation of energy differences with the forces' work; None for fewer than ``fewest`` pairs.
    correlation: float | None
    #: Median absolute energy difference over median absolute work (dimensionless, 1 for exact labels and close
    #: neighbours); None where either vanishes. How far it may be trusted depends on ``compared``
    #: (:func:`plausible_scale`).
    scale: float | None
    #: Pairs of neighbouring frames compared.
    compared: int


def energy_force_agreement(frames: Frames, samples: int = 300, fewest: int = 50) -> EnergyForceAgreement:
    """Whether the energies belong to the forces: for up to ``samples`` frames spread over the set, the energy
    difference from each frame to its nearest frame (by up to :data:`DESCRIPTOR_PAIRS` interatomic distances)
    against the forces' work between the two (trapezoid rule, the neighbour rotated onto the frame). The closer half
    of these pairs is kept, where the trapezoid rule holds: far neighbours of sparse samples decorrelate even exact
    labels (100 frames of rMD17 aspirin: r = -0.01 over all pairs, 0.74 over the closer half).

    Measured over the closer half, on rMD17 aspirin, rMD17 ethanol and MD17 ethanol: correlation 0.74-0.98 from 100
    frames up, below 0.3 in size with energies shuffled between frames; the scale's spread against the pairs compared
    is in :data:`PLAUSIBLE_ENERGY_WORK_SCALE`.
    """
    chosen = frames.spread(samples)
    if len(chosen) < 4 or len(frames.atomic_numbers) < 2:
        return EnergyForceAgreement(None, None, 0)
    positions = np.asarray(frames.positions[chosen], dtype=np.float64)
    positions = positions - positions.mean(axis=1, keepdims=True)
    forces = np.asarray(frames.forces[chosen], dtype=np.float64)
    energies = np.asarray(frames.energies[chosen], dtype=np.float64)
    first, second = np.triu_indices(positions.shape[1], 1)
    kept = np.unique(np.linspace(0, len(first) - 1, min(len(first), DESCRIPTOR_PAIRS)).astype(int))
    first, second = first[kept], second[kept]  # a large molecule's frames are told apart by a subset of its pairs
    distances = np.linalg.norm(positions[:, first] - positions[:, second], axis=-1)  # (S, pairs)
    squared = np.sum(distances**2, axis=1)
    apart = squared[:, None] + squared[None, :] - 2.0 * distances @ distances.T
    np.fill_diagonal(apart, np.inf)
    nearest = np.argmin(apart, axis=1)
    work = np.empty(len(chosen))
    displacement = np.empty(len(chosen))  # Å, root mean square over atoms after the rotation
    for frame, neighbour in enumerate(nearest):
        rotation = _rotation_onto(positions[neighbour], positions[frame])
        moved = positions[neighbour] @ rotation - positions[frame]
        work[frame] = -0.5 * np.sum((forces[frame] + forces[neighbour] @ rotation) * moved)
        displacement[frame] = np.sqrt(np.mean(np.sum(moved**2, axis=-1)))
    apart_enough = np.flatnonzero(displacement > MIN_DISPLACEMENT_A)  # repeated frames say nothing of the scale
    closer = apart_enough[np.argsort(displacement[apart_enough], kind="stable")[: len(apart_enough) // 2]]
    difference, work = energies[nearest[closer]] - energies[closer], work[closer]
    typical_work = float(np.median(np.abs(work))) if len(closer) else 0.0
    typical_difference = float(np.median(np.abs(difference))) if len(closer) else 0.0
    scale = None  # energies that do not change are placeholders, which check_data names as such
    if typical_work > 0 and typical_difference > 0:
        scale = typical_difference / typical_work
    correlation = None
    if len(closer) >= fewest and np.std(difference) > 0 and np.std(work) > 0:
        correlation = float(np.corrcoef(difference, work)[0, 1])
    return EnergyForceAgreement(correlation, scale, len(closer))


def unit_pairs_near(factor: float, within: float = 2.0, most: int = 2) -> list[str]:
    """Up to ``most`` readings "energies in E with forces in F/Å give R" whose ratio R (the size of F over E) lies
    within a factor ``within`` of ``factor``, nearest first."""
    from attnforce.units import EV_PER_ENERGY_UNIT

    ratios = {
        (energy, force): EV_PER_ENERGY_UNIT[force] / EV_PER_ENERGY_UNIT[energy]
        for energy in EV_PER_ENERGY_UNIT
        for force in EV_PER_ENERGY_UNIT
        if energy != force
    }
    near = [pair for pair, ratio in ratios.items() if abs(np.log(ratio / factor)) <= np.log(within)]
    near.sort(key=lambda pair: abs(np.log(ratios[pair] / factor)))
    return [f"energies in {e} with forces in {f}/Å give {ratios[(e, f)]:.3g}" for e, f in near[:most]]
