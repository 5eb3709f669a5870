"""Periodic boxes of liquid water, cut from the equilibrated TIP3P box that ships with OpenMM (``tip3p.pdb``,
895 molecules in a 3 nm cube).

The source box is tiled periodically (each molecule placed by its oxygen) and every molecule whose oxygen falls
inside the requested cube is kept whole, except one whose oxygen would come closer than
:data:`MIN_OXYGEN_DISTANCE` to a kept one across the new box's faces. The density is close to the source's (about
33 molecules per nm^3; the smallest boxes lose up to 15% at the seams), but the hydrogen-bond network at those
faces is not equilibrated: minimise and equilibrate before production. Used by the periodic tests and the size
benchmark.
"""

from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit

from systems.molecules import Molecule

#: OpenMM's bundled TIP3P box.
SOURCE_BOX = Path(app.__file__).parent / "data" / "tip3p.pdb"
#: Molecules whose oxygen comes closer than this to a kept one, across the new box's faces, are left out (Å; the
#: closest oxygens of the source box are about 2.5 Å apart).
MIN_OXYGEN_DISTANCE = 2.3


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
    molecules = []  # (oxygen position, [(atom, position)]) with every oxygen wrapped into the source box
    for residue in source.topology.residues():
        atoms = list(residue.atoms())
        oxygen = next(positions[a.index] for a in atoms if a.element.symbol == "O")
        wrap = -np.floor(oxygen / period) * period
        molecules.append((oxygen + wrap, [(a, positions[a.index] + wrap) for a in atoms]))

    topology = app.Topology()
    chain = topology.addChain()
    kept_oxygens: list[np.ndarray] = []
    kept_positions = []
    for shift in np.ndindex(*np.ceil(edge_angstrom / period).astype(int)):
        offset = np.array(shift) * period
        for oxygen, atoms in molecules:
            oxygen = oxygen + offset
            if np.any(oxygen >= edge_angstrom):
                continue
            if kept_oxygens:  # the new box's faces join molecules that were not neighbours: drop overlaps
                delta = np.array(kept_oxygens) - oxygen
                delta -= edge_angstrom * np.round(delta / edge_angstrom)
                if np.min(np.linalg.norm(delta, axis=1)) < MIN_OXYGEN_DISTANCE:
                    continue
            kept_oxygens.append(oxygen)
            residue = topology.addResidue("HOH", chain)
            added = [topology.addAtom(atom.name, atom.element, residue) for atom, _ in atoms]
            kept_positions.extend(position + offset for _, position in atoms)
            new_oxygen = next(a for a in added if a.element.symbol == "O")
            for atom in added:
                if atom is not new_oxygen:
                    topology.addBond(new_oxygen, atom)
    if not kept_positions:
        raise ValueError(f"a box {edge} across holds no water molecule")
    topology.setUnitCellDimensions(openmm.Vec3(edge_angstrom, edge_angstrom, edge_angstrom) * unit.angstrom)
    return Molecule(topology, np.array(kept_positions), f"water_{edge_angstrom:g}A")
