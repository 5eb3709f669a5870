"""Element symbols and atomic numbers, through OpenMM's periodic table."""

from openmm.app import element as _element


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (case-insensitive); ValueError naming an unknown one."""
    try:
        return _element.Element.getBySymbol(symbol.strip().capitalize()).atomic_number
    except KeyError:
        raise ValueError(f"unknown element symbol {symbol!r}") from None


def symbol(atomic_number: int) -> str:
    """Element symbol of an atomic number; ValueError for one that does not exist."""
    try:
        return _element.Element.getByAtomicNumber(int(atomic_number)).symbol
    except KeyError:
        raise ValueError(f"unknown atomic number {atomic_number}") from None


def formula(atomic_numbers) -> str:
    """Chemical formula of atomic numbers, elements in alphabetical order: ``[8, 1, 1]`` -> ``H2O``."""
    counts: dict[str, int] = {}
    for z in atomic_numbers:
        counts[symbol(z)] = counts.get(symbol(z), 0) + 1
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in sorted(counts.items()))
