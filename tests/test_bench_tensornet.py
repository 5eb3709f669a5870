"""The TensorNet of the side-by-side benchmarks: the torchmd-net checkpoint it writes loads, through torchmd-net's
``load_model``, with the wrapper's weights; through the keywords openmm-ml 1.8 passes, it does not (an upstream
incompatibility, marked as an expected failure so that a fix shows). Needs the ``bench`` extra (skipped without
torchmd-net)."""

import pytest
import torch

pytest.importorskip("torchmdnet")

from torchmdnet.models.model import load_model  # noqa: E402

from bench.tensornet import TensorNetPotential, save_torchmdnet_checkpoint  # noqa: E402


def _forces(tmp_path, **keywords):
    """The wrapper's forces and those of its checkpoint loaded with ``keywords``, at random positions (eV/Å)."""
    torch.manual_seed(0)
    shifts = torch.zeros(119, dtype=torch.float64)
    shifts[[1, 6, 8]] = torch.tensor([-13.6, -1029.5, -2041.3], dtype=torch.float64)
    potential = TensorNetPotential(16, 0.5, shifts).eval()
    for parameter in potential.parameters():  # away from initial values that a permutation might leave unchanged
        parameter.data += 0.1 * torch.randn_like(parameter)
    path = tmp_path / "tensornet.ckpt"
    save_torchmdnet_checkpoint(potential, path)
    numbers = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1])
    positions = torch.randn(9, 3) * 1.3
    batch = torch.zeros(9, dtype=torch.long)
    energy, forces = potential(positions, numbers, batch, 1)
    their_energy, their_forces = load_model(str(path), derivative=True, **keywords)(numbers, positions, batch)
    return energy.detach(), forces.detach(), their_energy.detach(), their_forces.detach()


def test_checkpoint_loads_with_the_wrappers_weights(tmp_path):
    energy, forces, their_energy, their_forces = _forces(tmp_path)
    torch.testing.assert_close(their_forces, forces, rtol=1e-4, atol=1e-5 * float(forces.abs().max()))
    torch.testing.assert_close(their_energy.double().squeeze(), energy.squeeze(), rtol=1e-6, atol=1e-3)


@pytest.mark.xfail(
    strict=True,
    reason="openmm-ml 1.8 passes check_errors=False; torchmd-net 3.1.0 then takes the checkpoint for the old layout",
)
def test_checkpoint_loads_with_the_wrappers_weights_as_openmm_ml_loads_it(tmp_path):
    _, forces, _, their_forces = _forces(tmp_path, check_errors=False)
    torch.testing.assert_close(their_forces, forces, rtol=1e-4, atol=1e-5 * float(forces.abs().max()))
