"""QM9 (Ramakrishnan et al., 2014) from the PyPI package ``qm9pack`` (install ``attnforce[qm9]``).

133,885 small organic molecules (H, C, N, O, F) at their B3LYP/6-31G(2df,p) equilibrium geometries, with the 12
standard targets in the usual units: energies in eV (converted from Hartree with ``openmm.unit``), the four
thermodynamic energies U0, U, H, G as atomisation energies (the free atoms' energies subtracted), the dipole in
debye, the polarisability in bohr³, the electronic spatial extent in bohr², the heat capacity in cal/(mol K).

The package's CSV files (coordinates in Å) are streamed row by row; the package itself is never imported (its
``__init__`` needs pandas), only located.
"""

import ast
import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnforce.elements import atomic_number
from attnforce.paths import require_file
from attnforce.units import ev_per_hartree

#: The 12 standard targets: name -> (qm9pack column, unit after conversion, factor to it).
TARGETS = {
    "mu": ("Dipole_debye", "D", 1.0),
    "alpha": ("Polarizability_bohr3", "bohr^3", 1.0),
    "homo": ("HOMO_au", "eV", ev_per_hartree),
    "lumo": ("LUMO_au", "eV", ev_per_hartree),
    "gap": ("HOMO_LUMO_gap_au", "eV", ev_per_hartree),
    "r2": ("R2_bohr2", "bohr^2", 1.0),
    "zpve": ("ZPVE_au", "eV", ev_per_hartree),
    "U0": ("InternalEnergy_0K_au", "eV", ev_per_hartree),
    "U": ("InternalEnergy_298K_au", "eV", ev_per_hartree),
    "H": ("Enthalphy_298K_au", "eV", ev_per_hartree),
    "G": ("GibbsFreeEnergy_298K_au", "eV", ev_per_hartree),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", "cal/(mol K)", 1.0),
}

#: Free-atom energies (Hartree) of QM9's reference calculations (its ``atomref`` table), for U0, U, H and G.
ATOM_REFERENCE_HARTREE = {
    1: {"U0": -0.500273, "U": -0.498857, "H": -0.497912, "G": -0.510927},
    6: {"U0": -37.846772, "U": -37.845355, "H": -37.844411, "G": -37.861317},
    7: {"U0": -54.583861, "U": -54.582445, "H": -54.581501, "G": -54.598897},
    8: {"U0": -75.064579, "U": -75.063162, "H": -75.062219, "G": -75.079532},
    9: {"U0": -99.718730, "U": -99.717314, "H": -99.716370, "G": -99.733544},
}

CSV_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


@dataclass
class QM9Molecules:
    """M molecules of QM9.

    Attributes:
        indices: (M,) QM9's molecule numbers (1-based, as in ``dsgdb9nsd_000001``).
        atomic_numbers, positions: per molecule, (n,) and (n, 3) Å.
        targets: name -> (M,) values in the units of :data:`TARGETS`; U0, U, H, G are atomisation energies.
        smiles: per molecule.
    """

    indices: np.ndarray
    atomic_numbers: list[np.ndarray] = field(repr=False)
    positions: list[np.ndarray] = field(repr=False)
    targets: dict[str, np.ndarray] = field(repr=False)
    smiles: list[str] = field(repr=False)

    def __len__(self) -> int:
        return len(self.indices)


def qm9pack_data_dir() -> Path:
    """The folder of qm9pack's CSV files; FileNotFoundError naming the extra to install if it is missing."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("QM9 needs the qm9pack package: pip install 'attnforce[qm9]' (qm9pack==1.0.3)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _row_to_molecule(row: dict[str, str], where: str):
    elements = ast.literal_eval(row["Elements"])  # Python literals: "['C','H']", "[[0.59,0.,1.]]"
    numbers = np.array([atomic_number(symbol) for symbol in elements], dtype=np.int64)
    positions = np.array(ast.literal_eval(row["XYZ_Ang"].replace("*^", "e")), dtype=np.float64)
    if positions.shape != (len(numbers), 3) or int(row["N_atoms"]) != len(numbers):
        raise ValueError(
            f"{where}: molecule {row['Index']} has {len(numbers)} elements and {positions.shape} coordinates"
        )
    values = {}
    for name, (column, _, factor) in TARGETS.items():
        value = float(row[column])
        if name in ("U0", "U", "H", "G"):
            value -= sum(ATOM_REFERENCE_HARTREE[int(z)][name] for z in numbers)
        values[name] = value * factor
    return int(row["Index"]), numbers, positions, values, row["SMILES"]


def read_qm9(limit: int | None = None, data_dir: str | Path | None = None) -> QM9Molecules:
    """The first ``limit`` molecules of QM9 (all without), streamed from qm9pack's CSV files (or ``data_dir``)."""
    data_dir = Path(data_dir) if data_dir is not None else qm9pack_data_dir()
    indices, numbers, positions, smiles = [], [], [], []
    targets: dict[str, list[float]] = {name: [] for name in TARGETS}
    for name in CSV_FILES:
        path = data_dir / name
        require_file(path, "QM9")
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                if limit is not None and len(indices) >= limit:
                    break
                try:
                    index, z, xyz, values, smile = _row_to_molecule(row, str(path))
                except (KeyError, ValueError, SyntaxError) as error:
                    raise ValueError(f"{path}: unreadable QM9 row ({type(error).__name__}: {error})") from None
                indices.append(index)
                numbers.append(z)
                positions.append(xyz)
                smiles.append(smile)
                for key, value in values.items():
                    targets[key].append(value)
        if limit is not None and len(indices) >= limit:
            break
    return QM9Molecules(np.array(indices), numbers, positions, {k: np.array(v) for k, v in targets.items()}, smiles)
