"""attnforce: attention-based equivariant machine-learned potentials for OpenMM.

Models work in Å and eV; the OpenMM adapter converts to nm and kJ/mol at the border.
"""

__version__ = "0.1.0"
