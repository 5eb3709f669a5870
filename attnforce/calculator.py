"""An ASE calculator for attnforce models, for workflows that live in ASE (energy and forces; no stress).

>>> from attnforce.calculator import AttnforceCalculator
>>> atoms.calc = AttnforceCalculator("sake")  # an embedded model's name or a saved model's path

ASE's units are the models' own (Å, eV), so nothing is converted. Atoms periodic along all three cell vectors
(``pbc=True``) are computed with the minimum-image convention, which needs a model with a cutoff at most half
the cell's narrowest width; partly periodic cells (slabs, wires) are refused.
"""

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from attnforce.checkpoint import DTYPES, load_model
from attnforce.devices import check_device
from attnforce.export import check_elements
from attnforce.geometry import check_not_fused


class AttnforceCalculator(Calculator):
    """Energy (eV) and forces (eV/Å) of a molecule or a periodic cell from a saved model.

    Args:
        model: a saved model's path or an embedded model's name (``sake``, ``equiformer``).
        dtype: ``float64`` (default: energies conserved to a tighter tolerance in MD) or ``float32``.
        device: where the model runs.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, model: str = "sake", dtype: str = "float64", device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        check_device(device)
        self.saved = load_model(model, DTYPES[dtype])
        self.device = torch.device(device)
        self.potential = self.saved.potential.to(self.device).eval()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if atoms is not None and not isinstance(atoms, Atoms):
            raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__} {atoms!r:.60}")
        super().calculate(atoms, properties, system_changes)
        pbc = self.atoms.pbc
        if pbc.any() and not pbc.all():
            raise ValueError(f"periodic along some cell vectors only (pbc={pbc.tolist()}): use all or none")
        numbers = self.atoms.get_atomic_numbers().tolist()
        if not numbers:
            raise ValueError("the Atoms object holds no atoms: a learned potential needs at least one")
        check_elements(self.saved, numbers)
        positions = self.atoms.get_positions()
        if not np.all(np.isfinite(positions)):
            raise ValueError("the atoms' positions contain NaN or infinite values")
        if not pbc.any() and len(positions) > 1:
            check_not_fused(positions, "the atoms")
        dtype = self.potential.energy_scale.dtype
        centred = positions - positions.mean(0)  # in float64, before a float32 model's cast (see OpenMMModule)
        cells = None
        if pbc.all():
            cell = np.asarray(self.atoms.cell, dtype=np.float64)
            if not (np.all(np.isfinite(cell)) and abs(np.linalg.det(cell)) > 0):
                raise ValueError(
                    f"periodic atoms (pbc=True) need a cell of positive volume, got {cell.tolist()} Å: set "
                    "atoms.cell, or pbc=False for an isolated molecule"
                )
            cells = torch.as_tensor(cell, dtype=dtype, device=self.device).unsqueeze(0)
        energy, forces = self.potential(
            torch.as_tensor(centred, dtype=dtype, device=self.device),
            torch.as_tensor(numbers, dtype=torch.long, device=self.device),
            torch.zeros(len(numbers), dtype=torch.long, device=self.device),
            1,
            cells=cells,
        )
        value = float(energy[0].detach())
        if not (np.isfinite(value) and bool(torch.isfinite(forces).all())):
            raise FloatingPointError(
                f"the model gave a non-finite energy or forces for these atoms (coordinates up to "
                f"{np.abs(positions).max():.3g} Å); check that they are a molecule in Å"
            )
        self.results = {"energy": value, "free_energy": value, "forces": forces.detach().double().cpu().numpy()}
