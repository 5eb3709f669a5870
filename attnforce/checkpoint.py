"""Saved models: ``state_dict`` + config + metadata, never a pickled module.

A saved model is a ``torch.save``d dict of plain types and tensors, read back with ``weights_only=True``::

    {
      "schema_version": 2,
      "architecture": "sake",
      "hyperparameters": {...},            # keyword arguments of the architecture
      "state_dict": {...},                 # includes energy_scale (eV) and element_shifts (119,) eV, float64
      "metadata": {
        "units": {"length": "angstrom", "energy": "eV"},
        "cutoff": float | None,            # Å; None = all pairs
        "atomic_numbers": [...],           # the reference molecule, in order
        "elements": [...],                 # the elements the model was trained on
        "dtype": "float32",
        "attnforce_version": "...",
        ...                                # training data, split, metrics
      },
    }

Migrations from older schema versions are explicit functions in :data:`MIGRATIONS`.
"""

import io
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import attnforce
from attnforce.atomic import atomic_output
from attnforce.models import Potential, build_model
from attnforce.paths import embedded_or_file, require_file

SCHEMA_VERSION = 2
UNITS = {"length": "angstrom", "energy": "eV"}
#: The entries of a saved model beside its ``schema_version`` (:func:`save_model`).
SAVED_MODEL_KEYS = ("architecture", "hyperparameters", "state_dict", "metadata")
#: The dtypes a model is trained and loaded in, by the names configs and training records use.
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: What the other files attnforce writes say they are (their ``kind``), for the message when one is given as a model.
FORECASTER_KIND, TRAINING_STATE_KIND = "forecaster", "training_state"
OTHER_KINDS = {
    FORECASTER_KIND: "a learned integrator (give it to attnforce forecast --model)",
    TRAINING_STATE_KIND: "a training state (continue its run with attnforce train CONFIG --resume)",
}


def _sake_distance_attention_renamed(stored: dict) -> dict:
    """Schema 1 -> 2: SAKE's switch of the ``-d_ij / l_k`` attention logits was called ``spatial_attention``; the
    paper and the official code call that the distance (Euclidean) attention and give ``spatial_attention`` to the
    vector block, so the switch is now ``distance_attention``."""
    hyperparameters = stored.get("hyperparameters")
    if (
        stored.get("architecture") == "sake"
        and isinstance(hyperparameters, dict)
        and "spatial_attention" in hyperparameters
    ):
        hyperparameters = dict(hyperparameters)
        hyperparameters["distance_attention"] = hyperparameters.pop("spatial_attention")
        stored = {**stored, "hyperparameters": hyperparameters}
    return {**stored, "schema_version": 2}


#: ``MIGRATIONS[v]`` turns a schema-v dict into a schema-(v+1) dict.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _sake_distance_attention_renamed}

#: Models that ship with the package, by the name accepted wherever a MODEL is.
EMBEDDED_MODELS = {"default": "aspirin_sake.pt", "sake": "aspirin_sake.pt", "equiformer": "aspirin_equiformer.pt"}


