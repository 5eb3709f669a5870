"""Unit factors, every one derived from :mod:`openmm.unit` (never typed in).

Each name reads as "<target> per <source>": multiply a value in the source unit by it.
Models work in Å and eV; these factors are used only at the two borders (data loaders, OpenMM adapter).
"""

from openmm import unit


def _ratio(numerator: unit.Quantity, denominator: unit.Quantity) -> float:
    """How many ``denominator`` make one ``numerator`` (both quantities of the same dimension)."""
    ratio = numerator / denominator
    if unit.is_quantity(ratio):
        ratio = ratio.value_in_unit(unit.dimensionless)
    return float(ratio)


_ELECTRONVOLT = 1.0 * unit.elementary_charge * unit.volt  # energy of one particle
_MOLAR_ELECTRONVOLT = _ELECTRONVOLT * unit.AVOGADRO_CONSTANT_NA  # the same, per mole

angstrom_per_nm: float = _ratio(1.0 * unit.nanometer, 1.0 * unit.angstrom)
nm_per_angstrom: float = _ratio(1.0 * unit.angstrom, 1.0 * unit.nanometer)
kj_per_mol_per_ev: float = _ratio(_MOLAR_ELECTRONVOLT, 1.0 * unit.kilojoule_per_mole)
ev_per_kj_per_mol: float = _ratio(1.0 * unit.kilojoule_per_mole, _MOLAR_ELECTRONVOLT)
ev_per_kcal_per_mol: float = _ratio(1.0 * unit.kilocalorie_per_mole, _MOLAR_ELECTRONVOLT)
ev_per_mev: float = _ratio(1.0 * (unit.milli * unit.volt), 1.0 * unit.volt)
mev_per_ev: float = _ratio(1.0 * unit.volt, 1.0 * (unit.milli * unit.volt))
ev_per_hartree: float = _ratio(1.0 * unit.hartree, _ELECTRONVOLT)

#: Energy units accepted by the data loaders, as eV per unit. Forces are read in <energy unit>/Å.
EV_PER_ENERGY_UNIT: dict[str, float] = {
    "eV": 1.0,
    "meV": ev_per_mev,
    "kcal/mol": ev_per_kcal_per_mol,
    "kJ/mol": ev_per_kj_per_mol,
    "Hartree": ev_per_hartree,
}
