"""Never lose a run: a training process killed at any moment resumes to the same weights as an uninterrupted
run (same seed, deterministic CPU: 1 thread); losses and optimiser options; NaN stops cleanly."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ASPIRIN_XYZ, REPO

from training.config import load_config
from training.losses import energy_force_loss
from training.trainer import train

CONFIG = """\
data: {{path: {data}, energy_unit: meV, split: [40, 8, 8], seed: 0}}
model: {{architecture: sake, hyperparameters: {{hidden_features: 8, num_layers: 1, num_heads: 2, num_rbf: 8}}}}
training:
  epochs: {epochs}
  batch_size: 4
  learning_rate: {learning_rate}
  warmup_epochs: 1
  threads: 1
  optimizer: adamw
  weight_decay: 0.01
  loss: l2mae
  gradient_clip: 10.0
  ema_decay: 0.9
output: {output}
"""


def _write(tmp_path, name, epochs=8, learning_rate=3.0e-3):
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        CONFIG.format(data=ASPIRIN_XYZ, epochs=epochs, learning_rate=f"{learning_rate:.1e}", output=tmp_path / name)
    )
    return path


def _train_command(config, *extra):
    return [sys.executable, "-m", "attnforce.cli", "train", str(config), *extra]


def _rows(metrics_csv):
    return max(0, len(metrics_csv.read_text().splitlines()) - 1) if metrics_csv.is_file() else 0


@pytest.mark.skipif(not ASPIRIN_XYZ.is_file(), reason="reference data not found")
def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    whole = _write(tmp_path, "whole")
    subprocess.run(_train_command(whole), check=True, capture_output=True, cwd=REPO, timeout=600)

    cut = _write(tmp_path, "cut")
    process = subprocess.Popen(_train_command(cut), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _rows(tmp_path / "cut" / "metrics.csv") < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.05)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"]
    assert 2 <= killed_at < 8  # 2 if the kill fell between the third metrics row and its last.pt

    subprocess.run(_train_command(cut, "--resume"), check=True, capture_output=True, cwd=REPO, timeout=600)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 8
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resuming"
    best_a = torch.load(tmp_path / "whole" / "best.pt", weights_only=True)["metadata"]
    best_b = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["metadata"]
    assert best_a["epoch"] == best_b["epoch"] and best_a["test_metrics"] == best_b["test_metrics"]
    rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(8))  # no epoch logged twice


@pytest.mark.skipif(not ASPIRIN_XYZ.is_file(), reason="reference data not found")
def test_resume_refuses_another_experiment_and_nan_stops_with_the_last_good_state(tmp_path):
    config = load_config(_write(tmp_path, "run", epochs=2))
    train(config, progress=False)
    other = load_config(_write(tmp_path, "run", epochs=2, learning_rate=1.0e-2))
    with pytest.raises(ValueError, match=r"another config \(training.learning_rate differ\)"):
        train(other, progress=False, resume=True)
    longer = load_config(_write(tmp_path, "run", epochs=3))
    longer.output = f"{longer.output}/./"  # another spelling of the same run directory
    assert train(longer, progress=False, resume=True).epochs == 3  # extending a run is allowed
    exploding = load_config(_write(tmp_path, "boom", epochs=5, learning_rate=1.0e30))
    with pytest.raises(FloatingPointError, match="No epoch had finished") as stopped:
        train(exploding, progress=False)  # in its first epoch: there is no state or model to point to
    assert "best.pt" not in str(stopped.value) and not (tmp_path / "boom" / "best.pt").exists()


def test_config_values_of_the_wrong_type_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.format(data=ASPIRIN_XYZ, epochs=2, learning_rate="1e-3", output=tmp_path / "x"))
    with pytest.raises(ValueError, match=r"training.learning_rate: expected a number, got '1e-3' \(YAML reads"):
        load_config(path)
    path.write_text(CONFIG.format(data=ASPIRIN_XYZ, epochs="two", learning_rate="1.0e-3", output=tmp_path / "x"))
    with pytest.raises(ValueError, match="training.epochs: expected int, got 'two'"):
        load_config(path)
    good = CONFIG.format(data=ASPIRIN_XYZ, epochs=2, learning_rate="1.0e-3", output=tmp_path / "x")
    for split, message in (
        ("5", "expected a list, got 5 or expected str"),
        ("[1.5, 2, 3]", "expected int, got 1.5"),
    ):
        path.write_text(good.replace("split: [40, 8, 8]", f"split: {split}"))
        with pytest.raises(ValueError, match=message):
            load_config(path)
    path.write_text(good.replace("split: [40, 8, 8]", "split: sake"))
    assert load_config(path).data.split == "sake"


def test_a_stopped_run_stays_stopped_and_best_pt_is_restored_from_last_pt(tmp_path):
    config = load_config(_write(tmp_path, "run", epochs=3))
    config.training.max_cpu_minutes = 1.0e-6  # spent after the first epoch
    first = train(config, progress=False)
    assert first.epochs == 1
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    (tmp_path / "run" / "best.pt").unlink()  # as if killed between the two writes
    again = train(config, progress=False, resume=True)
    assert again.epochs == 1  # no further epoch
    restored = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    for key, value in best["state_dict"].items():
        assert torch.equal(value, restored["state_dict"][key])


def test_ema_leaves_integer_buffers_alone(tmp_path):
    config = load_config(_write(tmp_path, "eq", epochs=1))
    config.model.architecture = "equiformer"
    config.model.hyperparameters = dict(
        irreps_node="8x0e+2x1o", num_layers=1, num_heads=2, irreps_head="2x0e+1x1o", irreps_mlp="8x0e+2x1o",
        irreps_feature="8x0e", num_rbf=8, radial_hidden=[8], parity=True, num_atom_types=10,
    )  # fmt: skip
    config.data.split = [8, 4, 4]
    train(config, progress=False)
    from attnforce.checkpoint import load_model

    saved = load_model(tmp_path / "eq" / "best.pt")
    fresh = saved.potential.state_dict()
    state = torch.load(tmp_path / "eq" / "last.pt", weights_only=True)
    for key, value in state["model"].items():
        if not value.is_floating_point():
            assert torch.equal(value, fresh[key]), key


def test_loss_kinds():
    energy, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    forces, target_forces = torch.tensor([[3.0, 4.0, 0.0]]), torch.zeros(1, 3)
    atoms = torch.tensor([1, 2])
    mse = energy_force_loss(energy, forces, target, target_forces, atoms, 1.0, 1.0, "mse")
    mae = energy_force_loss(energy, forces, target, target_forces, atoms, 1.0, 1.0, "mae")
    l2mae = energy_force_loss(energy, forces, target, target_forces, atoms, 1.0, 1.0, "l2mae")
    assert mse.item() == pytest.approx((1 + 1) / 2 + 25 / 3)
    assert mae.item() == pytest.approx(1.0 + 7 / 3)
    assert l2mae.item() == pytest.approx(1.0 + 5.0)
    with pytest.raises(ValueError, match="unknown loss"):
        energy_force_loss(energy, forces, target, target_forces, atoms, 1.0, 1.0, "huber")
    assert np.isfinite(mse.item())
