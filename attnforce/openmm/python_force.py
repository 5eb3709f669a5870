"""The second backend: a learned potential as OpenMM's own ``openmm.PythonForce``, running the eager (or
``torch.compile``d) model in this Python process, the path openmm-ml's newer potentials take.

OpenMM hands the computation a ``State`` holding only the force's particles (``setParticles``); it returns the
energy in kJ/mol and the forces in kJ/mol/nm, converted by the same :class:`~attnforce.openmm.module.OpenMMModule`
as the TorchScript path, so the two backends differ only in how the model runs.
"""

from collections.abc import Sequence

import numpy as np
import openmm
import torch
from openmm import unit

from attnforce.checkpoint import SavedModel
from attnforce.export import check_elements
from attnforce.openmm.module import OpenMMModule


class PotentialComputation:
    """``State -> (energy kJ/mol, forces (n, 3) kJ/mol/nm)`` for ``openmm.PythonForce``.

    Args:
        saved: the model.
        atomic_numbers: (n,) the modelled atoms, in the order of the force's particles.
        device: where the model runs (``cpu``, ``cuda``, ...).
        compile: run the model through ``torch.compile`` (compiled on the first step).
        periodic: pass the State's box vectors to the model.
    """

    def __init__(
        self,
        saved: SavedModel,
        atomic_numbers: Sequence[int],
        device: str = "cpu",
        compile: bool = False,
        periodic: bool = False,
    ):
        numbers = torch.tensor([int(z) for z in atomic_numbers])
        module = OpenMMModule(saved.potential, numbers, torch.arange(len(numbers)), periodic)
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.periodic = periodic
        self.evaluate = torch.compile(self.module, dynamic=False) if compile else self.module

    def __call__(self, state: openmm.State) -> tuple[float, np.ndarray]:
        positions_nm = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        positions = torch.tensor(positions_nm, dtype=torch.float64, device=self.device, requires_grad=True)
        box = None
        if self.periodic:
            box_nm = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            box = torch.tensor(box_nm, dtype=torch.float64, device=self.device)
        energy = self.evaluate(positions, box)
        (gradient,) = torch.autograd.grad(energy, positions)
        return float(energy.detach()), -gradient.detach().cpu().numpy()


def create_python_force(
    saved: SavedModel,
    atomic_numbers: Sequence[int],
    atom_indices: Sequence[int] | None = None,
    device: str = "cpu",
    compile: bool = False,
    periodic: bool = False,
) -> openmm.PythonForce:
    """An ``openmm.PythonForce`` computing the model on ``atom_indices`` (default: the first ``n`` particles),
    with periodic boundary conditions if ``periodic``."""
    check_elements(saved, atomic_numbers)
    indices = list(range(len(atomic_numbers))) if atom_indices is None else [int(i) for i in atom_indices]
    if len(indices) != len(atomic_numbers):
        raise ValueError(f"{len(indices)} atom indices for {len(atomic_numbers)} atomic numbers")
    force = openmm.PythonForce(PotentialComputation(saved, atomic_numbers, device, compile, periodic))
    force.setParticles(indices)
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(f"attnforce {saved.architecture} (PythonForce)")
    return force
