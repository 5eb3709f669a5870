"""attnforce: attention-based equivariant machine-learned potentials for OpenMM.

Models work in Å and eV; the OpenMM adapter converts to nm and kJ/mol at the border.
"""

# torch first: openmm loads openmm-torch's kernels when it is first imported, and they need the libraries
# that importing torch loads (libnvrtc). Imported the other way round, no platform supports TorchForce.
import torch  # noqa: F401, E402

__version__ = "0.1.0"
