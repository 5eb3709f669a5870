"""Add a learned potential to an OpenMM System as an openmm-torch ``TorchForce``."""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openmm
import torch
from openmm import app, unit

from attnforce.checkpoint import SavedModel, load_model
from attnforce.devices import check_device
from attnforce.elements import formula
from attnforce.export import build_module, is_torchscript, read_metadata
from attnforce.nn import check_minimum_image
from attnforce.openmm.quiet import quiet_simtk_notice

with quiet_simtk_notice():  # openmm-torch's wrapper imports the old name, which logs a deprecation on each run
    import openmmtorch  # registers TorchForce; torch is imported first, by attnforce.models

logger = logging.getLogger(__name__)


_TORCH_PLUGIN = "OpenMMTorchReference"
_reloaded: list[str] = []


def ensure_torch_kernels() -> None:
    """Make sure openmm-torch's kernels are registered with OpenMM.

    OpenMM loads its plugins when first imported; if that happened before torch was imported (``import mdtraj``
    does it), the openmm-torch kernel library failed for want of torch's libraries (libnvrtc). It is loaded again
    here, torch being in memory now. RuntimeError if that fails too.
    """
    for failure in openmm.Platform.getPluginLoadFailures():
        if _TORCH_PLUGIN not in failure or failure in _reloaded:
            continue
        path = failure.removeprefix("Error loading library ").split(": ", 1)[0]
        try:
            openmm.Platform.loadPluginLibrary(path)
        except Exception as error:
            raise RuntimeError(
                f"openmm-torch's kernels failed to load, so no platform can run a TorchForce: {failure}; "
                f"reloading them failed too ({error})"
            ) from None
        _reloaded.append(failure)
        logger.debug("reloaded %s after torch was imported", path)


def topology_atomic_numbers(topology: app.Topology, atoms: Sequence[int] | None = None) -> list[int]:
    """Atomic numbers of ``atoms`` (default: all) of a topology; ValueError for atoms without an element."""
    topology_atoms = list(topology.atoms())
    indices = range(len(topology_atoms)) if atoms is None else list(atoms)
    if not indices:
        raise ValueError("atoms is empty: give the indices of the atoms the model acts on, or None for all")
    not_indices = [i for i in indices if isinstance(i, bool) or not isinstance(i, (int, np.integer))]
    if not_indices:
        raise ValueError(f"atoms must be integer atom indices, got {not_indices}")
    if len(set(indices)) != len(indices):
        raise ValueError("atoms lists an atom more than once; each atom the model acts on appears once")
    numbers = []
    for index in indices:
        if not 0 <= index < len(topology_atoms):
            raise ValueError(f"atom index {index} is outside the topology's {len(topology_atoms)} atoms")
        atom = topology_atoms[index]
        if atom.element is None:
            raise ValueError(f"atom {index} ({atom.name}) has no element; the model needs one for every atom")
        numbers.append(atom.element.atomic_number)
    return numbers


def load_force_model(model: str | Path | SavedModel, trust_torchscript: bool = False) -> SavedModel | Path:
    """A saved model (path, embedded name or object) as a :class:`SavedModel`, an exported file as its path.

    An exported TorchScript file is a program: openmm-torch runs whatever it holds, with the user's permissions
    (a crafted one can read and write files). It is accepted only with ``trust_torchscript``; a saved model is
    weights and plain data, and is scripted here from attnforce's own code.
    """
    if not isinstance(trust_torchscript, bool):  # a string such as "no" would otherwise count as consent
        raise TypeError(f"trust_torchscript must be True or False, got {trust_torchscript!r}")
    if isinstance(model, SavedModel):
        return model
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a path, an embedded model's name or a SavedModel, got {type(model).__name__}")
    if Path(model).is_file() and is_torchscript(model):
        if not trust_torchscript:
            raise ValueError(
                f"{model} is an exported TorchScript file, a program that runs with your permissions; give the saved "
                "model it was exported from, or, if you trust its source, pass --trust-torchscript "
                "(trust_torchscript=True)"
            )
        return Path(model)
    return load_model(model)


