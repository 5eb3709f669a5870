"""QM9 from the real qm9pack package: geometries, the 12 targets in the usual units, atomisation energies."""

import importlib.util

import numpy as np
import pytest

from systems import qm9
from systems.qm9 import TARGETS, read_qm9

pytestmark = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack is not installed")


@pytest.fixture(scope="module")
def molecules():
    return read_qm9(limit=300)


def test_first_molecules_stream_in_order(molecules):
    assert len(molecules) == 300 and list(molecules.indices[:3]) == [1, 2, 3]
    assert molecules.smiles[:3] == ["C", "N", "O"]
    assert list(molecules.atomic_numbers[0]) == [6, 1, 1, 1, 1]
    bonds = np.linalg.norm(molecules.positions[0][1:] - molecules.positions[0][0], axis=1)
    np.testing.assert_allclose(bonds, 1.09, atol=0.01)  # C-H in methane, Å
    assert set(molecules.targets) == set(TARGETS) and all(len(v) == 300 for v in molecules.targets.values())


def test_atomisation_energy_agrees_with_torch_geometrics_independent_constants(molecules):
    from torch_geometric.datasets.qm9 import HAR2EV, atomrefs

    u0_hartree = -40.47893  # methane, qm9pack's InternalEnergy_0K_au
    reference = u0_hartree * HAR2EV - (atomrefs[7][1] + 4 * atomrefs[7][0])  # PyG's U0 atom references: C, 4 H
    assert molecules.targets["U0"][0] == pytest.approx(reference, abs=1e-4)
    assert molecules.targets["U0"][0] == pytest.approx(-17.172, abs=1e-3)


def test_targets_are_consistent(molecules):
    gap = molecules.targets["lumo"] - molecules.targets["homo"]
    np.testing.assert_allclose(molecules.targets["gap"], gap, atol=3e-3)  # 4-decimal Hartree in the file
    assert np.all(molecules.targets["U"] < molecules.targets["U0"]) and np.all(molecules.targets["Cv"] > 0)
    # H = U + kT for the molecule and for each free atom, so atomisation enthalpy - energy = (1 - n) kT at 298.15 K
    import openmm.unit as unit

    kt = unit.BOLTZMANN_CONSTANT_kB * 298.15 * unit.kelvin / (unit.elementary_charge * unit.volt)
    kt_ev = kt.value_in_unit(unit.dimensionless) if unit.is_quantity(kt) else float(kt)
    atoms = np.array([len(z) for z in molecules.atomic_numbers])
    difference = molecules.targets["H"] - molecules.targets["U"]
    np.testing.assert_allclose(difference, (1 - atoms) * kt_ev, atol=1e-3)  # the file and atomref round to 1e-6 Ha


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(qm9.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"attnforce\[qm9\]"):
        read_qm9(limit=1)
