"""Training: statistics from the training set, a short run's outputs, and its saved model's metadata."""

import csv

import numpy as np
import pytest
import torch

from attnforce.checkpoint import load_model
from systems import read_extxyz
from training.config import DataConfig, ExperimentConfig, ModelConfig, TrainingConfig
from training.statistics import fit_energy_statistics
from training.trainer import learning_rate_factor, train


def test_energy_statistics_of_one_molecule(aspirin_xyz):
    frames = read_extxyz(aspirin_xyz, "meV")
    scale, shifts = fit_energy_statistics(frames)
    per_structure = shifts[torch.as_tensor(frames.atomic_numbers)].sum().item()
    assert per_structure == pytest.approx(frames.energies.mean(), rel=1e-12)
    assert scale == pytest.approx(frames.energies.std(), rel=1e-9)
    assert shifts.dtype == torch.float64 and set(torch.nonzero(shifts).flatten().tolist()) == {1, 6, 8}


def test_learning_rate_schedule_warms_up_then_decays_by_epochs_or_budget():
    factors = [learning_rate_factor(e, 2, 10, 0.01) for e in range(10)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a > b for a, b in zip(factors[2:], factors[3:]))
    assert learning_rate_factor(3, 2, 1000, 0.01, time_fraction=1.0) == pytest.approx(0.01)


def test_bad_data_or_model_fails_before_writing_the_run_directory(tmp_path, aspirin_xyz):
    base = dict(model=ModelConfig("sake", dict(hidden_features=8, num_layers=1)), output=str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="no such data file"):
        train(
            ExperimentConfig(data=DataConfig(path=str(tmp_path / "none.xyz"), energy_unit="eV"), **base), progress=False
        )
    bad_model = dict(base, model=ModelConfig("sake", dict(hidden_feature=8)))
    with pytest.raises(ValueError, match="hidden_feature"):
        train(ExperimentConfig(data=DataConfig(path=str(aspirin_xyz), energy_unit="meV"), **bad_model), progress=False)
    assert not (tmp_path / "run").exists()


def test_short_run_writes_best_model_with_test_metrics(tmp_path, aspirin_xyz):
    config = ExperimentConfig(
        data=DataConfig(path=str(aspirin_xyz), energy_unit="meV", split=[24, 8, 8], seed=0),
        model=ModelConfig("sake", dict(hidden_features=8, num_layers=1, num_heads=2, num_rbf=8)),
        training=TrainingConfig(epochs=4, batch_size=4, learning_rate=3e-3, warmup_epochs=0, energy_weight=20.0),
        output=str(tmp_path / "run"),
    )
    result = train(config, progress=False)
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    assert (tmp_path / "run" / "learning_curve.png").stat().st_size > 10_000
    assert (tmp_path / "run" / "config.yaml").read_text().count("energy_unit: meV") == 1
    saved = load_model(result.best_model)
    assert saved.metadata["test_metrics"] == result.test_metrics
    assert saved.metadata["split"] == {"sizes": [24, 8, 8], "seed": 0}
    assert saved.metadata["test_frames"] == 8
    assert np.isfinite(result.test_metrics["force_mae_mev_per_a"])
