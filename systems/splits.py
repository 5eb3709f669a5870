"""Seeded, reproducible splits."""

import numpy as np

#: The papers' MD17 splits by name: train, validation, test (-1 = every remaining frame).
NAMED_SPLITS = {"equiformer": [950, 50, -1], "sake": [1000, 1000, -1]}


def random_split(num_frames: int, sizes: list[int] | str, seed: int) -> list[np.ndarray]:
    """Disjoint random index sets of the given sizes, drawn from ``range(num_frames)`` with ``seed``.

    ``sizes`` is a list (a size of -1, at most one, takes every remaining frame) or the name of a paper's split
    (:data:`NAMED_SPLITS`).
    """
    if isinstance(sizes, str):
        if sizes not in NAMED_SPLITS:
            raise ValueError(f"unknown named split {sizes!r}; known: {sorted(NAMED_SPLITS)}")
        sizes = NAMED_SPLITS[sizes]
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
