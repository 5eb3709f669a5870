"""Frames of labelled structures in the package's units, and batching them for the models."""

from dataclasses import dataclass

import numpy as np
import torch

from attnforce import keys


class ScaledArray:
    """``scale * array``, computed where it is indexed: a file's memory-mapped array in the package's units, so that
    only the frames that are used are ever read and converted."""

    def __init__(self, array: np.ndarray, scale: float):
        self.array, self.scale = array, float(scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index) -> np.ndarray:
        values = np.asarray(self.array[index])
        if values.dtype != np.float64 or np.may_share_memory(values, self.array):  # a view of the file: copy it
            values = values.astype(np.float64)
        values *= self.scale  # in place: the frames read are held once
        return values

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype, copy=False)


def _all_finite(values, chunk: int = 4096) -> bool:
    """Whether every value is finite, checked ``chunk`` frames at a time (a memory-mapped file is never loaded
    whole)."""
    return all(np.all(np.isfinite(values[first : first + chunk])) for first in range(0, len(values), chunk))


@dataclass
class Frames:
    """F structures of one molecule (MD17-style data).

    The per-frame arrays may be memory-mapped files (:class:`numpy.memmap`, or a :class:`ScaledArray` of one for a
    unit conversion): index them to read frames; :meth:`subset` returns frames held in memory.

    Attributes:
        atomic_numbers: (N,) int.
        positions: (F, N, 3) Å.
        energies: (F,) eV.
        forces: (F, N, 3) eV/Å.
        source: where the frames came from (a path), for messages and metadata.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    source: str = ""

    def __post_init__(self):
        num_frames, num_atoms = self.positions.shape[:2]
        expected = {
            "atomic_numbers": (num_atoms,),
            "positions": (num_frames, num_atoms, 3),
            "energies": (num_frames,),
            "forces": (num_frames, num_atoms, 3),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"{self.source or 'frames'}: {name} has shape {getattr(self, name).shape}, expected {shape}"
                )
        for name in ("positions", "energies", "forces"):
            if not _all_finite(getattr(self, name)):
                raise ValueError(f"{self.source or 'frames'}: {name} contain NaN or infinite values")

    def __len__(self) -> int:
        return len(self.energies)

    def spread(self, samples: int = 100) -> np.ndarray:
        """Indices of up to ``samples`` frames spread evenly over the set, the first and the last included."""
        return np.unique(np.linspace(0, len(self) - 1, min(len(self), samples)).astype(int))

    def check_geometry(self, samples: int = 100) -> None:
        """ValueError naming the first of the :meth:`spread` frames that cannot be a molecule in Å (fused atoms, or
        none bonded: see :func:`attnforce.geometry.check_positions`)."""
        from attnforce.geometry import check_positions

        for index in self.spread(samples):
            check_positions(self.positions[index], self.atomic_numbers, f"{self.source}, frame {index}")

    def subset(self, indices: np.ndarray) -> "Frames":
        """The frames at ``indices`` (an integer array), read into memory."""
        indices = np.asarray(indices)
        return Frames(
            self.atomic_numbers,
            np.asarray(self.positions[indices]),
            np.asarray(self.energies[indices]),
            np.asarray(self.forces[indices]),
            self.source,
        )


def collate(frames: Frames, indices: np.ndarray, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """A batch of the frames at ``indices``, flattened over atoms, keyed by :mod:`attnforce.keys`."""
    num_structures = len(indices)
    num_atoms = len(frames.atomic_numbers)
    positions = np.asarray(frames.positions[indices], dtype=np.float64)
    positions = positions - positions.mean(axis=1, keepdims=True)  # centred before a float32 cast (translation-free)
    return {
        keys.POSITIONS: torch.as_tensor(positions.reshape(-1, 3), dtype=dtype),
        keys.ATOMIC_NUMBERS: torch.as_tensor(np.tile(frames.atomic_numbers, num_structures), dtype=torch.long),
        keys.BATCH: torch.arange(num_structures).repeat_interleave(num_atoms),
        keys.ENERGY: torch.as_tensor(frames.energies[indices], dtype=torch.float64),  # see models/potential.py
        keys.FORCES: torch.as_tensor(frames.forces[indices].reshape(-1, 3), dtype=dtype),
        keys.NUM_ATOMS: torch.full((num_structures,), num_atoms, dtype=torch.long),
    }
