"""Integrators: molecular dynamics with learned forces (``md``)."""

import attnforce  # noqa: F401, E402  (imports torch before openmm: see attnforce/__init__.py)
