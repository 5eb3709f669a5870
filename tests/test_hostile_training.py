"""Hostile and careless input to ``attnforce train``: a run never overwrites files it did not write, two runs never
share a folder, ``~`` in a config is the home folder, a resumed run refuses fewer epochs than it has finished or
other data, YAML merge keys load, odd keys and seeds are named. Every refusal is a ValueError naming the setting or
file and the fix, and leaves the folder exactly as it was."""

import fcntl
import hashlib
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import ASPIRIN_XYZ

from attnforce.cli import main
from training.config import load_config
from training.trainer import train

pytestmark = pytest.mark.skipif(not ASPIRIN_XYZ.is_file(), reason="reference data not found")

CONFIG = """\
data: {{path: {data}, energy_unit: meV, split: [8, 4, 4], seed: 0}}
model: {{architecture: sake, hyperparameters: {{hidden_features: 8, num_layers: 1, num_heads: 2, num_rbf: 8}}}}
training: {{epochs: {epochs}, batch_size: 4, learning_rate: {learning_rate}, warmup_epochs: 0, threads: 1,
  tensorboard: false}}
output: {output}
"""
#: What a run writes into its folder (tensorboard/ is a folder).
RUN_FILES = ["best.pt", "last.pt", "metrics.csv", "config.yaml", "learning_curve.png", "tensorboard"]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _frames(count: int) -> list[list[str]]:
    """The first ``count`` frames of the aspirin file, each as its lines."""
    lines = ASPIRIN_XYZ.read_text().splitlines()
    size = int(lines[0]) + 2
    return [lines[first : first + size] for first in range(0, count * size, size)]


def _write_frames(path: Path, frames: list[list[str]]) -> Path:
    path.write_text("\n".join(line for frame in frames for line in frame) + "\n")
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    """A 16-frame data file of the test's own (so that a test may change it)."""
    return _write_frames(tmp_path / "frames.xyz", _frames(16))


def _config(path: Path, data: Path, output, epochs: int = 1, learning_rate: str = "3.0e-3") -> Path:
    path.write_text(CONFIG.format(data=data, output=output, epochs=epochs, learning_rate=learning_rate))
    return path


def _loaded(tmp_path: Path, data: Path, output, **settings):
    return load_config(_config(tmp_path / "experiment.yaml", data, output, **settings))


# A fresh run refuses a folder holding files a run writes, and a failed run leaves the disk as it was.


@pytest.mark.parametrize("name", [*RUN_FILES, ".last.99999999-abcdefgh.partial.pt"])
def test_a_fresh_run_refuses_a_folder_holding_a_file_a_run_writes(name, tmp_path, data):
    folder = tmp_path / "mine"
    folder.mkdir()
    if name == "tensorboard":
        (folder / name).mkdir()
        (folder / name / "events.out").write_text("the user's own\n")
    else:
        (folder / name).write_text("the user's own\n")
    config = _loaded(tmp_path, data, folder)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=rf"{folder} already holds .*{re.escape(name)}.* --output.*--resume"):
        train(config, progress=False)
    assert snapshot(tmp_path) == before


