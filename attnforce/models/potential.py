"""The one wrapper that turns any per-atom energy model into energies and forces.

``E_b = sum_{i in b} (scale * e_i + shift[Z_i])`` with ``e_i`` the model's per-atom output, ``scale`` the training
set's energy standard deviation and ``shift`` per-element energies fitted on the training set (eV).
Forces are ``-dE/dx`` by autograd. Graphs are built here, so every architecture sees the same edges: pairs within
the cutoff (all pairs for a model without one), by a cell list for periodic structures and for large isolated ones.
Periodic structures follow the minimum-image convention: every cell width must be at least twice the cutoff.

Total energies of molecules are large (aspirin: -17618 eV) and float32 resolves them only to about 2 meV, so the
shifts stay float64 whatever the network's dtype and energies are summed and returned in float64.
"""

from typing import Optional

import torch
from torch import Tensor, nn

from attnforce.nn import all_pairs_edges, cell_list_edges, check_minimum_image, radius_edges, scatter_sum


class Potential(nn.Module):
    """Energy (eV) and forces (eV/Å) of a batch of structures from an energy model.

    Args:
        model: maps ``(positions (N,3) Å, atomic_numbers (N,), edge_index (2,E), shift_vectors (E,3) Å or None,
            degree)`` to per-atom outputs (N,), ``degree`` being the graph's common in-degree if the caller knows
            it (see :func:`attnforce.nn.regular_degree`) or -1; has an attribute ``cutoff`` (None for all-pairs
            graphs).
        energy_scale: eV per unit of model output.
        element_shifts: (119,) eV per atom of each element.
    """

    def __init__(self, model: nn.Module, energy_scale: float, element_shifts: Tensor):
        super().__init__()
        self.model = model
        self.cutoff: Optional[float] = model.cutoff
        #: isolated structures of at least this many atoms get their graph from a cell list (cheaper than all
        #: distances from about 3000 atoms on a CPU; bench/periodic_scaling.py)
        self.cell_list_min_atoms = 3000
        self.register_buffer("energy_scale", torch.tensor(float(energy_scale)))
        self.register_buffer("element_shifts", element_shifts.clone().to(torch.float64))

    def _apply(self, fn, recurse=True):
        # Module.to(dtype) would cast the shifts too; keep them float64 (device moves still apply).
        super()._apply(fn, recurse)
        self.element_shifts = self.element_shifts.to(torch.float64)
        return self

    def edges(
        self, positions: Tensor, batch: Tensor, num_structures: int, cells: Optional[Tensor]
    ) -> tuple[Tensor, Optional[Tensor]]:
        """(2, E) graph of the batch, and for periodic ``cells`` the (E, 3) Å vectors that carry each edge's source
        to its image: ``r_ij = x[source] - x[target] + shift_vectors``."""
        cutoff = self.cutoff
        if cells is None:
            if cutoff is None:
                return all_pairs_edges(batch), None
            if num_structures == 1 and positions.shape[0] >= self.cell_list_min_atoms:
                return cell_list_edges(positions, cutoff)[0], None
            return radius_edges(positions, batch, cutoff), None
        if cutoff is None:
            raise ValueError("a periodic box needs a model with a cutoff; this model sees all pairs of atoms")
        if cells.shape != (num_structures, 3, 3):
            raise ValueError(f"cells must have shape [{num_structures}, 3, 3], got {list(cells.shape)}")
        edge_parts: list[Tensor] = []
        shift_parts: list[Tensor] = []
        for structure in range(num_structures):
            cell = cells[structure].to(positions.dtype)
            check_minimum_image(cell, cutoff)
            atoms = torch.nonzero(batch == structure).squeeze(1)
            local_edges, shifts = cell_list_edges(positions.index_select(0, atoms).detach(), cutoff, cell)
            edge_parts.append(atoms.index_select(0, local_edges.reshape(-1)).reshape(2, -1))
            shift_parts.append(shifts @ cell)
        return torch.cat(edge_parts, dim=1), torch.cat(shift_parts, dim=0)

    @torch.jit.export
    def energy(
        self,
        positions: Tensor,
        atomic_numbers: Tensor,
        batch: Tensor,
        num_structures: int,
        cells: Optional[Tensor] = None,
    ) -> Tensor:
        """Energies (B,) eV, float64, of ``num_structures`` structures; ``positions`` (N,3) Å, ``batch`` (N,),
        ``cells`` (B,3,3) Å lattice vectors as rows for periodic structures (None: isolated)."""
        num_atoms = positions.shape[0]
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError(f"positions must have shape (N, 3), got {list(positions.shape)}")
        if atomic_numbers.shape != (num_atoms,) or batch.shape != (num_atoms,):
            raise ValueError(
                f"atomic_numbers {list(atomic_numbers.shape)} and batch {list(batch.shape)} "
                f"must have shape [{num_atoms}]"
            )
        edge_index, shift_vectors = self.edges(positions, batch, num_structures, cells)
        return self.energy_on_graph(positions, atomic_numbers, batch, num_structures, edge_index, shift_vectors, -1)

    @torch.jit.export
    def energy_on_graph(
        self,
        positions: Tensor,
        atomic_numbers: Tensor,
        batch: Tensor,
        num_structures: int,
        edge_index: Tensor,
        shift_vectors: Optional[Tensor],
        degree: int,
    ) -> Tensor:
        """:meth:`energy` on a graph the caller built: ``edge_index`` (2, E), ``shift_vectors`` (E, 3) Å or None,
        ``degree`` its common in-degree or -1.

        A graph with more edges than the cutoff's (all pairs of a small molecule, fixed once) gives the same
        energy, since every edge's contribution carries the cutoff envelope; this is how a CUDA graph replays the
        model with no shape that changes from step to step."""
        learned = self.model(positions, atomic_numbers, edge_index, shift_vectors, degree) * self.energy_scale
        reference = self.element_shifts.index_select(0, atomic_numbers)
        return scatter_sum(learned, batch, num_structures).to(torch.float64) + scatter_sum(
            reference, batch, num_structures
        )

    def forward(
        self,
        positions: Tensor,
        atomic_numbers: Tensor,
        batch: Tensor,
        num_structures: int,
        create_graph: bool = False,
        cells: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        """Energies (B,) eV (float64) and forces (N,3) eV/Å (the positions' dtype).

        ``create_graph=True`` keeps the graph of the forces so that a loss on them can be differentiated
        (training). Needs gradient mode on (not inside ``torch.no_grad()``).
        """
        if not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        energy = self.energy(positions, atomic_numbers, batch, num_structures, cells)
        gradients = torch.autograd.grad([energy.sum()], [positions], create_graph=create_graph)
        gradient = gradients[0]
        assert gradient is not None
        return energy, -gradient
