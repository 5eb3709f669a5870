"""DistributedDataParallel with 2 gloo processes, started by ``attnforce train --nproc-per-node 2`` and by torchrun:
the same global batch follows the 1-process loss curve. Tolerance: 1e-5 relative on every epoch's training and
validation loss (float32; the processes sum gradients in another order)."""

import csv
import subprocess
import sys

import pytest
from conftest import ASPIRIN_XYZ, REPO

CONFIG = """\
data: {{path: {data}, energy_unit: meV, split: [32, 8, 8], seed: 0}}
model: {{architecture: sake, hyperparameters: {{hidden_features: 8, num_layers: 1, num_heads: 2, num_rbf: 8}}}}
training: {{epochs: 3, batch_size: 8, learning_rate: 3.0e-3, warmup_epochs: 0, threads: 1, energy_weight: 10.0}}
output: {output}
"""


def _curve(run):
    with open(run / "metrics.csv") as handle:
        return [(float(r["train_loss"]), float(r["val_loss"])) for r in csv.DictReader(handle)]


@pytest.mark.skipif(not ASPIRIN_XYZ.is_file(), reason="reference data not found")
def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path):
    runs = {}
    for processes in (1, 2):
        run = tmp_path / f"p{processes}"
        config = tmp_path / f"p{processes}.yaml"
        config.write_text(CONFIG.format(data=ASPIRIN_XYZ, output=run))
        result = subprocess.run(
            [sys.executable, "-m", "attnforce.cli", "train", str(config), "--nproc-per-node", str(processes)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("best model:") == 1  # rank 0 alone reports
        assert "Traceback" not in result.stderr and "Grad strides" not in result.stderr
        runs[processes] = _curve(run)
    assert len(runs[1]) == len(runs[2]) == 3
    for one, two in zip(runs[1], runs[2], strict=True):
        assert two == pytest.approx(one, rel=1e-5)  # seen: 1e-7
    assert runs[1][-1][0] < runs[1][0][0]  # it trains


def test_a_batch_that_does_not_split_evenly_is_refused(tmp_path, monkeypatch):
    from training import distributed
    from training.config import load_config
    from training.trainer import train

    config = tmp_path / "c.yaml"
    config.write_text(
        CONFIG.format(data=ASPIRIN_XYZ, output=tmp_path / "run").replace("batch_size: 8", "batch_size: 7")
    )
    monkeypatch.setattr(distributed, "start", lambda device="cpu": distributed.ProcessGroup(rank=0, world_size=2))
    with pytest.raises(ValueError, match="divisible by the 2 processes"):
        train(load_config(config), progress=False)


@pytest.mark.skipif(not ASPIRIN_XYZ.is_file(), reason="reference data not found")
def test_an_uneven_last_batch_is_trimmed_to_equal_shares(tmp_path):
    config = tmp_path / "odd.yaml"
    config.write_text(CONFIG.format(data=ASPIRIN_XYZ, output=tmp_path / "odd").replace("[32, 8, 8]", "[35, 8, 8]"))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run(
        [*launcher, "-m", "attnforce.cli", "train", str(config)], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_curve(tmp_path / "odd")) == 3


def _processes_train(tmp_path, config_text, *options):
    config = tmp_path / "c.yaml"
    config.write_text(config_text)
    return subprocess.run(
        [sys.executable, "-m", "attnforce.cli", "train", str(config), "--nproc-per-node", "2", *options],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )


def test_processes_refuse_an_uneven_batch_before_starting(tmp_path):
    text = CONFIG.format(data=ASPIRIN_XYZ, output=tmp_path / "run").replace("batch_size: 8", "batch_size: 7")
    result = _processes_train(tmp_path, text)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ERROR attnforce: training.batch_size (7) must be divisible by the 2 processes"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_a_failed_process_is_one_line_not_the_launchers_traceback(tmp_path):
    damaged = tmp_path / "damaged.xyz"  # read by the processes, not by the launcher
    damaged.write_text("21\nno energy here\nC 0 0 0\n")
    result = _processes_train(tmp_path, CONFIG.format(data=damaged, output=tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert errors[-1].startswith("ERROR attnforce: training process ") and "failed with exit code 2" in errors[-1]
    assert any("damaged.xyz" in line for line in errors[:-1]), result.stderr  # each process said what was wrong
