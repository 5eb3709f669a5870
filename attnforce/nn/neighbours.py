"""A cell-list neighbour list in plain torch, TorchScript-compatible, whose cost grows linearly with the atom count.

Space is cut into bins at least ``cutoff / bins_per_cutoff`` wide (in fractional coordinates of the cell, so
triclinic cells work too); an atom's neighbours are searched in the bins within ``bins_per_cutoff`` of its own
(125 bins of half a cutoff by default, which examines about 40% fewer candidate pairs than 27 bins of a cutoff).
With a periodic cell every pair is found with the lattice shift of each image that lies within the cutoff, so the
edge vector is

    ``r_ij = x[source] - x[target] + shift @ cell``   (``shift`` integer, ``cell`` rows = lattice vectors, Å).

Positions need not be wrapped into the cell: the shifts account for where each atom is. The search itself finds
every image, even in a cell narrower than twice the cutoff; models follow OpenMM's minimum-image rule all the same
and refuse such cells (:func:`check_minimum_image`).
"""

from typing import Optional

import torch
from torch import Tensor


def perpendicular_widths(cell: Tensor) -> Tensor:
    """Distances between opposite faces of a cell: (3, 3) lattice vectors as rows -> (3,), same units."""
    faces = torch.stack(
        [
            torch.linalg.cross(cell[1], cell[2]),
            torch.linalg.cross(cell[2], cell[0]),
            torch.linalg.cross(cell[0], cell[1]),
        ]
    )
    return torch.abs(torch.linalg.det(cell)) / torch.linalg.vector_norm(faces, dim=-1)


def check_minimum_image(cell: Tensor, cutoff: float) -> None:
    """ValueError unless every face-to-face width of ``cell`` ((3, 3) Å, rows = lattice vectors) is at least twice
    ``cutoff`` (Å), OpenMM's rule for periodic cutoffs (a NaN cell is refused too)."""
    narrowest = float(perpendicular_widths(cell).min())
    if not narrowest >= 2.0 * cutoff:
        shown = round(narrowest * 1000.0) / 1000.0
        raise ValueError(
            f"the periodic box is {shown} Å across at its narrowest, less than twice the model's cutoff "
            f"({cutoff} Å): the minimum-image convention needs a larger box"
        )


def _bin_offsets(reach: int, device: torch.device) -> Tensor:
    """((2 reach + 1)^3, 3) the offsets -reach..reach along each axis."""
    steps = torch.arange(-reach, reach + 1, device=device)
    grid = torch.meshgrid([steps, steps, steps], indexing="ij")
    return torch.stack([grid[0].reshape(-1), grid[1].reshape(-1), grid[2].reshape(-1)], dim=1)


def cell_list_edges(
    positions: Tensor,
    cutoff: float,
    cell: Optional[Tensor] = None,
    max_bins_per_axis: int = 64,
    bins_per_cutoff: int = 2,
) -> tuple[Tensor, Tensor]:
    """Ordered pairs of distinct atoms (or images) of one structure closer than ``cutoff``.

    Args:
        positions: (N, 3) Å.
        cutoff: Å.
        cell: None for an isolated structure, or (3, 3) lattice vectors as rows (Å), periodic along all three.
            Every face-to-face width must be at least ``cutoff / bins_per_cutoff``.
        max_bins_per_axis: bins are never finer than this (finer bins only cost memory once a bin holds a few
            atoms). Past ``max_bins_per_axis * cutoff / bins_per_cutoff`` (160 Å for a 5 Å cutoff), bins grow wider
            than needed and the cost per atom grows with them.
        bins_per_cutoff: bins per cutoff length along each axis (at least 1).

    Returns:
        ``edge_index`` (2, E) sorted by target, and ``shifts`` (E, 3) integer lattice shifts of the source atom
        (in the positions' dtype; zeros without a cell).
    """
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {list(positions.shape)}")
    if not cutoff > 0.0 or bins_per_cutoff < 1 or max_bins_per_axis < 1:
        raise ValueError("cutoff must be positive, and bins_per_cutoff and max_bins_per_axis at least 1")
    if cell is not None:
        if cell.shape != (3, 3):
            raise ValueError(f"cell must have shape (3, 3), got {list(cell.shape)}")
        if not float(perpendicular_widths(cell).min()) * bins_per_cutoff >= cutoff:
            raise ValueError("the cell is narrower than cutoff / bins_per_cutoff: images would be missed")
    if positions.shape[0] == 0:
        return torch.zeros((2, 0), dtype=torch.long, device=positions.device), torch.zeros_like(positions)
    return _search(positions, cutoff, cell, max_bins_per_axis, bins_per_cutoff)


