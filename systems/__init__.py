"""Datasets, readers and molecular systems. Everything here hands out Å and eV."""

from systems.frames import Frames, collate
from systems.readers import read_dataset, read_extxyz, read_npz
from systems.splits import random_split

__all__ = ["Frames", "collate", "random_split", "read_dataset", "read_extxyz", "read_npz"]
