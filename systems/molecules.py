"""Molecular structures for simulation: an OpenMM topology and positions, from XYZ or PDB files."""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openmm import app

from attnforce.elements import atomic_number
from attnforce.geometry import check_not_fused, check_positions
from attnforce.paths import embedded_or_file, require_file, text_file

logger = logging.getLogger(__name__)

#: Structures that ship with the package, by the name accepted wherever a structure file is.
EMBEDDED_STRUCTURES = {"default": "aspirin.xyz", "aspirin": "aspirin.xyz"}


@dataclass
class Molecule:
    """A structure ready for OpenMM.

    Attributes:
        topology: atoms with elements (one residue ``MOL`` for XYZ input).
        positions: (N, 3) Å.
        name: a short label (file stem).
    """

    topology: app.Topology
    positions: np.ndarray
    name: str

    def __post_init__(self):
        shape = np.shape(self.positions)
        if len(shape) != 2 or shape[1] != 3 or shape[0] != self.topology.getNumAtoms():
            raise ValueError(
                f"{self.name}: the topology has {self.topology.getNumAtoms()} atoms but the positions have shape "
                f"{list(shape)}; expected [{self.topology.getNumAtoms()}, 3]"
            )

    @property
    def atomic_numbers(self) -> list[int]:
        return [atom.element.atomic_number for atom in self.topology.atoms()]


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a text file; ValueError naming the file when it is binary."""
    with text_file(path, what), open(path, encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is no count
        # Lines end at newlines only (as in file reading), not at every character ``str.splitlines`` breaks on:
        # a U+2028 or form feed in a comment line must not make two lines.
        lines = handle.read().split("\n")
    return lines[:-1] if lines and not lines[-1] else lines


def _topology_from_numbers(numbers: list[int], residue_name: str = "MOL") -> app.Topology:
    topology = app.Topology()
    residue = topology.addResidue(residue_name, topology.addChain())
    counts: dict[str, int] = {}
    for z in numbers:
        element = app.Element.getByAtomicNumber(z)
        counts[element.symbol] = counts.get(element.symbol, 0) + 1
        topology.addAtom(f"{element.symbol}{counts[element.symbol]}", element, residue)
    return topology


def read_xyz(path: str | Path) -> Molecule:
    """The first frame of an XYZ or extended-XYZ file (symbol x y z [...], Å)."""
    path = Path(path)
    lines = read_text_lines(path, "an XYZ file")
    try:
        num_atoms = int(lines[0])
    except (IndexError, ValueError):
        raise ValueError(f"{path}, line 1: expected an atom count") from None
    if num_atoms <= 0:
        raise ValueError(f"{path}, line 1: the atom count is {num_atoms}; a structure needs atoms")
    rows = [line.split() for line in lines[2 : 2 + num_atoms]]
    if len(rows) != num_atoms:
        raise ValueError(f"{path}: {num_atoms} atoms announced, {len(rows)} atom lines found")
    following = next((k for k in range(2 + num_atoms, len(lines)) if lines[k].strip()), None)
    if following is not None:
        try:
            int(lines[following])  # the next frame's count line
            logger.warning("%s holds more than one frame; the first is used", path)
        except ValueError:
            raise ValueError(
                f"{path}, line {following + 1}: an atom line after the {num_atoms} atoms that line 1 announces; "
                "correct the count"
            ) from None
    fields = _comment_fields(lines[1])
    species, pos = _atom_columns(path, fields)
    width = max(species.stop, pos.stop)
    numbers, positions = [], []
    for line_number, row in enumerate(rows, start=3):
        if len(row) < width:
            raise ValueError(
                f"{path}, line {line_number}: expected an element symbol and x y z, found {' '.join(row)!r}"
            )
        try:
            numbers.append(atomic_number(row[species][0]))
            positions.append([float(v) for v in row[pos]])
        except ValueError as error:
            raise ValueError(f"{path}, line {line_number}: {error}") from None
    topology = _topology_from_numbers(numbers)
    box = _extxyz_box(path, fields)
    if box is not None:
        topology.setPeriodicBoxVectors(box)
    return Molecule(topology, np.array(positions), path.stem)


def _comment_fields(comment: str) -> dict[str, str]:
    """The ``key=value`` fields of an XYZ comment line (extended XYZ); none for free text."""
    from systems.readers import parse_extxyz_comment

    try:
        return parse_extxyz_comment(comment)
    except ValueError:  # free text with an unmatched quote holds no fields
        return {}


def _atom_columns(path: Path, fields: dict[str, str]) -> tuple[slice, slice]:
    """The columns of the element symbol and of x y z in the atom lines: ``species`` and ``pos`` of an
    extended-XYZ ``Properties=``, in whatever order it declares them, else the first and the next three."""
    from systems.readers import extxyz_columns

    if "properties" not in fields:
        return slice(0, 1), slice(1, 4)
    try:
        columns = extxyz_columns(fields["properties"])
    except ValueError as error:
        raise ValueError(f"{path}, line 2: {error}") from None
    if "species" not in columns or columns.get("pos", slice(0, 0)).stop - columns["pos"].start != 3:
        raise ValueError(f"{path}, line 2: Properties={fields['properties']!r} must declare species and pos:R:3")
    return columns["species"], columns["pos"]


def _extxyz_box(path: Path, fields: dict[str, str]):
    """The periodic box of an extended-XYZ comment's fields (:func:`systems.readers.extxyz_cell`) as OpenMM box
    vectors, or None; ValueError naming the file for a malformed or partly periodic lattice, or one that OpenMM's
    orientation cannot take (it is reduced here otherwise)."""
    from openmm import Vec3, unit

    from systems.readers import extxyz_cell

    try:
        cell = extxyz_cell(fields)
    except ValueError as error:
        raise ValueError(f"{path}, line 2: {error}") from None
    if cell is None:
        return None
    a, b, c = cell
    if not (a[1] == a[2] == b[2] == 0 and min(a[0], b[1], c[2]) > 0):
        raise ValueError(
            f"{path}, line 2: Lattice={fields['lattice']!r}: OpenMM takes a along x, b in the xy plane and a positive "
            "diagonal; rotate the cell (and the coordinates with it) into that orientation"
        )
    # The same lattice in OpenMM's reduced form (|bx|, |cx| <= ax/2, |cy| <= by/2), as OpenMM's own reduction does.
    c = c - b * round(c[1] / b[1])
    c = c - a * round(c[0] / a[0])
    b = b - a * round(b[0] / a[0])
    return [Vec3(*vector) for vector in (a, b, c)] * unit.angstrom


#: The last column of an ATOM/HETATM record's coordinates (z, columns 47-54 of the PDB format).
PDB_COORDINATES_END = 54


def read_pdb(path: str | Path) -> Molecule:
    """A PDB file through OpenMM's reader (positions converted to Å)."""
    from openmm import unit

    lines = read_text_lines(path, "a PDB file")
    if not any(line.startswith(("ATOM", "HETATM")) for line in lines):
        raise ValueError(f"{path}: no ATOM or HETATM records; a structure needs atoms")
    first_model = lines[: next((k for k, line in enumerate(lines) if line.startswith("ENDMDL")), len(lines))]
    records = [(k, line) for k, line in enumerate(first_model, 1) if line.startswith(("ATOM", "HETATM"))]
    locations = [line[16] for _, line in records if len(line) > 16 and line[16] != " "]
    if locations:  # OpenMM's reader keeps an atom's first alternate location only
        records = [(k, line) for k, line in records if len(line) <= 16 or line[16] in (" ", locations[0])]
    last = lines[-1].strip() if lines else ""
    if last and ("HETATM".startswith(last) or "ATOM".startswith(last)) and len(last) < 6:
        records.append((len(lines), last))  # a record cut within its name: the file ends mid-record
    short = next(((k, line) for k, line in records if len(line.rstrip("\r\n")) < PDB_COORDINATES_END), None)
    if short:
        raise ValueError(
            f"{path}, line {short[0]}: an atom record ({short[1][:6].strip()}) cut short before its coordinates end "
            f"(column {PDB_COORDINATES_END}): the file is truncated or damaged"
        )
    try:
        with warnings.catch_warnings():  # merged atoms are named below, in one line instead of one warning each
            warnings.filterwarnings("ignore", message="WARNING: duplicate atom")
            pdb = app.PDBFile(str(path))
    except Exception as error:  # OpenMM's reader raises many types (ValueError, KeyError, IndexError, ...)
        raise ValueError(f"{path}: not a readable PDB file ({type(error).__name__}: {error})") from None
    if pdb.topology.getNumAtoms() != len(records):
        raise ValueError(
            f"{path}: {len(records)} ATOM/HETATM records, but OpenMM's reader kept {pdb.topology.getNumAtoms()} atoms "
            "(it merges atoms of one residue that share a name): give each atom of a residue its own name (C1, C2, "
            "...), or give the structure as .xyz"
        )
    for atom in pdb.topology.atoms():
        if atom.element is None:
            raise ValueError(f"{path}: atom {atom.index} ({atom.name}) has no element")
    positions = pdb.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    return Molecule(pdb.topology, np.asarray(positions), Path(path).stem)


