"""Energy + force losses."""

from torch import Tensor


def energy_force_loss(
    energy: Tensor,
    forces: Tensor,
    target_energy: Tensor,
    target_forces: Tensor,
    num_atoms: Tensor,
    energy_weight: float,
    force_weight: float,
) -> Tensor:
    """``energy_weight * MSE(dE / n_atoms) + force_weight * MSE(dF)``.

    Args:
        energy, target_energy: (B,) eV.
        forces, target_forces: (N, 3) eV/Å.
        num_atoms: (B,) atoms per structure.
    """
    energy_error = (energy - target_energy) / num_atoms
    force_error = forces - target_forces
    return energy_weight * energy_error.pow(2).mean().to(forces.dtype) + force_weight * force_error.pow(2).mean()
