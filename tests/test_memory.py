"""The memory estimate that md checks before a run (:mod:`attnforce.memory`) against the peak memory that one
energy-and-force evaluation of each embedded model really takes."""

import numpy as np
import pytest
import torch

from attnforce.checkpoint import load_model
from attnforce.memory import check_evaluation_memory, count_pairs, evaluation_bytes


def peak_allocated_bytes(saved, positions: np.ndarray) -> int:
    """The most bytes that torch's allocations held at once during one energy-and-force evaluation on
    ``positions`` (N, 3) Å of carbon, hydrogen and oxygen, from the profiler's memory events: what the model itself
    needs, whatever else the process or the machine holds."""
    from torch.profiler import ProfilerActivity, profile

    numbers = torch.tensor([(6, 1, 8)[i % 3] for i in range(len(positions))])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        saved.potential(
            torch.tensor(positions, dtype=torch.float32), numbers, torch.zeros(len(positions), dtype=torch.long), 1
        )
    events = sorted(
        (event for event in profiler.profiler.kineto_results.events() if event.name() == "[memory]"),
        key=lambda event: event.start_ns(),
    )
    held = np.cumsum([event.nbytes() for event in events])  # allocations positive, frees negative
    return int(held.max(initial=0))


@pytest.mark.parametrize(("model", "atoms"), [("sake", 250), ("equiformer", 500)])
def test_estimate_is_within_a_factor_of_the_measured_peak(model, atoms):
    """On a grid of atoms 1.6 Å apart (a dense liquid's spacing)."""
    saved = load_model(model)
    side = int(np.ceil(atoms ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:atoms] * 1.6
    grid = grid + np.random.default_rng(0).normal(scale=0.05, size=grid.shape)
    measured = peak_allocated_bytes(saved, grid)
    pairs = count_pairs(grid, saved.potential.cutoff)
    estimate = evaluation_bytes(saved.architecture, saved.hyperparameters, pairs, 4)
    assert measured > 0 and 0.8 < estimate / measured < 2.0, (estimate, measured)


def test_pairs_are_counted_within_the_cutoff_and_in_a_box():
    positions = np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    assert count_pairs(positions, None) == 6
    assert count_pairs(positions, 2.0) == 2  # 0-1 both ways; 2 is alone
    assert count_pairs(positions, 2.0, box_volume=1000.0) == int(np.ceil(9 / 1000 * 4 / 3 * np.pi * 8))


def test_a_structure_beyond_the_free_memory_is_refused_with_the_fix():
    saved = load_model("sake")
    grid = np.stack(np.meshgrid(*[np.arange(30)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.6  # 27,000 atoms
    with pytest.raises(ValueError, match="27000 atoms .* all pairs: the model has no cutoff.* a model with a cutoff"):
        check_evaluation_memory(saved.architecture, saved.hyperparameters, None, 4, grid, what="grid")
    check_evaluation_memory(saved.architecture, saved.hyperparameters, None, 4, grid[:21], what="aspirin-sized")
