"""Datasets, readers and molecular systems. Everything here hands out Å and eV."""

import attnforce  # noqa: F401, E402  (imports torch before openmm: see attnforce/__init__.py)
from systems.frames import Frames, collate
from systems.readers import read_dataset, read_extxyz, read_npz
from systems.splits import random_split

__all__ = ["Frames", "collate", "random_split", "read_dataset", "read_extxyz", "read_npz"]
