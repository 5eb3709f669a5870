"""Forecasting tasks: the N-body protocol's splits, the walking and running trials and their GMN/EGHN splits."""

import numpy as np
import pytest
from conftest import DATA

from systems.forecasting import (
    EGHN_RUNNING_SPLIT,
    GMN_WALKING_SPLIT,
    NBODY,
    WALKING_SEQUENCES,
    _embedded_walking_test_trials,
    _mocap_sequences,
    charge_types,
    load_split,
    load_task,
    nbody_trajectories,
    reference_paths,
    trial_paths,
    trial_samples,
    walking_trials,
)
from systems.nbody import simulate
from systems.restricted_pickle import load_array_pickle

needs_data = pytest.mark.skipif(not (DATA / "cmu_mocap").is_dir(), reason=f"reference data not found at {DATA}")


def test_nbody_task_is_frame_30_to_40_of_the_protocol():
    samples = load_split("nbody", "validation", limit=6)
    direct = simulate(2000, seed=2, keep=6)
    assert NBODY.horizon == pytest.approx(1.0)
    np.testing.assert_array_equal(samples.positions, direct.positions[:, 30])
    np.testing.assert_array_equal(samples.target_positions, direct.positions[:, 40])
    np.testing.assert_array_equal(samples.target_velocities, direct.velocities[:, 40])
    np.testing.assert_array_equal(samples.types, (direct.charges > 0).astype(int))


def test_a_limited_split_is_the_first_systems_of_the_whole_split():
    whole = simulate(40, seed=9, steps=300)
    first = simulate(40, seed=9, steps=300, keep=7)
    np.testing.assert_array_equal(first.positions, whole.positions[:7])
    np.testing.assert_array_equal(first.charges, whole.charges[:7])
    assert not np.allclose(simulate(7, seed=9, steps=300).positions, first.positions)  # why `keep` exists


def test_longer_nbody_runs_repeat_the_shorter_ones():
    short, long = nbody_trajectories("test", 1, num_systems=5), nbody_trajectories("test", 3, num_systems=5)
    assert long.positions.shape[1] == 61
    np.testing.assert_array_equal(long.positions[:, :50], short.positions)


def test_charges_other_than_plus_minus_one_are_rejected():
    np.testing.assert_array_equal(charge_types(np.array([[1.0, -1.0]])), [[1, 0]])
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        charge_types(np.array([[1.0, 0.5]]))


def test_unknown_task_and_split_are_named():
    with pytest.raises(ValueError, match="unknown forecasting task 'swimming'"):
        load_task("swimming", DATA)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_split("nbody", "dev")
    with pytest.raises(ValueError, match="give data_dir"):
        load_task("walking")


def test_trial_samples_use_backward_differences_and_a_fixed_horizon():
    trial = np.cumsum(np.random.default_rng(0).normal(size=(20, 4, 3)), axis=0)
    samples = trial_samples([trial], fps=30.0, horizon_frames=5)
    assert len(samples) == 20 - 1 - 5
    t = 3  # sample index 2
    np.testing.assert_allclose(samples.positions[2], trial[t])
    np.testing.assert_allclose(samples.velocities[2], (trial[t] - trial[t - 1]) * 30)
    np.testing.assert_allclose(samples.target_positions[2], trial[t + 5])
    np.testing.assert_allclose(samples.target_velocities[2], (trial[t + 5] - trial[t + 4]) * 30)
    paths = trial_paths([trial], 30.0, 5, horizons=2)
    np.testing.assert_allclose(paths.paths[2, ::5], trial[[t, t + 5, t + 10]])
    with pytest.raises(ValueError, match="fewer horizons"):
        trial_paths([trial], 30.0, 5, horizons=4)


@needs_data
def test_walking_trials_are_the_23_long_ones_and_split_as_gmn_does():
    sequences = _mocap_sequences(DATA / "cmu_mocap" / "cmu35WalkJog.mat")
    assert len(sequences) == 33
    walking = set(WALKING_SEQUENCES)
    assert len(walking) == 23
    assert min(len(sequences[k]) for k in walking) >= 80
    assert max(len(s) for k, s in enumerate(sequences) if k not in walking) < 45
    gmn = load_array_pickle(DATA / "eghn_motion" / "split.pkl")
    for split, ids in zip(("train", "validation", "test"), gmn, strict=True):
        assert set(GMN_WALKING_SPLIT[split]) == set(ids)
    eghn = load_array_pickle(DATA / "eghn_motion" / "split_run.pkl")
    for split, ids in zip(("train", "validation", "test"), eghn, strict=True):
        assert set(EGHN_RUNNING_SPLIT[split]) == set(ids)


@needs_data
def test_walking_samples_and_the_shipped_test_trials():
    trials, bonds, names = walking_trials(DATA / "cmu_mocap")
    test = load_split("walking", "test", DATA)
    expected = sum(len(trials[k]) - 9 for k in GMN_WALKING_SPLIT["test"])
    assert len(test) == expected and test.positions.shape[1:] == (31, 3)
    assert len(bonds) == 30 and names[0] == "root"
    shipped = _embedded_walking_test_trials()
    for k, trial in zip(GMN_WALKING_SPLIT["test"], shipped, strict=True):
        np.testing.assert_allclose(trial, trials[k], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(
        reference_paths("walking", 1).positions, reference_paths("walking", 1, DATA).positions, atol=1e-4
    )


@needs_data
def test_running_task_is_eghns_trials_30_frames_ahead():
    task = load_task("running", DATA)
    assert task.horizon == pytest.approx(0.25) and len(task.bonds) == 30
    samples = load_split("running", "validation", DATA, limit=3)
    assert samples.positions.shape == (3, 31, 3)
