"""`attnforce evaluate`: errors with bootstrap intervals, on the stored test split or all frames."""

import json

import numpy as np
import pytest
from conftest import ASPIRIN_XYZ, DATA

from attnforce.checkpoint import load_model
from attnforce.cli import main
from systems import read_extxyz
from training.evaluation import bootstrap_metrics, metrics

pytestmark = pytest.mark.skipif(not ASPIRIN_XYZ.is_file(), reason="reference data not found")


def test_evaluate_reproduces_the_stored_test_errors_with_intervals(tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["evaluate", "default", str(ASPIRIN_XYZ), "--split", "test", "--json", str(out)]  # unit: the model's data
    assert main(args + ["--bootstrap", "200"]) == 0
    report = json.loads(out.read_text())
    stored = load_model("default").metadata["test_metrics"]
    assert report["frames"] == 100
    for name, value in stored.items():
        assert report[name]["value"] == pytest.approx(value, rel=1e-4)  # float32 inference
        assert report[name]["low"] < value < report[name]["high"]
    assert "| force_mae_mev_per_a |" in capsys.readouterr().out


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    frames = read_extxyz(ASPIRIN_XYZ, "meV").subset(np.arange(50))
    rng = np.random.default_rng(0)
    energies = frames.energies + rng.normal(scale=0.01, size=len(frames))
    forces = frames.forces + rng.normal(scale=0.03, size=frames.forces.shape)
    a = bootstrap_metrics(energies, forces, frames, 300, seed=1)
    assert a == bootstrap_metrics(energies, forces, frames, 300, seed=1)
    assert a["energy_mae_mev"]["value"] == metrics(energies, forces, frames)["energy_mae_mev"]
    assert 0 < a["energy_mae_mev"]["low"] < a["energy_mae_mev"]["value"] < a["energy_mae_mev"]["high"]
    # 30 meV/Å per component: the MAE of a normal error is sigma * sqrt(2 / pi)
    assert a["force_mae_mev_per_a"]["value"] == pytest.approx(30 * np.sqrt(2 / np.pi), rel=0.05)


def test_evaluate_names_data_with_unknown_elements_or_units(tmp_path, caplog):
    ethanol = DATA / "md17" / "rmd17_ethanol_a.xyz"
    assert main(["evaluate", "default", str(ethanol), "--energy-unit", "eV", "--bootstrap", "10"]) == 0  # H, C, O
    ammonia = tmp_path / "nh3.xyz"
    ammonia.write_text(
        "4\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.0\n"
        + "".join(f"{e} {x} 0 0 0 0 0\n" for e, x in (("N", 0.0), ("H", 1.0), ("H", -1.0), ("H", 2.0)))
    )
    assert main(["evaluate", "default", str(ammonia), "--energy-unit", "eV"]) == 2
    assert "elements the model was not trained on" in caplog.text
    assert main(["evaluate", "default", str(ASPIRIN_XYZ), "--energy-unit", "furlongs"]) == 2
    assert "furlongs" in caplog.text


def test_paper_configs_load_strictly_and_name_the_papers_splits():
    from conftest import REPO

    from systems.splits import random_split
    from training.config import load_config

    for name, sizes in (("equiformer", [950, 50, 99000]), ("sake", [1000, 1000, 98000])):
        config = load_config(REPO / "training" / "configs" / f"{name}_md17_aspirin_paper.yaml")
        assert config.data.split == name and config.model.resolved().architecture == name
        assert [len(s) for s in random_split(100_000, name, 0)] == sizes
    with pytest.raises(ValueError, match="unknown named split 'nequip'"):
        random_split(10, "nequip", 0)
