"""Charged N-body systems: the simulation protocol of the EGNN paper (Satorras et al., 2021), itself the 3D
version of the charged-particles system of Neural Relational Inference (Kipf et al., 2018).

Dimensionless units, unit masses. Each system has ``N`` particles with charges +1 or -1 drawn with equal
probability, initial positions ``N(0, position_std^2)`` per coordinate and initial velocities of speed ``speed`` in
uniformly random directions. The force on particle i is ``strength * sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3``
(Coulomb: like charges repel), each component clipped to ``+-max_force`` (the protocol's ``0.1 / dt``, which only
close encounters reach). Integration is the protocol's: kick-drift (symplectic Euler) with step ``dt``; positions
and velocities are recorded every ``sample_every`` steps, frame 0 being the initial state. Everything is
vectorised over systems.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class NBodyTrajectories:
    """Recorded trajectories of S systems of N particles over T frames.

    Attributes:
        positions: (S, T, N, 3).
        velocities: (S, T, N, 3).
        charges: (S, N), each +1 or -1.
        clipped_steps: (S,) number of integration steps in which some force component was clipped; energy and
            momentum are conserved (up to the integrator's error) only in systems without.
    """

    positions: np.ndarray
    velocities: np.ndarray
    charges: np.ndarray
    clipped_steps: np.ndarray


def coulomb_forces(positions: np.ndarray, charges: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Unclipped forces (S, N, 3) on each particle of ``positions`` (S, N, 3) with ``charges`` (S, N)."""
    separations = positions[:, :, None, :] - positions[:, None, :, :]  # x_i - x_j, (S, N, N, 3)
    distances = np.linalg.norm(separations, axis=-1)
    diagonal = np.arange(positions.shape[1])
    distances[:, diagonal, diagonal] = 1.0  # no self-interaction: any non-zero value, the coupling is zeroed below
    coupling = strength * charges[:, :, None] * charges[:, None, :] / distances**3
    coupling[:, diagonal, diagonal] = 0.0
    return (coupling[..., None] * separations).sum(axis=2)


def energies(
    positions: np.ndarray, velocities: np.ndarray, charges: np.ndarray, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Kinetic and potential energy of each state: ``positions``, ``velocities`` (..., N, 3), ``charges`` (..., N)
    -> two arrays of shape (...)."""
    kinetic = 0.5 * (velocities**2).sum(axis=(-1, -2))
    num_particles = positions.shape[-2]
    distances = np.linalg.norm(positions[..., :, None, :] - positions[..., None, :, :], axis=-1)
    upper = np.triu_indices(num_particles, k=1)
    pair_charges = charges[..., :, None] * charges[..., None, :]
    potential = strength * (pair_charges[..., upper[0], upper[1]] / distances[..., upper[0], upper[1]]).sum(axis=-1)
    return kinetic, potential


def advance(
    positions: np.ndarray,
    velocities: np.ndarray,
    charges: np.ndarray,
    steps: int,
    dt: float = 0.001,
    strength: float = 1.0,
    max_force: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate states ``positions``, ``velocities`` (S, N, 3) with ``charges`` (S, N) for ``steps`` kick-drift
    steps.

    A state's velocity is the one that carried the particles to its positions, as recorded by :func:`simulate`, so
    advancing a recorded frame by ``sample_every`` steps gives the next recorded frame exactly.

    Returns:
        positions and velocities (S, N, 3) after ``steps``, and the number of steps (S,) in which some force
        component was clipped to ``+-max_force`` (default ``0.1 / dt``).
    """
    max_force = 0.1 / dt if max_force is None else max_force
    clipped_steps = np.zeros(len(positions), dtype=np.int64)
    for _ in range(steps):
        forces = coulomb_forces(positions, charges, strength)
        clipped_steps += (np.abs(forces) > max_force).any(axis=(1, 2))
        velocities = velocities + dt * np.clip(forces, -max_force, max_force)
        positions = positions + dt * velocities
    return positions, velocities, clipped_steps


def simulate(
    num_systems: int,
    seed: int,
    num_particles: int = 5,
    steps: int = 5000,
    sample_every: int = 100,
    dt: float = 0.001,
    speed: float = 0.5,
    position_std: float = 1.0,
    strength: float = 1.0,
    max_force: float | None = None,
    keep: int | None = None,
) -> NBodyTrajectories:
    """Simulate ``num_systems`` independent systems (see the module docstring); the same seed gives the same data.

    ``keep`` integrates only the first ``keep`` of the ``num_systems`` drawn systems: the same systems as the first
    ``keep`` of the whole set (the random draws depend on ``num_systems``, so ``simulate(k, seed)`` would not be).

    Returns ``steps // sample_every`` frames (frame k is the state after ``k * sample_every`` steps).
    """
    if num_systems < 1 or num_particles < 2 or steps < 1 or sample_every < 1:
        raise ValueError("need at least 1 system, 2 particles, 1 step and a positive sampling interval")
    rng = np.random.default_rng(seed)
    charges = rng.choice(np.array([1.0, -1.0]), size=(num_systems, num_particles))
    positions = rng.normal(scale=position_std, size=(num_systems, num_particles, 3))
    directions = rng.normal(size=(num_systems, num_particles, 3))
    velocities = speed * directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    if keep is not None:
        charges, positions, velocities = charges[:keep], positions[:keep], velocities[:keep]
        num_systems = len(charges)

    num_frames = steps // sample_every
    recorded_positions = np.empty((num_systems, num_frames, num_particles, 3))
    recorded_velocities = np.empty_like(recorded_positions)
    recorded_positions[:, 0], recorded_velocities[:, 0] = positions, velocities
    clipped_steps = np.zeros(num_systems, dtype=np.int64)
    for frame in range(1, num_frames):
        positions, velocities, clipped = advance(positions, velocities, charges, sample_every, dt, strength, max_force)
        recorded_positions[:, frame], recorded_velocities[:, frame] = positions, velocities
        clipped_steps += clipped
    return NBodyTrajectories(recorded_positions, recorded_velocities, charges, clipped_steps)