def create_force(
    model: str | Path | SavedModel,
    atomic_numbers: Sequence[int],
    atom_indices: Sequence[int] | None = None,
    outputs_forces: bool | None = None,
    periodic: bool = False,
    cuda_graphs: bool = False,
    trust_torchscript: bool = False,
) -> openmmtorch.TorchForce:
    """A ``TorchForce`` for the given atoms.

    ``model`` is a saved model (scripted here for these atoms) or a file from ``attnforce export``, whose
    embedded atomic numbers, atom indices and periodicity must match the request exactly. ``outputs_forces``: the
    module returns forces itself (``setOutputsForces``); None means no for a saved model and the file's choice for
    an exported one, which cannot be changed after export. ``periodic``: the force takes the box vectors
    (``setUsesPeriodicBoundaryConditions``). ``cuda_graphs``: on the CUDA platform, openmm-torch captures the
    model's forward and backward pass in a CUDA graph and replays it each step (``useCUDAGraphs``), which needs a
    fixed graph of all pairs (a saved model is scripted with one; an exported file must have been exported with
    one); other platforms ignore it. ``trust_torchscript``: see :func:`load_force_model`.
    """
    ensure_torch_kernels()
    loaded = load_force_model(model, trust_torchscript)
    indices = list(range(len(atomic_numbers))) if atom_indices is None else list(atom_indices)
    if isinstance(loaded, Path):
        metadata = read_metadata(loaded)
        if [int(z) for z in atomic_numbers] != metadata["atomic_numbers"]:
            raise ValueError(
                f"{loaded} was exported for atoms {formula(metadata['atomic_numbers'])} in a different order or "
                f"composition than the topology's {formula(atomic_numbers)}; export it for this molecule"
            )
        if indices != metadata["atom_indices"]:
            raise ValueError(f"{loaded} was exported for atom indices {metadata['atom_indices']}, not {indices}")
        if outputs_forces is not None and outputs_forces != metadata["outputs_forces"]:
            raise ValueError(f"{loaded} was exported with outputs_forces={metadata['outputs_forces']}; export it again")
        if periodic != metadata.get("periodic", False):
            raise ValueError(
                f"{loaded} was exported for {'a periodic' if not periodic else 'an isolated'} system, and this one is "
                f"{'periodic' if periodic else 'isolated'}; export it again"
            )
        if cuda_graphs and not metadata.get("fixed_graph", False):
            raise ValueError(
                f"{loaded} was exported without a fixed graph; CUDA graphs need one (export --cuda-graphs)"
            )
        try:
            force = openmmtorch.TorchForce(str(loaded))
        except Exception as error:  # openmm-torch turns every C++ error into a bare Exception
            first_line = " ".join(str(error).split("\n")[0].split())
            raise ValueError(f"{loaded}: openmm-torch cannot load this TorchScript file ({first_line})") from None
        force.setOutputsForces(bool(metadata["outputs_forces"]))
    else:
        scripted, _ = build_module(loaded, atomic_numbers, indices, bool(outputs_forces), periodic, cuda_graphs)
        force = openmmtorch.TorchForce(scripted)
        force.setOutputsForces(bool(outputs_forces))
    force.setUsesPeriodicBoundaryConditions(periodic)
    if cuda_graphs:
        force.setProperty("useCUDAGraphs", "true")
    return force


#: The two ways a model runs inside OpenMM: openmm-torch's TorchForce (TorchScript, the primary path) and OpenMM's
#: PythonForce (the eager model in this process, optionally ``torch.compile``d).
BACKENDS = ("torch", "python", "python-compiled")


