"""Training: statistics from the training set, a short run's outputs, and its saved model's metadata."""

import csv

import numpy as np
import pytest
import torch
from plots import assert_drawn_plot, lines_by_label, saved_figures

from attnforce.checkpoint import load_model
from systems import random_split, read_extxyz
from training.config import DataConfig, ExperimentConfig, ModelConfig, TrainingConfig, load_config
from training.loop import learning_rate_factor
from training.statistics import fit_average_degree, fit_energy_statistics
from training.trainer import train


def test_energy_statistics_of_one_molecule(aspirin_xyz):
    frames = read_extxyz(aspirin_xyz, "meV")
    scale, shifts = fit_energy_statistics(frames)
    per_structure = shifts[torch.as_tensor(frames.atomic_numbers)].sum().item()
    assert per_structure == pytest.approx(frames.energies.mean(), rel=1e-12)
    assert scale == pytest.approx(frames.energies.std(), rel=1e-9)
    assert shifts.dtype == torch.float64 and set(torch.nonzero(shifts).flatten().tolist()) == {1, 6, 8}
    force_scale, same_shifts = fit_energy_statistics(frames, "force_rms")
    assert force_scale == pytest.approx(np.sqrt(np.mean(np.asarray(frames.forces) ** 2)), rel=1e-12)
    assert torch.equal(same_shifts, shifts) and force_scale != pytest.approx(scale, rel=0.1)
    with pytest.raises(ValueError, match="unknown energy scale 'rms'"):
        fit_energy_statistics(frames, "rms")


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
    with saved_figures() as figures:
        result = train(config, progress=False)
    with open(tmp_path / "run" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    assert_drawn_plot(tmp_path / "run" / "learning_curve.png", size=(1200, 480), panels=(1, 2))
    (figure,) = figures
    loss, mae = figure.axes
    assert loss.get_yscale() == mae.get_yscale() == "log" and mae.get_ylabel() == "validation force MAE (meV/Å)"
    losses_drawn = lines_by_label(loss)
    (mae_drawn,) = lines_by_label(mae).values()
    for (x, y), column in [
        (losses_drawn["train"], "train_loss"),
        (losses_drawn["validation"], "val_loss"),
        (mae_drawn, "val_force_mae_mev_per_a"),
    ]:
        np.testing.assert_array_equal(x, [0, 1, 2, 3])
        np.testing.assert_allclose(y, [float(r[column]) for r in rows])
    assert (tmp_path / "run" / "config.yaml").read_text().count("energy_unit: meV") == 1
    saved = load_model(result.best_model)
    assert saved.metadata["test_metrics"] == result.test_metrics
    assert saved.metadata["split"] == {"sizes": [24, 8, 8], "seed": 0}
    assert saved.metadata["test_frames"] == 8
    assert np.isfinite(result.test_metrics["force_mae_mev_per_a"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    val_loss = [event.value for event in events.Scalars("val_loss")]
    assert val_loss == pytest.approx([float(r["val_loss"]) for r in rows], rel=1e-6)


def test_average_degree_counts_neighbours_within_the_cutoff(aspirin_xyz):
    frames = read_extxyz(aspirin_xyz, "meV").subset(np.arange(5))
    distances = np.linalg.norm(frames.positions[:, :, None] - frames.positions[:, None], axis=-1)
    for cutoff in (1.2, 3.0, 5.0):
        by_atom = [(np.count_nonzero(d[i] < cutoff) - 1) for d in distances for i in range(d.shape[0])]
        assert fit_average_degree(frames, cutoff) == pytest.approx(np.mean(by_atom), rel=1e-12)


def test_preset_run_stops_on_its_cpu_budget_and_stores_the_fitted_degree(tmp_path, aspirin_xyz):
    """An Equiformer preset (shrunk by overrides) under a CPU-time budget: the run stops on the budget, and the
    resolved config and the saved model carry the preset's hyperparameters with ``avg_degree`` fitted."""
    overrides = dict(irreps_node="8x0e+2x1o", irreps_head="2x0e+1x1o", irreps_mlp="8x0e+2x1o", num_layers=1)
    config = ExperimentConfig(
        data=DataConfig(path=str(aspirin_xyz), energy_unit="meV", split=[16, 4, 4], seed=0),
        model=ModelConfig(preset="equiformer-small-dot-product", hyperparameters=overrides),
        training=TrainingConfig(epochs=1000, batch_size=4, warmup_epochs=0, max_cpu_minutes=0.02),
        output=str(tmp_path / "run"),
    )
    result = train(config, progress=False)
    assert 1 <= result.epochs < 1000
    saved = load_model(result.best_model)
    assert saved.architecture == "equiformer"
    assert saved.hyperparameters["attention"] == "dot_product" and saved.hyperparameters["irreps_node"] == "8x0e+2x1o"
    train_frames = read_extxyz(aspirin_xyz, "meV").subset(random_split(1000, [16, 4, 4], 0)[0])
    assert saved.hyperparameters["avg_degree"] == pytest.approx(fit_average_degree(train_frames, 5.0))
    resolved = load_config(tmp_path / "run" / "config.yaml")
    assert resolved.model.architecture == "equiformer" and resolved.model.hyperparameters == saved.hyperparameters
