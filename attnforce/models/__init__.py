"""Architectures, keyed by the name used in configs, saved models and the command line."""

from torch import nn

from attnforce.models.equiformer import Equiformer
from attnforce.models.potential import Potential
from attnforce.models.presets import PRESETS, preset
from attnforce.models.sake import SAKE

#: Every architecture the package can build; drives the CLI choices and the tests' parametrisation.
ARCHITECTURES: dict[str, type[nn.Module]] = {"sake": SAKE, "equiformer": Equiformer}


def build_model(architecture: str, hyperparameters: dict) -> nn.Module:
    """Build an energy model by name from keyword hyperparameters."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**hyperparameters)


__all__ = ["ARCHITECTURES", "PRESETS", "Equiformer", "Potential", "SAKE", "build_model", "preset"]
