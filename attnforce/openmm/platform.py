"""Choosing an OpenMM platform."""

import logging

import openmm

logger = logging.getLogger(__name__)

#: Preference order of ``platform="auto"``.
AUTO_ORDER = ("CUDA", "OpenCL", "CPU")


def available_platforms() -> list[str]:
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def select_platform(name: str = "auto") -> openmm.Platform:
    """The named platform, or with ``"auto"`` the first available of CUDA, OpenCL, CPU (logged)."""
    available = available_platforms()
    if name == "auto":
        for candidate in AUTO_ORDER:
            if candidate in available:
                logger.info("platform auto: chose %s (available: %s)", candidate, ", ".join(available))
                return openmm.Platform.getPlatformByName(candidate)
        name = available[0]
    if name not in available:
        raise ValueError(f"OpenMM platform {name!r} is not available here; available: {available}")
    return openmm.Platform.getPlatformByName(name)
