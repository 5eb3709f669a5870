"""Shared fixtures: model variants to run every physics check on, molecules, and the reference data."""

import copy
import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from attnforce.checkpoint import SavedModel
from attnforce.models import ARCHITECTURES, Potential, build_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ASPIRIN_XYZ = DATA / "md17" / "rmd17_aspirin_1000.xyz"

_EQUIFORMER = dict(
    irreps_node="8x0e+4x1o+2x2e",
    num_layers=2,
    num_heads=2,
    irreps_head="4x0e+2x1o+1x2e",
    irreps_mlp="16x0e+4x1o+2x2e",
    irreps_feature="8x0e",
    num_rbf=8,
    radial_hidden=[8],
    cutoff=4.0,
    parity=True,
    num_atom_types=10,
    avg_degree=6.0,
)

#: Small variants of every architecture and of each of their ablations, the parametrisation of the physics suite.
MODEL_VARIANTS = {
    "sake-allpairs": ("sake", dict(hidden_features=16, num_layers=2, num_heads=4, num_rbf=16, cutoff=None)),
    "sake-cutoff": ("sake", dict(hidden_features=16, num_layers=2, num_heads=4, num_rbf=16, cutoff=4.0)),
    # The official layer's options (sake-gnn's DenseSAKELayer), and their mean in cutoff mode.
    "sake-official": (
        "sake",
        dict(
            hidden_features=16,
            num_layers=2,
            num_heads=4,
            num_rbf=16,
            cutoff=None,
            distance_attention=False,
            aggregation="mean",
        ),
    ),
    "sake-cutoff-mean": (
        "sake",
        dict(hidden_features=16, num_layers=2, num_heads=4, num_rbf=16, cutoff=4.0, aggregation="mean"),
    ),
    "equiformer-nonlinear": ("equiformer", dict(_EQUIFORMER, attention="mlp", nonlinear_messages=True)),
    "equiformer-linear": (
        "equiformer",
        dict(_EQUIFORMER, attention="mlp", nonlinear_messages=False, radial_basis="gaussian"),
    ),
    "equiformer-dot-product": ("equiformer", dict(_EQUIFORMER, attention="dot_product", nonlinear_messages=False)),
}
assert {arch for arch, _ in MODEL_VARIANTS.values()} == set(ARCHITECTURES), "every architecture needs a variant"
#: Variants with a cutoff radius (the cutoff-smoothness checks).
CUTOFF_VARIANTS = sorted(name for name, (_, h) in MODEL_VARIANTS.items() if h["cutoff"] is not None)

ETHANOL = [6, 6, 8, 1, 1, 1, 1, 1, 1]


def make_potential(variant: str, dtype=torch.float64, seed: int = 0) -> Potential:
    """A randomly initialised potential; shifts and scale non-trivial so that they are exercised too.

    A fresh copy each call (building e3nn modules generates code, which is slow; copying is not)."""
    return copy.deepcopy(_built_potential(variant, seed)).to(dtype).eval()


@functools.cache
def _built_potential(variant: str, seed: int) -> Potential:
    torch.manual_seed(seed)
    architecture, hyperparameters = MODEL_VARIANTS[variant]
    shifts = torch.zeros(119, dtype=torch.float64)
    shifts[[1, 6, 8]] = torch.tensor([-13.6, -1029.5, -2041.3], dtype=torch.float64)
    return Potential(build_model(architecture, hyperparameters, torch.float64), 0.3, shifts)


def make_saved(variant: str, atomic_numbers: list[int], dtype=torch.float32) -> SavedModel:
    architecture, hyperparameters = MODEL_VARIANTS[variant]
    metadata = {
        "units": {"length": "angstrom", "energy": "eV"},
        "cutoff": hyperparameters["cutoff"],
        "atomic_numbers": atomic_numbers,
        "elements": sorted(set(atomic_numbers)),
    }
    return SavedModel(make_potential(variant, dtype), architecture, hyperparameters, metadata)


def random_molecule(num_atoms: int, seed: int, spread: float = 1.2, min_distance: float = 0.9) -> np.ndarray:
    """(N, 3) Å positions with every pair at least ``min_distance`` apart."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < num_atoms:
        candidate = rng.normal(scale=spread, size=3)
        if all(np.linalg.norm(candidate - p) >= min_distance for p in positions):
            positions.append(candidate)
    return np.array(positions)


def energy_and_forces(potential: Potential, positions, atomic_numbers, dtype=torch.float64):
    """Energy () eV and forces (N, 3) eV/Å of one structure."""
    pos = torch.as_tensor(np.asarray(positions), dtype=dtype)
    z = torch.as_tensor(atomic_numbers, dtype=torch.long)
    energy, forces = potential(pos, z, torch.zeros(len(z), dtype=torch.long), 1)
    return energy[0].detach(), forces.detach()


@pytest.fixture(params=sorted(MODEL_VARIANTS))
def variant(request) -> str:
    return request.param


@pytest.fixture
def aspirin_xyz() -> Path:
    if not ASPIRIN_XYZ.is_file():
        pytest.skip(f"reference data not found at {ASPIRIN_XYZ}")
    return ASPIRIN_XYZ
