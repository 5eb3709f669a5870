"""Architectures, keyed by the name used in configs, saved models and the command line."""

import inspect
import math
from typing import Optional

import torch
from torch import nn

from attnforce.models.equiformer import Equiformer
from attnforce.models.potential import Potential
from attnforce.models.presets import PRESETS, preset
from attnforce.models.sake import SAKE

#: Every architecture the package can build; drives the CLI choices and the tests' parametrisation.
ARCHITECTURES: dict[str, type[nn.Module]] = {"sake": SAKE, "equiformer": Equiformer}


#: Upper bounds of integer hyperparameters: a file or config asking for more would exhaust memory before failing.
INTEGER_LIMITS = {"num_layers": 64, "num_heads": 64}
DEFAULT_INTEGER_LIMIT = 4096


def check_hyperparameters(architecture: str, hyperparameters: dict, cls: type | None = None) -> None:
    """ValueError naming the first hyperparameter whose type differs from its default's (or, without a default,
    its annotation's), or an integer outside 1..limit (:data:`INTEGER_LIMITS`), or a float that is not positive and
    finite. ``cls``: the class the hyperparameters are for (default: the energy model ``architecture``). Unknown
    names are left to the constructor's TypeError."""
    parameters = inspect.signature(cls or ARCHITECTURES[architecture]).parameters
    for name, value in hyperparameters.items():
        if name not in parameters:
            continue
        parameter = parameters[name]
        kind = parameter.annotation if parameter.default is inspect.Parameter.empty else type(parameter.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{architecture} hyperparameter {name} must be true or false, got {value!r}")
        elif kind is int:
            limit = INTEGER_LIMITS.get(name, DEFAULT_INTEGER_LIMIT)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ValueError(
                    f"{architecture} hyperparameter {name} must be an integer from 1 to {limit}, got {value!r}"
                )
        elif kind is float:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value > 0)
            ):
                raise ValueError(f"{architecture} hyperparameter {name} must be a positive number, got {value!r}")
        elif kind is str and not isinstance(value, str):
            raise ValueError(f"{architecture} hyperparameter {name} must be a string, got {value!r}")


def build_model(architecture: str, hyperparameters: dict, dtype: Optional[torch.dtype] = None) -> nn.Module:
    """Build an energy model by name from keyword hyperparameters.

    ``dtype`` (default: torch's default dtype) is the dtype the model is constructed in. It matters beyond a later
    ``.to(dtype)``: e3nn computes its Clebsch-Gordan coefficients at construction, and a model built in float32
    then cast to float64 keeps float32-accurate coefficients (equivariant to about 1e-9, not 1e-15).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    if not isinstance(hyperparameters, dict):
        raise TypeError(f"hyperparameters must be a mapping of keyword arguments, got {type(hyperparameters).__name__}")
    check_hyperparameters(architecture, hyperparameters)
    cutoff = hyperparameters.get("cutoff")
    if cutoff is not None and not (isinstance(cutoff, (int, float)) and math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive number of Å (or None: all pairs), got {cutoff!r}")
    previous = torch.get_default_dtype()
    dtype = previous if dtype is None else dtype
    torch.set_default_dtype(dtype)
    try:
        return ARCHITECTURES[architecture](**hyperparameters).to(dtype)
    finally:
        torch.set_default_dtype(previous)


__all__ = ["ARCHITECTURES", "PRESETS", "Equiformer", "Potential", "SAKE", "build_model", "preset"]
