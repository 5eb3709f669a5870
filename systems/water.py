"""Periodic boxes of liquid water, cut from the equilibrated TIP3P box that ships with OpenMM (``tip3p.pdb``,
895 molecules in a 3 nm cube).

The source box is tiled periodically and every molecule whose oxygen falls inside the requested cube is kept
whole, so the density is that of the source (about 33 molecules per nm^3); the structure at the new box's faces is
not equilibrated. Used by the periodic tests and the size benchmark.
"""

from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from systems.molecules import Molecule

#: OpenMM's bundled TIP3P box.
SOURCE_BOX = Path(app.__file__).parent / "data" / "tip3p.pdb"


def water_box(edge: unit.Quantity) -> Molecule:
    """A cubic periodic box of water ``edge`` long (a length with units), its topology carrying the box vectors.

    Positions are in Å (:class:`~systems.molecules.Molecule`); hydrogens may lie outside the box.
    """
    edge_angstrom = edge.value_in_unit(unit.angstrom)
    if not edge_angstrom > 0:
        raise ValueError(f"the box edge must be positive, got {edge}")
    source = app.PDBFile(str(SOURCE_BOX))
    period = np.array(source.topology.getUnitCellDimensions().value_in_unit(unit.angstrom))
    positions = source.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    residues = list(source.topology.residues())
    oxygen = np.array([next(a.index for a in r.atoms() if a.element.symbol == "O") for r in residues])
    copies = np.ceil(edge_angstrom / period).astype(int)

    topology = app.Topology()
    chain = topology.addChain()
    kept = []
    for shift in np.ndindex(*copies):
        offset = np.array(shift) * period
        for residue, o in zip(residues, oxygen, strict=True):
            if np.all((positions[o] + offset >= 0) & (positions[o] + offset < edge_angstrom)):
                new_residue = topology.addResidue("HOH", chain)
                for atom in residue.atoms():
                    topology.addAtom(atom.name, atom.element, new_residue)
                    kept.append(positions[atom.index] + offset)
    if not kept:
        raise ValueError(f"a box {edge} across holds no water molecule")
    topology.setUnitCellDimensions(openmm.Vec3(edge_angstrom, edge_angstrom, edge_angstrom) * unit.angstrom)
    return Molecule(topology, np.array(kept), f"water_{edge_angstrom:g}A")