def _search(
    positions: Tensor, cutoff: float, cell: Optional[Tensor], max_bins_per_axis: int, bins_per_cutoff: int
) -> tuple[Tensor, Tensor]:
    """:func:`cell_list_edges` for valid, non-empty input."""
    with torch.no_grad():
        device = positions.device
        if cell is None:
            lower = positions.amin(0)
            widths = (positions.amax(0) - lower).clamp(min=cutoff)
            fractional = (positions - lower) / widths
            wrapped = torch.zeros_like(positions)
        else:
            widths = perpendicular_widths(cell)
            fractional = positions @ torch.linalg.inv(cell)
            wrapped = torch.floor(fractional)
            fractional = fractional - wrapped
        num_bins = torch.clamp(torch.floor(widths * bins_per_cutoff / cutoff), 1, max_bins_per_axis).to(
            torch.long
        )  # (3,)
        strides = torch.stack([num_bins[1] * num_bins[2], num_bins[2], torch.ones_like(num_bins[2])])
        atom_bin = torch.minimum(torch.floor(fractional * num_bins).to(torch.long).clamp(min=0), num_bins - 1)
        atom_flat_bin = (atom_bin * strides).sum(1)
        order = torch.argsort(atom_flat_bin)
        atoms_per_bin = torch.bincount(atom_flat_bin, minlength=int(num_bins.prod()))
        bin_start = torch.cumsum(atoms_per_bin, 0) - atoms_per_bin

        around = atom_bin.unsqueeze(1) + _bin_offsets(bins_per_cutoff, device).unsqueeze(
            0
        )  # (N, S, 3), S bins searched per atom
        if cell is None:
            inside = ((around >= 0) & (around < num_bins)).all(-1)
            around = torch.minimum(around.clamp(min=0), num_bins - 1)
            image = torch.zeros_like(around)
        else:
            inside = torch.ones(around.shape[:2], dtype=torch.bool, device=device)
            image = torch.div(around, num_bins, rounding_mode="floor")
            around = around - image * num_bins
        around_flat = (around * strides).sum(-1).reshape(-1)  # (N*S,)
        candidates = (atoms_per_bin.index_select(0, around_flat) * inside.reshape(-1)).to(torch.long)

        # Each (atom, neighbouring bin) slot carries the offset from its atom to that bin's image of the cell, so a
        # candidate pair's vector is one gather and one addition away.
        wrapped_positions = positions if cell is None else positions - wrapped @ cell
        slot_offset = (-wrapped_positions).unsqueeze(1).expand(-1, around.shape[1], -1)
        if cell is not None:
            slot_offset = slot_offset + image.to(positions.dtype) @ cell
        slot_offset = slot_offset.reshape(-1, 3).contiguous()

        # One candidate pair per (atom, neighbouring bin, atom of that bin), in atom order.
        slot = torch.repeat_interleave(torch.arange(around_flat.shape[0], device=device), candidates)
        first = torch.cumsum(candidates, 0) - candidates
        rank_in_bin = torch.arange(slot.shape[0], device=device) - first.index_select(0, slot)
        source = order.index_select(0, bin_start.index_select(0, around_flat.index_select(0, slot)) + rank_in_bin)
        vectors = wrapped_positions.index_select(0, source) + slot_offset.index_select(0, slot)
        keep_index = torch.nonzero((vectors * vectors).sum(-1) < cutoff * cutoff).squeeze(1)
        slot = slot.index_select(0, keep_index)
        source = source.index_select(0, keep_index)
        target = torch.div(slot, around.shape[1], rounding_mode="floor")

        shifts = image.reshape(-1, 3).index_select(0, slot).to(positions.dtype)
        shifts = shifts + wrapped.index_select(0, target) - wrapped.index_select(0, source)
        distinct = torch.nonzero((source != target) | (shifts != 0).any(-1)).squeeze(1)
        edge_index = torch.stack([source.index_select(0, distinct), target.index_select(0, distinct)])
        return edge_index, shifts.index_select(0, distinct)
