"""Memory: what the system can still give, and what one energy-and-force evaluation of a model needs, estimated
before a run so that a structure too large for the machine is refused with a message instead of being killed by
the kernel."""

import math
import os

import numpy as np

#: Floats that one energy-and-force evaluation keeps per directed atom pair and layer, per unit of the model's
#: width (:func:`model_width`), in the model's dtype. Measured on the embedded models (the peak of torch's
#: allocations in one evaluation on grids of 250-1000 atoms: SAKE 17.4, Equiformer 20.0) and rounded up;
#: ``tests/test_memory.py`` holds the estimate to the measurement.
FLOATS_PER_PAIR_AND_WIDTH = {"sake": 18.0, "equiformer": 22.0}
#: Share of the free memory a run may plan to use: the rest is the process's own and other programs' margin.
USABLE_SHARE = 0.8


def available_memory_bytes() -> int:
    """Memory the system can still give this process (``MemAvailable``; all physical memory where unknown)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def model_width(architecture: str, hyperparameters: dict) -> int:
    """The feature size that a model's per-pair tensors scale with: SAKE's ``hidden_features``, the dimension of the
    Equiformer's ``irreps_node``."""
    if architecture == "sake":
        return int(hyperparameters["hidden_features"])
    from e3nn import o3

    return o3.Irreps(hyperparameters["irreps_node"]).dim


def count_pairs(positions: np.ndarray, cutoff: float | None, box_volume: float | None = None) -> int:
    """Directed pairs of distinct atoms within ``cutoff`` (Å) of positions (N, 3) Å: all N(N-1) without a cutoff;
    in a periodic box of ``box_volume`` Å³, the pairs a uniform density gives (images included)."""
    atoms = len(positions)
    if cutoff is None:
        return atoms * (atoms - 1)
    if box_volume is not None:
        return math.ceil(atoms * atoms / box_volume * 4.0 / 3.0 * math.pi * cutoff**3)
    from scipy.spatial import cKDTree

    tree = cKDTree(np.asarray(positions, dtype=np.float64))
    return int(tree.count_neighbors(tree, cutoff)) - atoms  # counts (i, i) and both orders of each pair


def evaluation_bytes(architecture: str, hyperparameters: dict, pairs: int, itemsize: int) -> int:
    """Estimated peak memory (bytes) of one energy-and-force evaluation over ``pairs`` directed pairs."""
    per_pair = FLOATS_PER_PAIR_AND_WIDTH[architecture] * int(hyperparameters["num_layers"])
    return math.ceil(pairs * per_pair * model_width(architecture, hyperparameters) * itemsize)


def check_evaluation_memory(
    architecture: str,
    hyperparameters: dict,
    cutoff: float | None,
    itemsize: int,
    positions: np.ndarray,
    box_volume: float | None = None,
    what: str = "the structure",
) -> None:
    """ValueError, before a run, when one evaluation of the model on ``positions`` (N, 3) Å would need more than
    :data:`USABLE_SHARE` of the free memory; the message names the size and what to change."""
    pairs = count_pairs(positions, cutoff, box_volume)
    needed = evaluation_bytes(architecture, hyperparameters, pairs, itemsize)
    available = available_memory_bytes()
    if needed > USABLE_SHARE * available:
        within = "all pairs: the model has no cutoff" if cutoff is None else f"within its {cutoff:g} Å cutoff"
        other = ", or a model with a cutoff (equiformer)" if cutoff is None else ""
        raise ValueError(
            f"{what}: {len(positions)} atoms ({pairs:.3g} atom pairs, {within}) need about {needed / 2**30:,.1f} GiB "
            f"for each force evaluation, and {available / 2**30:,.1f} GiB of memory is free: give a smaller "
            f"structure (the memory grows with the pairs){other}"
        )
