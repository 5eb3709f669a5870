"""One known line of noise kept out of users' logs, so that real warnings stand out."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

#: What ``simtk.openmm`` logs (through the root logger) when it is imported; openmm-torch 1.5's wrapper imports it.
SIMTK_NOTICE = "importing 'simtk.openmm' is deprecated"


class _DropSimtkNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return SIMTK_NOTICE not in record.getMessage()


@contextmanager
def quiet_simtk_notice() -> Iterator[None]:
    """Drop the ``simtk.openmm`` deprecation notice logged inside the block; every other record passes."""
    drop = _DropSimtkNotice()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
