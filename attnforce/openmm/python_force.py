"""The second backend: a learned potential as OpenMM's own ``openmm.PythonForce``, running the eager (or
``torch.compile``d) model in this Python process, the path openmm-ml's newer potentials take.

OpenMM hands the computation a ``State`` holding only the force's particles (``setParticles``); it returns the
energy in kJ/mol and the forces in kJ/mol/nm, converted by the same :class:`~attnforce.openmm.module.OpenMMModule`
as the TorchScript path, so the two backends differ only in how the model runs.

OpenMM pickles the computation whenever it serialises the force: ``XmlSerializer``, ``copy.deepcopy`` (openmm-ml's
``createMixedSystem(interpolate=True)``) and a ``CustomCVForce`` building its inner Context. The module itself
cannot be pickled (e3nn's ``SphericalHarmonics``, inside the Equiformer, holds a TorchScript function), so the
computation pickles as the saved model's contents and its own settings, and unpickling rebuilds the module.
"""

import copy
import functools
import json
from collections.abc import Sequence

import numpy as np
import openmm
import torch
from openmm import unit
from torch import nn

from attnforce.checkpoint import DTYPES, SavedModel, restore_potential
from attnforce.export import check_elements
from attnforce.models import build_model
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
        self.saved = saved
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        numbers = torch.tensor(self.atomic_numbers)
        module = OpenMMModule(saved.potential, numbers, torch.arange(len(numbers)), periodic)
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.compile = compile
        self.periodic = periodic
        self.evaluate = torch.compile(self.module, dynamic=False) if compile else self.module

    def __getstate__(self) -> dict:
        """What rebuilds this computation: the saved model's architecture, hyperparameters, ``state_dict`` (on the
        CPU), metadata and dtype, and the constructor's other arguments; no module. The model's file need not exist
        when it is unpickled (its path is kept for messages only), and a model made in memory pickles the same."""
        saved = self.saved
        return {
            "architecture": saved.architecture,
            "hyperparameters": saved.hyperparameters,
            "state_dict": {name: value.detach().cpu() for name, value in saved.potential.state_dict().items()},
            "metadata": saved.metadata,
            "path": saved.path,
            "dtype": str(saved.potential.energy_scale.dtype).removeprefix("torch."),
            "atomic_numbers": self.atomic_numbers,
            "device": str(self.device),
            "compile": self.compile,
            "periodic": self.periodic,
        }

    def __setstate__(self, state: dict) -> None:
        """Rebuild the model as :func:`attnforce.checkpoint.load_model` does (built in its dtype, then the
        ``state_dict`` loaded; the build is cached, see :func:`_built_model`), and the module around it (compiled
        again on its first step if it was)."""
        dtype = DTYPES[state["dtype"]]
        hyperparameters = json.dumps(state["hyperparameters"], sort_keys=True)
        potential = restore_potential(
            copy.deepcopy(_built_model(state["architecture"], hyperparameters, state["dtype"])), state
        )
        saved = SavedModel(
            potential.to(dtype).eval(),
            state["architecture"],
            state["hyperparameters"],
            state["metadata"],
            state["path"],
        )
        self.__init__(saved, state["atomic_numbers"], state["device"], state["compile"], state["periodic"])

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


@functools.cache
def _built_model(architecture: str, hyperparameters: str, dtype: str) -> nn.Module:
    """A network of ``architecture`` with ``hyperparameters`` (JSON) in ``dtype``, built once per process and copied
    for each unpickled computation: OpenMM unpickles one for every Context of a System whose PythonForce sits in a
    CustomCVForce (openmm-ml's interpolation), and building an Equiformer generates e3nn code (about 1.5 s) where
    copying one takes 0.1 s. The ``state_dict`` then overwrites every parameter and persistent buffer of the copy;
    what else the construction computes (e3nn's coefficients) is the same in every build of these arguments."""
    return build_model(architecture, json.loads(hyperparameters), DTYPES[dtype])


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
