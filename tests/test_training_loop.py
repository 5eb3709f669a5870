"""The epoch loop shared by the energy and the learned-integrator trainers: learning-rate schedules, devices, and
resume and DDP for learned integrators (the energy trainer's are in test_resume.py and test_distributed.py)."""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import DATA, REPO

import training.forecast_trainer
from training import distributed
from training.config import (
    ForecastDataConfig,
    ForecastExperimentConfig,
    ForecastTrainingConfig,
    TrainingConfig,
    load_config,
)
from training.forecast_trainer import train_forecaster
from training.loop import Objective, run_epochs, scheduled_learning_rate

WALKING = """\
data: {{task: walking, data_dir: {data}, train_limit: 40}}
model: {{architecture: sake, hyperparameters: {{hidden_features: 8, num_layers: 2, num_heads: 2, num_rbf: 4}}}}
training: {{epochs: {epochs}, batch_size: 20, warmup_epochs: 1, velocity_weight: 1.0, threads: 1, ema_decay: 0.9}}
output: {output}
"""
needs_motion = pytest.mark.skipif(not (DATA / "cmu_mocap").is_dir(), reason="reference data not found")


def _walking(tmp_path, name, epochs=5):
    path = tmp_path / f"{name}.yaml"
    path.write_text(WALKING.format(data=DATA, epochs=epochs, output=tmp_path / name))
    return path


def _column(run, name):
    with open(run / "metrics.csv") as handle:
        return [float(row[name]) for row in csv.DictReader(handle)]


def test_schedules_warm_up_then_cosine_constant_or_plateau():
    settings = TrainingConfig(epochs=10, learning_rate=1.0e-3, min_learning_rate=1.0e-5, warmup_epochs=2)
    cosine = [scheduled_learning_rate(settings, e, 0.0, 1.0) for e in range(10)]
    assert cosine[0] < cosine[1] < cosine[2] == 1.0e-3 and cosine[-1] < 1.0e-4
    settings.schedule = "constant"
    assert [scheduled_learning_rate(settings, e, 0.9, 1.0) for e in range(2, 10)] == [1.0e-3] * 8
    settings.schedule = "plateau"
    assert scheduled_learning_rate(settings, 5, 0.9, 0.5) == pytest.approx(5.0e-4)
    assert scheduled_learning_rate(settings, 5, 0.0, 1.0e-9) == pytest.approx(1.0e-5)  # floored at the minimum
    assert scheduled_learning_rate(settings, 0, 0.0, 0.5) == pytest.approx(1.0e-3 * 0.5 / 3)


def test_plateau_schedule_reduces_the_rate_after_its_patience(tmp_path):
    """A real least-squares fit whose validation loss never improves after epoch 0."""
    torch.manual_seed(0)
    inputs, targets = torch.randn(16, 3), torch.randn(16, 1)
    model = torch.nn.Linear(3, 1)
    objective = Objective(
        train_size=16,
        batch_loss=lambda module, indices: (module(inputs[indices]) - targets[indices]).pow(2).mean(),
        validate=lambda module: (1.0, {}),
        columns=[],
    )
    settings = ForecastTrainingConfig(
        epochs=8, batch_size=4, learning_rate=1.0e-2, warmup_epochs=0, schedule="plateau",
        plateau_factor=0.5, plateau_patience=2, tensorboard=False,
    )  # fmt: skip

    run = ForecastExperimentConfig(ForecastDataConfig("nbody"), training=settings, output=str(tmp_path / "run"))
    saved = []
    result = run_epochs(model, objective, run, lambda m, w, e: saved.append(e["epoch"]), distributed.ProcessGroup())
    assert result.epochs == 8 and saved == [0]
    rates = _column(tmp_path / "run", "learning_rate")
    # epochs 1, 2, 3 without improvement: after the third (patience 2 exceeded) the rate halves, and so on
    assert rates == pytest.approx([1e-2, 1e-2, 1e-2, 1e-2, 5e-3, 5e-3, 5e-3, 2.5e-3])


def test_one_named_gpu_for_several_processes_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="would put every process on one GPU"):
        distributed.start("cuda:0")


def test_devices_are_resolved_or_refused():
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="must be auto, cpu, cuda or cuda:K"):
        distributed.resolve_device("gpu")
    if torch.cuda.is_available():
        assert distributed.resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
        with pytest.raises(ValueError, match="does not exist"):
            distributed.resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert distributed.resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="torch sees no GPU"):
            distributed.resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@needs_motion
def test_a_learned_integrator_trains_on_the_gpu_and_loads_on_the_cpu(tmp_path):
    config = load_config(_walking(tmp_path, "gpu", epochs=2))
    config.training.device = "cuda"
    result = train_forecaster(config, progress=False)
    from integrators.saved import load_forecaster

    saved = load_forecaster(result.best_model)
    assert next(saved.model.parameters()).device.type == "cpu"
    assert np.isfinite(result.test_metrics["position_mse"])


@needs_motion
def test_a_crashed_learned_integrator_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    whole = train_forecaster(load_config(_walking(tmp_path, "whole")), progress=False)

    real_loss, calls = training.forecast_trainer._loss, []

    def crash_in_epoch_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # two batches per epoch: the second batch of epoch 2
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(training.forecast_trainer, "_loss", crash_in_epoch_three)
    cut = load_config(_walking(tmp_path, "cut"))
    with pytest.raises(KeyboardInterrupt):
        train_forecaster(cut, progress=False)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 2
    monkeypatch.setattr(training.forecast_trainer, "_loss", real_loss)
    resumed = train_forecaster(cut, progress=False, resume=True)

    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resuming"
    assert resumed.test_metrics == whole.test_metrics and resumed.epochs == whole.epochs == 5
    assert _column(tmp_path / "cut", "epoch") == list(range(5))


@needs_motion
@pytest.mark.parametrize("architecture", ["sake", "egnn"])
def test_two_gloo_processes_train_a_learned_integrator_like_one(tmp_path, architecture):
    """Tolerance as for the energy trainer: 1e-5 relative on every epoch's losses. EGNN's last layer has
    parameters that get no gradient, which DDP must be told about."""
    curves = {}
    for processes in (1, 2):
        config = _walking(tmp_path, f"p{processes}", epochs=3)
        if architecture == "egnn":
            config.write_text(
                config.read_text()
                .replace("architecture: sake", "architecture: egnn")
                .replace(", num_heads: 2, num_rbf: 4", "")
            )
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        result = subprocess.run(
            [*launcher, "-m", "attnforce.cli", "train", str(config)], capture_output=True, text=True, cwd=REPO,
            timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        run = tmp_path / f"p{processes}"
        curves[processes] = list(zip(_column(run, "train_loss"), _column(run, "val_loss"), strict=True))
    assert len(curves[1]) == 3
    for one, two in zip(curves[1], curves[2], strict=True):
        assert two == pytest.approx(one, rel=1e-5)
