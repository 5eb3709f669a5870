"""The memory estimate that md checks before a run (:mod:`attnforce.memory`) against the peak memory that one
energy-and-force evaluation of each embedded model really takes, measured in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pytest

from attnforce.checkpoint import load_model
from attnforce.memory import check_evaluation_memory, count_pairs, evaluation_bytes

#: Measures, in a process of its own, the growth of the peak resident memory over one evaluation on a grid of atoms
#: 1.6 Å apart (a dense liquid's spacing).
MEASURE = """
import json, resource, sys
import numpy as np, torch
from attnforce.checkpoint import load_model
from attnforce.memory import count_pairs
torch.set_num_threads(1)
name, atoms = sys.argv[1], int(sys.argv[2])
saved = load_model(name)
side = int(np.ceil(atoms ** (1 / 3)))
grid = np.stack(np.meshgrid(*[np.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:atoms] * 1.6
grid = grid + np.random.default_rng(0).normal(scale=0.05, size=grid.shape)
numbers = torch.tensor([(6, 1, 8)[i % 3] for i in range(atoms)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
saved.potential(torch.tensor(grid, dtype=torch.float32), numbers, torch.zeros(atoms, dtype=torch.long), 1)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"bytes": (peak - before) * 1024, "pairs": count_pairs(grid, saved.potential.cutoff)}))
"""


@pytest.mark.parametrize(("model", "atoms"), [("sake", 250), ("equiformer", 500)])
def test_estimate_is_within_a_factor_of_the_measured_peak(model, atoms):
    measured = json.loads(
        subprocess.run([sys.executable, "-c", MEASURE, model, str(atoms)], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    saved = load_model(model)
    estimate = evaluation_bytes(saved.architecture, saved.hyperparameters, measured["pairs"], 4)
    assert 0.8 < estimate / measured["bytes"] < 2.0, (estimate, measured)


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
