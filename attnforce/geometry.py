"""Checks of an isolated structure's geometry before a model sees it: fused atoms, coordinates in the wrong unit,
atoms far from any neighbour."""

import logging

import numpy as np

logger = logging.getLogger(__name__)

#: Closest approach (Å) of two atoms that a structure may have: the shortest bond (H2) is 0.74 Å.
MIN_DISTANCE_A = 0.5
#: Distance (Å) beyond which an atom with no neighbour looks unlike any molecule a model was trained on.
LONELY_DISTANCE_A = 3.0
#: Two atoms are bonded when closer than this factor times the sum of their covalent radii.
BONDED_FACTOR = 1.3


def check_not_fused(positions: np.ndarray, name: str) -> np.ndarray:
    """Each atom's distance (Å) to its nearest neighbour, (N,); ValueError for non-finite coordinates or atoms
    closer than :data:`MIN_DISTANCE_A`, naming the closest pair. ``positions``: (N, 3) Å, N >= 2, isolated."""
    return _nearest_distances(_finite_tree(positions, name), positions, name)


#: Largest coordinate (Å) a structure may have: beyond, no box or molecule is meant, and distances lose all
#: precision in float32 (and overflow in the neighbour search).
MAX_COORDINATE_A = 1e8


def _finite_tree(positions: np.ndarray, name: str):
    """A ``cKDTree`` of ``positions``; ValueError for non-finite coordinates."""
    from scipy.spatial import cKDTree

    if not np.all(np.isfinite(positions)):
        raise ValueError(f"{name}: coordinates are NaN or infinite")
    largest = float(np.abs(positions).max(initial=0.0))
    if largest > MAX_COORDINATE_A:
        raise ValueError(
            f"{name}: coordinates reach {largest:.3g} Å, beyond the {MAX_COORDINATE_A:g} Å of any simulation box; "
            "check the coordinates and their unit (Å)"
        )
    return cKDTree(positions)


def _nearest_distances(tree, positions: np.ndarray, name: str) -> np.ndarray:
    """:func:`check_not_fused` on a ``cKDTree`` of the (finite) ``positions``."""
    distances, neighbours = tree.query(positions, k=2)
    closest = int(np.argmin(distances[:, 1]))
    if distances[closest, 1] < MIN_DISTANCE_A:
        # With duplicate points the tree may list the atom itself second; its partner is then the first.
        partner = next(int(index) for index in neighbours[closest, ::-1] if index != closest)
        raise ValueError(
            f"{name}: atoms {closest} and {partner} are {distances[closest, 1]:.3g} Å apart (closer than "
            f"{MIN_DISTANCE_A} Å, shorter than any bond); check the coordinates and their unit (Å)"
        )
    return distances[:, 1]


def check_positions(positions: np.ndarray, atomic_numbers, name: str) -> None:
    """ValueError for atoms closer than :data:`MIN_DISTANCE_A` (fused: no model was trained on them, and they give
    huge or NaN forces) or for a structure in which no two atoms are bonded (coordinates in bohr, nm or pm read as
    Å); a warning for atoms without a neighbour within :data:`LONELY_DISTANCE_A`.

    Args:
        positions: (N, 3) Å of an isolated structure (periodic ones are left to the models' minimum-image checks).
        atomic_numbers: (N,).
        name: the structure's name in messages.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if len(positions) < 2:
        return
    from ase.data import covalent_radii

    tree = _finite_tree(positions, name)
    distances = _nearest_distances(tree, positions, name)
    closest = float(distances.min())
    radii = covalent_radii[np.asarray(atomic_numbers, dtype=np.int64)]
    first, second = tree.query_pairs(BONDED_FACTOR * 2.0 * radii.max(), output_type="ndarray").T
    lengths = np.linalg.norm(positions[first] - positions[second], axis=-1)
    if not np.any(lengths < BONDED_FACTOR * (radii[first] + radii[second])):
        raise ValueError(
            f"{name}: no two atoms are within bonding distance (the closest are {closest:.3g} Å "
            "apart); the coordinates are probably not in Å (bohr, nm or pm?): convert them to Å"
        )
    lonely = np.flatnonzero(distances > LONELY_DISTANCE_A)
    if len(lonely):
        logger.warning(
            "%s: atom(s) %s have no neighbour within %g Å; the structure is far from any molecule a model is trained "
            "on (check its units: Å)",
            name,
            lonely[:10].tolist(),
            LONELY_DISTANCE_A,
        )


#: Largest relative difference between an atom's nearest-neighbour distance and the sum of the two covalent radii
#: that :func:`bond_like_fraction` counts as a bond (double and triple bonds are 10-20% shorter than that sum).
BOND_LENGTH_TOLERANCE = 0.25


def bond_like_fraction(positions: np.ndarray, atomic_numbers) -> float:
    """The fraction of atoms whose nearest neighbour lies at a bond length: within :data:`BOND_LENGTH_TOLERANCE` of
    the sum of the two covalent radii (ASE's). A molecule in Å scores near 1 (aspirin's and ethanol's frames: 1),
    other triples of numbers, such as forces, far less. ``positions``: (N, 3), N >= 2, finite."""
    from ase.data import covalent_radii
    from scipy.spatial import cKDTree

    positions = np.asarray(positions, dtype=np.float64)
    numbers = np.asarray(atomic_numbers, dtype=np.int64)
    distances, neighbours = cKDTree(positions).query(positions, k=2)
    bond = covalent_radii[numbers] + covalent_radii[numbers[neighbours[:, 1]]]
    return float(np.mean(np.abs(distances[:, 1] / bond - 1.0) <= BOND_LENGTH_TOLERANCE))