@dataclass
class SavedModel:
    """A model read from disk: the potential and everything stored beside it."""

    potential: Potential
    architecture: str
    hyperparameters: dict
    metadata: dict = field(default_factory=dict)
    path: str = ""

    @property
    def atomic_numbers(self) -> list[int]:
        """The reference molecule's atomic numbers, in order."""
        return list(self.metadata["atomic_numbers"])

    @property
    def elements(self) -> list[int]:
        """Atomic numbers of every element the model was trained on."""
        return list(self.metadata["elements"])


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that leaves no partial file (see :func:`attnforce.atomic.atomic_output`)."""
    write_archive(lambda buffer: torch.save(obj, buffer), path)


def write_archive(save: Callable[[io.BytesIO], None], path: str | Path) -> None:
    """What ``save`` writes into a buffer, written to ``path`` atomically. torch's archive writer aborts the whole
    process (C++ ``terminate``) when a write fails in its destructor, as on a full disk; written from memory, the
    failure is Python's OSError instead."""
    buffer = io.BytesIO()
    save(buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def save_model(
    path: str | Path,
    potential: Potential,
    architecture: str,
    hyperparameters: dict,
    atomic_numbers: list[int],
    extra_metadata: dict | None = None,
) -> None:
    """Write a potential and its metadata (see the module docstring) atomically to ``path``."""
    elements = sorted(set(int(z) for z in atomic_numbers))
    metadata = {
        "units": dict(UNITS),
        "cutoff": potential.cutoff,
        "atomic_numbers": [int(z) for z in atomic_numbers],
        "elements": elements,
        "dtype": str(potential.energy_scale.dtype).replace("torch.", ""),
        "attnforce_version": attnforce.__version__,
        **(extra_metadata or {}),
    }
    atomic_save(
        {
            "schema_version": SCHEMA_VERSION,
            "architecture": architecture,
            "hyperparameters": dict(hyperparameters),
            "state_dict": {k: v.detach().cpu() for k, v in potential.state_dict().items()},
            "metadata": metadata,
        },
        path,
    )


def resolve_model_path(model: str | Path) -> Path:
    """A saved model's path, or an embedded model's (``default``, ``sake``, ``equiformer``) inside the package."""
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a path or an embedded model's name ({sorted(EMBEDDED_MODELS)}), got {model!r}")
    embedded = embedded_or_file(model, EMBEDDED_MODELS, "model")
    if embedded is not None:
        return embedded
    return require_file(model, "model", f" (or name an embedded model: {sorted(EMBEDDED_MODELS)})")


#: The first bytes of a file from ``torch.save(..., _use_new_zipfile_serialization=False)`` (PyTorch before 1.6):
#: its magic number, pickled. torch reads such files with the same weights-only unpickler.
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."


def _foreign_zip(path: Path) -> str | None:
    """What a zip archive is when it is not a torch.save one (every torch.save archive holds ``<name>/data.pkl``),
    e.g. "a NumPy .npz archive, not a torch.save archive"; None for a torch archive or an unreadable zip."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None  # torch.load names what is wrong with it
    if any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
        return None
    if names and all(name.endswith(".npy") for name in names):
        return "a NumPy .npz archive, not a torch.save archive"
    return "a zip archive but not a torch.save one (it lacks data.pkl)"


def read_stored(path: str | Path, what: str = "attnforce model") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ValueError naming ``what`` for a truncated or foreign
    file."""
    path = require_file(path, what.removeprefix("attnforce "))
    with open(path, "rb") as handle:
        head = handle.read(len(LEGACY_TORCH_MAGIC))
    if not zipfile.is_zipfile(path) and head != LEGACY_TORCH_MAGIC:
        if head[:1] == b"\x80":  # a pickle's PROTO opcode
            raise ValueError(
                f"{path}: a plain pickle, not a torch.save archive; attnforce never unpickles those (they can run "
                f"code); {what} files are torch.save archives of tensors and plain types"
            )
        raise ValueError(f"{path}: not a readable {what} (not a torch.save archive: damaged, truncated or foreign)")
    foreign = _foreign_zip(path)
    if foreign:
        raise ValueError(f"{path}: {foreign}; {what} files are torch.save archives")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's text advises weights_only=False; for a file from an unknown source that advice is the attack, so
        # only the reason is kept.
        named = re.search(r"GLOBAL (\S+)", str(error))
        if named:
            raise ValueError(
                f"{path}: refused, it holds a pickled {named.group(1)}, which attnforce never unpickles (it could run "
                f"code); {what} files hold only tensors and plain types"
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:Check the documentation|$)", str(error), re.S)
        detail = " ".join((reason.group(1) if reason else str(error).split("\n")[0]).split())
        raise ValueError(f"{path}: not a readable {what} ({detail})") from None
    except RuntimeError as error:
        if "TorchScript" not in str(error):
            raise ValueError(f"{path}: not a readable {what} ({' '.join(str(error).split('. ')[0].split())})") from None
        raise ValueError(
            f"{path}: an exported TorchScript file (attnforce export), not a saved {what}; give the saved model it was "
            "exported from"
        ) from None
    except Exception as error:  # torch raises several types for a truncated or foreign file
        raise ValueError(
            f"{path}: not a readable {what} ({type(error).__name__}: {' '.join(str(error).split())})"
        ) from None


def restore_potential(network: torch.nn.Module, stored: dict) -> Potential:
    """``network`` (built from the stored architecture and hyperparameters) wrapped as a :class:`Potential` holding
    ``stored["state_dict"]``: the weights, energy scale and element shifts."""
    potential = Potential(network, 1.0, torch.zeros(119))  # scale and shifts come with the state_dict
    potential.load_state_dict(stored["state_dict"])
    return potential


def load_model(model: str | Path, dtype: torch.dtype | str = torch.float32) -> SavedModel:
    """Read a saved model (a path, or the name of an embedded model) with ``weights_only=True``, in ``dtype``
    (torch.float32 or torch.float64, or their names)."""
    dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype  # "float64" as well as torch.float64
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} (torch.float32 or torch.float64), got {dtype!r}")
    path = resolve_model_path(model)
    stored = read_stored(path)
    if isinstance(stored, dict) and stored.get("kind") in OTHER_KINDS:
        raise ValueError(f"{path}: {OTHER_KINDS[stored['kind']]}, not an energy model")
    if not isinstance(stored, dict) or "schema_version" not in stored:
        raise ValueError(f"{path}: not an attnforce model (no schema_version)")
    version = stored["schema_version"]
    if (
        not isinstance(version, int)
        or version > SCHEMA_VERSION
        or (version < SCHEMA_VERSION and version not in MIGRATIONS)
    ):
        raise ValueError(
            f"{path}: schema version {version} is not one this attnforce reads (it reads {SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        stored = MIGRATIONS[version](stored)
        version = stored["schema_version"]
    lacking = [key for key in SAVED_MODEL_KEYS if key not in stored]
    if lacking:
        raise ValueError(
            f"{path}: an attnforce model holds {', '.join(SAVED_MODEL_KEYS)}; this one lacks {', '.join(lacking)} "
            "(altered, or not written by attnforce): use the file training wrote"
        )
    try:
        try:
            network = build_model(stored["architecture"], stored["hyperparameters"], dtype)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        potential = restore_potential(network, stored)
        metadata = stored["metadata"]
        missing = [key for key in ("units", "cutoff", "atomic_numbers", "elements") if key not in metadata]
        if missing:
            raise ValueError(
                f"{path}: its metadata lacks {', '.join(missing)} (altered, or not written by attnforce): use the "
                "file training wrote"
            )
        if metadata["units"] != UNITS:
            raise ValueError(
                f"{path}: its metadata gives units {metadata['units']}; attnforce models work in {UNITS} (the file "
                "was not written by attnforce, or was altered)"
            )
        not_finite = [name for name, value in stored["state_dict"].items() if not torch.isfinite(value).all()]
        if not_finite:
            raise ValueError(f"{path}: weights {not_finite[:3]} hold NaN or infinite values; the file is damaged")
        shifts = potential.element_shifts
        outside = [z for z in metadata["elements"] if not 0 < int(z) < 119]
        # Training gives every element of its data a least-squares energy shift and leaves the others at zero
        # (all shifts are zero only for data whose mean energy is zero, which says nothing).
        untrained = outside or [int(z) for z in metadata["elements"] if shifts[z] == 0 and bool(shifts.any())]
        if untrained:
            raise ValueError(
                f"{path}: its metadata lists elements {untrained} that its network was not trained on (no energy "
                "shift); the file was altered: use the file training wrote"
            )
    except (KeyError, TypeError, RuntimeError) as error:
        detail = " ".join(str(error).split())  # torch names the weight and the shapes on its second line
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise ValueError(f"{path}: malformed attnforce model ({type(error).__name__}: {detail})") from None
    return SavedModel(
        potential.to(dtype).eval(), stored["architecture"], stored["hyperparameters"], metadata, str(path)
    )
