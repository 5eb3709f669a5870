"""Seeded, reproducible splits."""

import numpy as np


def random_split(num_frames: int, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Disjoint random index sets of the given sizes, drawn from ``range(num_frames)`` with ``seed``.

    A size of -1 (at most one) takes every remaining frame.
    """
    if sizes.count(-1) > 1:
        raise ValueError("at most one split size may be -1")
    fixed = sum(s for s in sizes if s != -1)
    if fixed > num_frames:
        raise ValueError(f"split sizes {sizes} need {fixed} frames, the data has {num_frames}")
    order = np.random.default_rng(seed).permutation(num_frames)
    splits, start = [], 0
    for size in sizes:
        size = num_frames - fixed if size == -1 else size
        splits.append(np.sort(order[start : start + size]))
        start += size
    return splits
