"""Energy + force losses."""

import torch
from torch import Tensor

#: ``mse``: squared errors; ``mae``: absolute errors (SAKE's MD17 loss); ``l2mae``: absolute energy error and the
#: Euclidean norm of each atom's force error (Equiformer's MD17 loss).
LOSSES = ("mse", "mae", "l2mae")


def energy_force_loss(
    energy: Tensor,
    forces: Tensor,
    target_energy: Tensor,
    target_forces: Tensor,
    num_atoms: Tensor,
    energy_weight: float,
    force_weight: float,
    kind: str = "mse",
) -> Tensor:
    """``energy_weight * mean(err(dE / n_atoms)) + force_weight * mean(err(dF))``, ``err`` chosen by ``kind``
    (see :data:`LOSSES`).

    Args:
        energy, target_energy: (B,) eV.
        forces, target_forces: (N, 3) eV/Å.
        num_atoms: (B,) atoms per structure.
    """
    energy_error = ((energy - target_energy) / num_atoms).to(forces.dtype)
    force_error = forces - target_forces
    if kind == "mse":
        energy_term, force_term = energy_error.pow(2).mean(), force_error.pow(2).mean()
    elif kind == "mae":
        energy_term, force_term = energy_error.abs().mean(), force_error.abs().mean()
    elif kind == "l2mae":
        energy_term, force_term = energy_error.abs().mean(), torch.linalg.vector_norm(force_error, dim=-1).mean()
    else:
        raise ValueError(f"unknown loss {kind!r}; known: {list(LOSSES)}")
    return energy_weight * energy_term + force_weight * force_term