def check_geometry(molecule: Molecule) -> None:
    """:func:`attnforce.geometry.check_positions` for an isolated molecule. In a periodic box only fused atoms are
    looked for (between the coordinates as given; a crystal need not have bonds), the rest is left to the model's
    own minimum-image checks. A single isolated atom is refused: a learned potential acts on pairs, and its
    "simulation" would be free flight."""
    if molecule.topology.getPeriodicBoxVectors() is not None:
        if len(molecule.positions) > 1:
            check_not_fused(molecule.positions, molecule.name)
    elif len(molecule.positions) < 2:
        raise ValueError(
            f"{molecule.name}: {len(molecule.positions)} atom(s), nothing for a learned potential to act on: give a "
            "molecule"
        )
    else:
        check_positions(molecule.positions, molecule.atomic_numbers, molecule.name)


def load_molecule(structure: str | Path) -> Molecule:
    """A molecule from an ``.xyz``/``.extxyz``/``.pdb`` file or an embedded name (``default``, ``aspirin``)."""
    structure = embedded_or_file(structure, EMBEDDED_STRUCTURES, "structure") or structure
    path = require_file(structure, "structure")
    suffix = path.suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        molecule = read_xyz(path)
    elif suffix == ".pdb":
        molecule = read_pdb(path)
    else:
        raise ValueError(f"{path}: unknown structure format {suffix!r} (expected .xyz, .extxyz or .pdb)")
    if not np.all(np.isfinite(molecule.positions)):
        raise ValueError(f"{path}: positions contain NaN or infinite values")
    return molecule