def test_the_users_files_in_the_current_folder_are_never_overwritten(tmp_path, data, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    for name in ("metrics.csv", "config.yaml", "learning_curve.png"):
        (tmp_path / name).write_text(f"the user's own {name}\n")
    _config(tmp_path / "experiment.yaml", data.name, ".", epochs=2, learning_rate="1.0e+30")
    before = snapshot(tmp_path)
    assert main(["train", "experiment.yaml"]) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "\n" not in error
    assert "config.yaml, learning_curve.png, metrics.csv" in error and "--output" in error, error
    assert snapshot(tmp_path) == before


def test_a_failed_run_removes_what_it_wrote_and_the_folders_it_made(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the user's own\n")
    before = snapshot(tmp_path)
    for output in (".", "new/deeper"):  # NaN in the first epoch
        with pytest.raises(FloatingPointError, match="No epoch had finished"):
            train(_loaded(tmp_path, data, output, learning_rate="1.0e+30"), progress=False)
        (tmp_path / "experiment.yaml").unlink()
        assert snapshot(tmp_path) == before


# One run at a time in a folder.


def test_a_second_run_is_refused_while_another_writes_to_the_folder(tmp_path, data):
    folder = tmp_path / "run"
    folder.mkdir()
    config = _loaded(tmp_path, data, folder)
    before = snapshot(tmp_path)
    other_run = os.open(folder, os.O_RDONLY)  # another open file: flock holds it against this process too
    try:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=f"another attnforce run is writing to {folder}"):
            train(config, progress=False)
        assert snapshot(tmp_path) == before
    finally:
        os.close(other_run)
    train(config, progress=False)  # the lock went with the other run
    assert (folder / "last.pt").is_file() and not any(p.name.endswith(".lock") for p in tmp_path.rglob("*"))


def test_the_folder_is_checked_again_once_it_is_locked(tmp_path, data, monkeypatch):
    folder = tmp_path / "run"
    real_flock = fcntl.flock

    def another_run_ended_just_before(handle, operation):
        (folder / "best.pt").write_bytes(b"the other run's model")
        real_flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", another_run_ended_just_before)
    with pytest.raises(ValueError, match=f"{folder} already holds a run"):
        train(_loaded(tmp_path, data, folder), progress=False)
    assert [p.name for p in folder.iterdir()] == ["best.pt"]
    assert (folder / "best.pt").read_bytes() == b"the other run's model"


# ~ is the home folder.


def test_home_in_config_paths_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(_config(tmp_path / "experiment.yaml", Path("~/frames.xyz"), "~/runs/one"))
    assert config.data.path == str(tmp_path / "frames.xyz") and config.output == str(tmp_path / "runs" / "one")
    (tmp_path / "forecast.yaml").write_text("data: {task: walking, data_dir: ~/motion}\noutput: ~/runs/two\n")
    forecast = load_config(tmp_path / "forecast.yaml")
    assert forecast.data.data_dir == str(tmp_path / "motion") and forecast.output == str(tmp_path / "runs" / "two")


# What --resume refuses.


def test_resume_refuses_fewer_epochs_than_the_run_has_finished(tmp_path, data):
    train(_loaded(tmp_path, data, tmp_path / "run", epochs=2), progress=False)
    before = snapshot(tmp_path)
    shorter = _loaded(tmp_path, data, tmp_path / "run", epochs=1)
    with pytest.raises(ValueError, match=r"has finished 2 epochs; training.epochs: 1 would end it before"):
        train(shorter, progress=False, resume=True)
    assert snapshot(tmp_path) == (before | {"experiment.yaml": (tmp_path / "experiment.yaml").read_bytes()})


def test_resume_refuses_changed_data_and_old_states_still_resume(tmp_path, data):
    run = tmp_path / "run"
    train(_loaded(tmp_path, data, run), progress=False)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["data_fingerprint"] == {
        "size": data.stat().st_size,
        "sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
    }
    _write_frames(data, _frames(16)[::-1])  # the same frames in another order: the split would draw others
    longer = _loaded(tmp_path, data, run, epochs=2)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=f"{data} is not the data file this run started with"):
        train(longer, progress=False, resume=True)
    assert snapshot(tmp_path) == before

    del state["data_fingerprint"]  # a state written before fingerprints were kept
    torch.save(state, run / "last.pt")
    assert train(longer, progress=False, resume=True).epochs == 2


# The config file itself.


def test_yaml_merge_keys_load_and_a_repeated_key_is_still_refused(tmp_path, data):
    path = tmp_path / "merged.yaml"
    path.write_text(
        f"data: {{path: {data}, energy_unit: meV}}\n"
        "model:\n  hyperparameters:\n    <<: &small {hidden_features: 8, num_layers: 1}\n    num_heads: 2\n"
        "training:\n  <<: &short {epochs: 2, batch_size: 4}\n  epochs: 3\n"
    )
    config = load_config(path)
    assert config.model.hyperparameters == {"hidden_features": 8, "num_layers": 1, "num_heads": 2}
    assert (config.training.epochs, config.training.batch_size) == (3, 4)  # a key given beside a merge wins
    merged = path.read_text()
    for repeated in (merged + "  epochs: 4\n", merged.replace("{epochs: 2,", "{epochs: 2, epochs: 5,")):
        path.write_text(repeated)
        with pytest.raises(ValueError, match=r"key\(s\) \['epochs'\] given more than once"):
            load_config(path)


@pytest.mark.parametrize("extra, key", [("null: 1\n", "None"), ("2: x\n", "2"), ("training:\n  3: 1\n", "3")])
def test_keys_that_are_not_names_are_named(extra, key, tmp_path, data):
    path = tmp_path / "odd.yaml"
    path.write_text(f"data: {{path: {data}, energy_unit: meV}}\n{extra}")
    with pytest.raises(ValueError, match=rf"the key {key} is not a setting name"):
        load_config(path)


@pytest.mark.parametrize("section", ["data", "training"])
@pytest.mark.parametrize("seed", [-3, 2**32])
def test_seeds_out_of_range_are_named(section, seed, tmp_path, data):
    path = tmp_path / "seed.yaml"

    def write(value: int) -> Path:
        data_seed, training_seed = (value, 0) if section == "data" else (0, value)
        path.write_text(
            f"data: {{path: {data}, energy_unit: meV, seed: {data_seed}}}\ntraining: {{seed: {training_seed}}}\n"
        )
        return path

    with pytest.raises(ValueError, match=rf"{section}\.seed: must be an integer from 0 to 4294967295, got {seed}"):
        load_config(write(seed))
    assert getattr(load_config(write(2**32 - 1)), section).seed == 2**32 - 1
