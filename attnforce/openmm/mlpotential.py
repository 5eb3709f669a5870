"""attnforce models in openmm-ml, registered through its ``openmmml.potentials`` entry points (no fork).

>>> from openmmml import MLPotential
>>> potential = MLPotential("attnforce-sake")  # the embedded model; or modelPath="run/best.pt"
>>> system = potential.createSystem(topology)
>>> mixed = potential.createMixedSystem(topology, mm_system, ligand_atoms, interpolate=True)

A periodic topology gives a periodic force (minimum-image convention, a cell list inside the model), which needs
a model with a cutoff (the embedded Equiformer has one, the embedded SAKE sees all pairs).

``createSystem``/``createMixedSystem`` options: ``backend`` (``python``, the default as for openmm-ml's own PyTorch
potentials, or ``python-compiled``: OpenMM's PythonForce with the eager or ``torch.compile``d model; ``torch``:
openmm-torch's TorchForce, except for ``createMixedSystem(interpolate=True)``, whose copy of the force openmm-torch
1.5 cannot survive), ``precision``
(``single`` or ``double``; default: the model's own), ``outputsForces`` (TorchForce computes forces inside the
module) and ``device`` (PythonForce only; default: CUDA when torch sees a GPU).
"""

import copy
from collections.abc import Iterable

import openmm
import torch
from openmm import app
from openmmml.mlpotential import MLPotentialImpl

from attnforce.checkpoint import DTYPES, SavedModel, load_model
from attnforce.openmm.force import learned_force
from attnforce.openmm.mlpotential_entry import POTENTIALS

#: openmm-ml's precision names -> attnforce's dtype names.
PRECISIONS = {"single": "float32", "double": "float64"}


class AttnforcePotentialImpl(MLPotentialImpl):
    """A saved attnforce model (checked when the MLPotential is created) added to Systems as a learned force."""

    def __init__(self, name: str, model_path: str | None):
        self.architecture = POTENTIALS[name]
        self.model = str(model_path) if model_path is not None else self.architecture
        saved = load_model(self.model, torch.float32)
        if saved.architecture != self.architecture:
            raise ValueError(
                f"{saved.path} is a {saved.architecture} model; "
                f"load it as MLPotential('attnforce-{saved.architecture}')"
            )
        self.default_dtype = saved.metadata.get("training", {}).get("dtype", "float32")
        #: the model read in each dtype asked for, copied for each force: building an Equiformer generates e3nn code
        #: (seconds), copying one takes a tenth of that, and openmm-ml asks for a force per System it makes
        self.loaded: dict[torch.dtype, SavedModel] = {torch.float32: saved}

    def addForces(
        self,
        topology: app.Topology,
        system: openmm.System,
        atoms: Iterable[int] | None,
        forceGroup: int,
        backend: str = "python",
        precision: str | None = None,
        outputsForces: bool = False,
        **args,
    ) -> None:
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
        dtype = DTYPES[PRECISIONS[precision] if precision is not None else self.default_dtype]
        if backend == "torch" and system.getNumParticles() == 0:
            # openmm-ml collects the forces of createMixedSystem(interpolate=True) in an empty System and then copies
            # them; openmm-torch 1.5 crashes (segmentation fault) deserialising a TorchForce, so refuse here.
            raise ValueError(
                "backend='torch' cannot serve createMixedSystem(interpolate=True): openmm-ml copies the force, and "
                "openmm-torch 1.5 crashes copying a TorchForce; use backend='python' (the default)"
            )
        if dtype not in self.loaded:
            self.loaded[dtype] = load_model(self.model, dtype)
        saved = copy.deepcopy(self.loaded[dtype])
        device = str(self._getTorchDevice(args))
        # openmm-ml may pass a System still being assembled (interpolation collects forces in an empty one), so
        # the force is built from the topology alone.
        force = learned_force(topology, saved, None if atoms is None else list(atoms), outputsForces, backend, device)
        force.setForceGroup(forceGroup)
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """attnforce models are local (a cutoff or one molecule's pairs): no long-range interactions.

        Under PME, openmm-ml's mechanical embedding then removes the MM energy of each pair of ML atoms at its minimum
        image and keeps their interactions with the other periodic images (README: openmm-ml, PythonForce and ASE).
        """
        return False