def learned_force(
    topology: app.Topology,
    model: str | Path | SavedModel,
    atoms: Sequence[int] | None = None,
    outputs_forces: bool | None = None,
    backend: str = "torch",
    device: str = "cpu",
    cuda_graphs: bool = False,
    trust_torchscript: bool = False,
) -> openmm.Force:
    """The learned force for ``atoms`` (default: all) of ``topology``, not yet added to a System.

    ``backend`` is one of :data:`BACKENDS`; ``device`` applies to the PythonForce backends (a TorchForce runs on
    the Context's platform). The topology's elements are checked against the model first. A topology with
    periodic box vectors gets a periodic force (minimum-image convention), which needs a model with a cutoff at
    most half the box's narrowest width; both are checked here. The exception is a subset of ``atoms`` (a molecule
    in a periodic MM system) with a model that has no cutoff: that molecule is evaluated as an isolated one.
    ``cuda_graphs``: see :func:`create_force` (TorchForce only). ``trust_torchscript``: see
    :func:`load_force_model`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if cuda_graphs and backend != "torch":
        raise ValueError(f"cuda_graphs is a TorchForce option; the {backend} backend does not take it")
    check_device(device)
    numbers = topology_atomic_numbers(topology, atoms)
    loaded = load_force_model(model, trust_torchscript)
    cutoff = read_metadata(loaded)["cutoff"] if isinstance(loaded, Path) else loaded.potential.cutoff
    box = topology.getPeriodicBoxVectors()
    if box is not None and cutoff is None and atoms is not None:
        # A molecule modelled by an all-pairs model inside a periodic MM system (mechanical embedding): its
        # atoms' unwrapped positions are contiguous, so the force is evaluated as an isolated molecule.
        box = None
    if box is not None:
        check_box(box, cutoff)
    if backend == "torch":
        force = create_force(
            loaded,
            numbers,
            atoms,
            outputs_forces,
            periodic=box is not None,
            cuda_graphs=cuda_graphs,
            trust_torchscript=True,
        )  # ``loaded`` passed the trust check above
    else:
        from attnforce.openmm.python_force import create_python_force

        if isinstance(loaded, Path):
            raise ValueError(f"{loaded} is an exported TorchScript file; the {backend} backend needs a saved model")
        force = create_python_force(
            loaded, numbers, atoms, device, compile=backend == "python-compiled", periodic=box is not None
        )
    logger.info(
        "learned force (%s backend) for %d atoms (%s)%s",
        backend,
        len(numbers),
        formula(numbers),
        ", periodic" if box is not None else "",
    )
    return force


def check_box(box_vectors, cutoff: float | None) -> None:
    """ValueError unless a model with ``cutoff`` (Å; None: all pairs) can work in a periodic box.

    Args:
        box_vectors: the topology's three box vectors (``openmm.Vec3`` quantities with length units).
        cutoff: the model's cutoff; it must exist and be at most half the box's narrowest width.
    """
    if cutoff is None:
        raise ValueError(
            "the topology is periodic and this model has no cutoff (it sees all pairs of atoms); periodic systems "
            "need a model trained with a cutoff (e.g. the embedded equiformer, or SAKE with cutoff: 5.0)"
        )
    cell = torch.tensor([[v.value_in_unit(unit.angstrom) for v in vector] for vector in box_vectors])
    check_minimum_image(cell.double(), cutoff)


def add_force(
    system: openmm.System,
    topology: app.Topology,
    model: str | Path | SavedModel,
    atoms: Sequence[int] | None = None,
    outputs_forces: bool | None = None,
    backend: str = "torch",
    device: str = "cpu",
    force_group: int = 0,
    cuda_graphs: bool = False,
    trust_torchscript: bool = False,
) -> int:
    """Add :func:`learned_force` to ``system`` (whose particles must be the topology's atoms) in ``force_group``;
    returns its index. An exported TorchScript file as ``model`` needs ``trust_torchscript`` (it is a program)."""
    if not isinstance(system, openmm.System):
        raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
    if not isinstance(topology, app.Topology):
        raise TypeError(
            f"topology must be an openmm.app.Topology (e.g. PDBFile(...).topology), got {type(topology).__name__}"
        )
    if system.getNumParticles() != topology.getNumAtoms():
        raise ValueError(
            f"the System has {system.getNumParticles()} particles, the topology {topology.getNumAtoms()} atoms"
        )
    force = learned_force(topology, model, atoms, outputs_forces, backend, device, cuda_graphs, trust_torchscript)
    if force.usesPeriodicBoundaryConditions():
        check_system_box(system, topology)
    force.setForceGroup(force_group)
    return system.addForce(force)


def check_system_box(system: openmm.System, topology: app.Topology) -> None:
    """ValueError unless the System's default box is the periodic topology's: a System built by hand keeps OpenMM's
    default 2 nm cube, and the periodic learned force would then see images that are not there."""
    wanted = np.array([v.value_in_unit(unit.nanometer) for v in topology.getPeriodicBoxVectors()])
    given = np.array([v.value_in_unit(unit.nanometer) for v in system.getDefaultPeriodicBoxVectors()])
    if not np.allclose(given, wanted, rtol=1e-6, atol=1e-6):
        raise ValueError(
            f"the topology's periodic box ({'x'.join(f'{x:.4g}' for x in wanted.diagonal())} nm) is not the "
            f"System's default box ({'x'.join(f'{x:.4g}' for x in given.diagonal())} nm); call "
            "system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors()) first"
        )
