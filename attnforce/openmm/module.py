"""A potential in openmm-torch's convention: positions (n_particles, 3) nm (and box vectors (3, 3) nm when the
force uses periodic boundary conditions) in, energy kJ/mol out."""

from typing import Optional

import torch
from torch import Tensor, nn

from attnforce.models import Potential
from attnforce.nn import all_pairs_edges
from attnforce.units import angstrom_per_nm, kj_per_mol_per_ev

#: The largest molecule given a fixed all-pairs graph (n(n-1) edges).
FIXED_GRAPH_MAX_ATOMS = 256


class OpenMMModule(nn.Module):
    """Wrap a :class:`Potential` for ``openmmtorch.TorchForce``: ``forward(positions) -> energy``.

    The module sees every particle of the System and evaluates the model on ``atom_indices`` only, with the
    atomic numbers fixed at construction. Units are converted here and nowhere else: nm -> Å on the way in,
    eV -> kJ/mol on the way out, with factors from :mod:`attnforce.units`.

    Args:
        potential: the model, in Å and eV.
        atomic_numbers: (n,) atomic numbers of the modelled atoms.
        atom_indices: (n,) their indices among the System's particles.
        periodic: the atoms live in a periodic box, passed to ``forward`` as OpenMM's box vectors (the force's
            ``setUsesPeriodicBoundaryConditions(True)``); the model's cell list applies the minimum-image convention.
        fixed_graph: evaluate the model on all pairs of the atoms, a graph fixed here, instead of searching for
            neighbours each call: the same energy (contributions beyond the cutoff vanish), and no operation whose
            output shape changes or that waits on the GPU, which a CUDA graph needs (openmm-torch's
            ``useCUDAGraphs``). For isolated molecules of at most :data:`FIXED_GRAPH_MAX_ATOMS` atoms.

    Shapes: ``positions`` (n_particles, 3) nm, any float dtype, ``box_vectors`` (3, 3) nm as rows or None
    -> energy () kJ/mol, float64.
    """

    def __init__(
        self,
        potential: Potential,
        atomic_numbers: Tensor,
        atom_indices: Tensor,
        periodic: bool = False,
        fixed_graph: bool = False,
    ):
        super().__init__()
        if periodic and potential.cutoff is None:
            raise ValueError("a periodic system needs a model with a cutoff; this model sees all pairs of atoms")
        if fixed_graph and (periodic or len(atomic_numbers) > FIXED_GRAPH_MAX_ATOMS):
            raise ValueError(
                f"a fixed graph (for CUDA graphs) serves isolated molecules of at most {FIXED_GRAPH_MAX_ATOMS} atoms, "
                f"not {'a periodic system' if periodic else f'{len(atomic_numbers)} atoms'}"
            )
        self.periodic = periodic
        self.fixed_graph = fixed_graph
        batch = torch.zeros(len(atomic_numbers) if fixed_graph else 0, dtype=torch.long)
        self.register_buffer("graph", all_pairs_edges(batch))  # (2, n(n-1)); empty unless fixed_graph
        self.graph_degree = len(atomic_numbers) - 1 if fixed_graph and len(atomic_numbers) > 1 else -1
        self.potential = potential
        self.register_buffer("atomic_numbers", atomic_numbers.to(torch.long))
        self.register_buffer("atom_indices", atom_indices.to(torch.long))
        self.register_buffer("batch", torch.zeros(len(atomic_numbers), dtype=torch.long))
        self.angstrom_per_nm = angstrom_per_nm
        self.kj_per_mol_per_ev = kj_per_mol_per_ev
        self.dtype = potential.energy_scale.dtype

    def forward(self, positions: Tensor, box_vectors: Optional[Tensor] = None) -> Tensor:
        selected = positions.index_select(0, self.atom_indices)
        # Centred in OpenMM's precision before the cast: a float32 model far from the origin (1e5 Å) would otherwise
        # lose the digits its distances need. The energy does not depend on a translation, nor its gradient on a
        # detached one.
        selected = selected - selected.mean(0).detach()
        model_positions = selected.to(self.dtype) * self.angstrom_per_nm
        if self.fixed_graph:
            energy = self.potential.energy_on_graph(
                model_positions, self.atomic_numbers, self.batch, 1, self.graph, None, self.graph_degree
            )
            return energy[0] * self.kj_per_mol_per_ev
        cells: Optional[Tensor] = None
        if self.periodic:
            if box_vectors is None:
                raise ValueError(
                    "this force models a periodic system but got no box vectors: the System needs a periodic box "
                    "and the force setUsesPeriodicBoundaryConditions(True)"
                )
            cells = (box_vectors.to(self.dtype) * self.angstrom_per_nm).unsqueeze(0)
        energy = self.potential.energy(model_positions, self.atomic_numbers, self.batch, 1, cells)
        return energy[0] * self.kj_per_mol_per_ev


class OpenMMForcesModule(nn.Module):
    """``forward(positions) -> (energy kJ/mol, forces kJ/mol/nm)`` for ``TorchForce.setOutputsForces(True)``.

    Forces come from autograd inside the module, in the dtype of the positions OpenMM passes.
    """

    def __init__(self, energy_module: OpenMMModule):
        super().__init__()
        self.energy_module = energy_module

    def forward(self, positions: Tensor, box_vectors: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        positions = positions.detach().requires_grad_(True)
        energy = self.energy_module(positions, box_vectors)
        gradient = torch.autograd.grad([energy], [positions])[0]
        assert gradient is not None
        return energy.detach(), -gradient
