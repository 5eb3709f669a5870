"""Using learned integrators: training runs, `attnforce forecast` (NPZ, DCD, PNG, ensembles), the OpenMM
simulation object and the embedded models."""

import csv

import numpy as np
import openmm.app
import openmm.unit as unit
import pytest
import torch
from conftest import DATA
from plots import assert_drawn_plot, lines_by_label, saved_figures

from attnforce.cli import main
from integrators.dynamics import build_dynamics
from integrators.forecast import rollout, step
from integrators.forecast_outputs import NM_PER_LENGTH_UNIT
from integrators.openmm_learned import LearnedIntegratorSimulation
from integrators.saved import load_forecaster, save_forecaster
from systems.forecasting import NBODY, load_split, reference_paths
from training.config import ForecastExperimentConfig, load_config
from training.forecast_trainer import forecast_metrics, train_forecaster

TINY = dict(hidden_features=8, num_layers=2, num_heads=2, num_rbf=4, rbf_cutoff=30.0)


@pytest.fixture(scope="module")
def walking_run(tmp_path_factory):
    if not (DATA / "cmu_mocap").is_dir():
        pytest.skip(f"reference data not found at {DATA}")
    output = tmp_path_factory.mktemp("run")
    config_yaml = output / "config_in.yaml"
    config_yaml.write_text(
        f"data: {{task: walking, data_dir: {DATA}, train_limit: 40}}\n"
        f"model: {{architecture: sake, hyperparameters: {TINY}}}\n"
        "training: {epochs: 2, batch_size: 20, warmup_epochs: 0, velocity_weight: 1.0, threads: 1}\n"
        f"output: {output / 'run'}\n"
    )
    config = load_config(config_yaml)
    assert isinstance(config, ForecastExperimentConfig)
    with saved_figures() as figures:
        result = train_forecaster(config, progress=False)
    return config, result, figures


def test_training_run_writes_a_loadable_model_with_honest_test_metrics(walking_run):
    config, result, figures = walking_run
    run = result.best_model.parent
    for name in ("config.yaml", "metrics.csv", "learning_curve.png"):
        assert (run / name).is_file()
    assert result.epochs == 2
    assert_drawn_plot(run / "learning_curve.png", size=(720, 480))
    (figure,) = figures
    (ax,) = figure.axes
    assert ax.get_yscale() == "log"
    lines = lines_by_label(ax)
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for label, column in [
        ("train loss", "train_loss"),
        ("validation loss", "val_loss"),
        ("validation position MSE", "val_position_mse"),
    ]:
        np.testing.assert_array_equal(lines[label][0], [0, 1])
        np.testing.assert_allclose(lines[label][1], [float(r[column]) for r in rows])
    saved = load_forecaster(result.best_model, "walking")
    assert saved.predicts_velocities and saved.hyperparameters["horizon"] == pytest.approx(8 / 30)
    recomputed = forecast_metrics(saved.model, load_split("walking", "test", DATA), saved.task.horizon)
    assert recomputed == pytest.approx(saved.metadata["test_metrics"])
    resolved = load_config(run / "config.yaml")
    assert resolved.model.hyperparameters["num_types"] == 31


def test_forecast_config_is_strict(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {task: nbody}\ntraining: {velocity_wieght: 1.0}\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['velocity_wieght'\]"):
        load_config(bad)


def test_cli_forecast_rolls_out_the_walking_test_set_to_npz_dcd_and_png(walking_run, tmp_path):
    import mdtraj

    _, result, _ = walking_run
    out = tmp_path / "walk.npz"
    with saved_figures() as figures:
        code = main(
            ["forecast", "--task", "walking", "--model", str(result.best_model), "--horizons", "2", "--output",
             str(out), "--dcd", str(tmp_path / "walk.dcd"), "--png", str(tmp_path / "walk.png"), "--ensemble", "2",
             "--noise", "0.1"]
        )  # fmt: skip
    assert code == 0
    stored = np.load(out)
    reference = reference_paths("walking", 2)
    num_systems = len(reference.positions)
    assert stored["positions"].shape == (num_systems, 3, 31, 3)
    np.testing.assert_allclose(stored["positions"][:, 0], reference.positions)
    expected = rollout(
        load_forecaster(result.best_model).model, reference.positions, reference.velocities, reference.types, 2
    )[0]
    np.testing.assert_allclose(stored["positions"], expected, atol=1e-6)
    assert stored["ensemble_positions"].shape == (num_systems, 2, 3, 31, 3) and stored["spread"].shape == (
        num_systems,
        3,
    )
    mse = ((expected - reference.paths[:, ::8]) ** 2).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(stored["position_mse"], mse, rtol=1e-6)
    trajectory = mdtraj.load(str(tmp_path / "walk.dcd"), top=str(tmp_path / "walk.pdb"))
    assert trajectory.n_frames == 3 and trajectory.n_atoms == num_systems * 31 and trajectory.n_chains == num_systems
    assert trajectory.topology.n_bonds == num_systems * 30
    np.testing.assert_allclose(trajectory.xyz[2, :31], expected[0, 2] * NM_PER_LENGTH_UNIT, atol=1e-5)
    # The plot: four systems spread over the set, each the skeleton's bonds at the start (grey), the reference at
    # the last horizon (black) and the forecast there (red dashed).
    assert_drawn_plot(tmp_path / "walk.png", size=(4 * 440, 440), panels=(1, 4))
    (figure,) = figures
    chosen = np.linspace(0, num_systems - 1, 4).round().astype(int)
    assert [ax.get_title() for ax in figure.axes] == [f"system {s}" for s in chosen]
    bonds = load_forecaster(result.best_model).task.bonds
    for s, ax in zip(chosen, figure.axes):
        drawn = np.array([np.stack([line.get_xdata(), line.get_ydata()], axis=-1) for line in ax.get_lines()])
        assert len(drawn) == 3 * len(bonds)
        for frame, segments in zip([expected[s, 0], reference.paths[s, -1], expected[s, -1]], np.split(drawn, 3)):
            np.testing.assert_allclose(segments, [frame[[i, j], :2] for i, j in bonds], atol=1e-6)


def _nbody_model(tmp_path, predicts_velocities=True):
    torch.manual_seed(0)
    hyperparameters = dict(TINY, num_types=2, horizon=NBODY.horizon, rbf_cutoff=8.0)
    model = build_dynamics("sake", hyperparameters)
    path = tmp_path / "nbody.pt"
    save_forecaster(path, model, "sake", hyperparameters, NBODY, predicts_velocities)
    return path


def test_cli_forecast_reads_initial_states_and_names_bad_ones(tmp_path):
    model = _nbody_model(tmp_path)
    samples = load_split("nbody", "test", limit=3)
    initial = tmp_path / "initial.npz"
    np.savez(initial, positions=samples.positions, velocities=samples.velocities, charges=samples.charges)
    out = tmp_path / "out.npz"
    args = ["forecast", "--task", "nbody", "--model", str(model), "--initial", str(initial), "--output", str(out)]
    assert main(args) == 0
    stored = np.load(out)
    assert stored["positions"].shape == (3, 2, 5, 3) and "reference_positions" not in stored
    np.testing.assert_array_equal(stored["charges"], samples.charges)
    np.savez(initial, positions=samples.positions, velocities=samples.velocities)
    out.unlink()
    assert main(args) == 2 and not out.exists()  # no charges: named error, nothing written
    assert main(args[:-4] + ["--initial", str(tmp_path / "missing.npz"), "--output", str(out)]) == 2
    assert main(args[:-1] + [str(tmp_path / "out")]) == 2 and not (tmp_path / "out").exists()  # not .npz


def test_rollouts_need_a_model_trained_on_velocities(tmp_path, caplog):
    model = _nbody_model(tmp_path, predicts_velocities=False)
    args = [
        "forecast",
        "--task",
        "nbody",
        "--model",
        str(model),
        "--horizons",
        "3",
        "--output",
        str(tmp_path / "o.npz"),
    ]
    assert main(args) == 2
    assert "trained on positions only" in caplog.text


def test_openmm_simulation_steps_are_learned_horizons_and_reporters_work(tmp_path):
    model = _nbody_model(tmp_path)
    saved = load_forecaster(model)
    samples = load_split("nbody", "test", limit=1)
    simulation = LearnedIntegratorSimulation(saved, samples.positions[0], samples.velocities[0], samples.types[0])
    simulation.reporters.append(openmm.app.DCDReporter(str(tmp_path / "sim.dcd"), 1))
    log = tmp_path / "sim.csv"
    simulation.reporters.append(openmm.app.StateDataReporter(str(log), 1, step=True, time=True, kineticEnergy=True))
    simulation.step(3)
    expected, expected_velocities = rollout(saved.model, samples.positions, samples.velocities, samples.types, 3)
    state = simulation.context.getState(positions=True, velocities=True)
    positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    velocities = state.getVelocities(asNumpy=True).value_in_unit(unit.angstrom / unit.picosecond)
    np.testing.assert_allclose(positions, expected[0, 3], atol=1e-6)
    np.testing.assert_allclose(velocities, expected_velocities[0, 3], atol=1e-6)
    assert simulation.currentStep == 3
    assert state.getTime().value_in_unit(unit.picosecond) == pytest.approx(3 * NBODY.horizon)
    rows = log.read_text().strip().splitlines()
    assert len(rows) == 4 and rows[-1].startswith("3,")
    import mdtraj

    frames = mdtraj.load_dcd(str(tmp_path / "sim.dcd"), top=mdtraj.Topology.from_openmm(simulation.topology))
    np.testing.assert_allclose(frames.xyz[1], expected[0, 2] * NM_PER_LENGTH_UNIT, atol=1e-5)
    before = simulation.context.getState(positions=True).getPositions(asNumpy=True)
    simulation.context.getIntegrator().step(2)  # the Context's own integrator moves nothing
    after = simulation.context.getState(positions=True).getPositions(asNumpy=True)
    np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError, match=r"types must be \(N,\)"):
        LearnedIntegratorSimulation(saved, samples.positions[0], samples.velocities[0], samples.types[0][:2])


def test_one_step_of_the_simulation_equals_forecast_step(tmp_path):
    saved = load_forecaster(_nbody_model(tmp_path))
    samples = load_split("nbody", "validation", limit=2)
    x, v = step(saved.model, samples.positions, samples.velocities, samples.types)
    for s in range(2):
        simulation = LearnedIntegratorSimulation(saved, samples.positions[s], samples.velocities[s], samples.types[s])
        simulation.step(1)
        positions = simulation.context.getState(positions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        np.testing.assert_allclose(positions, x[s], atol=1e-6)


def test_embedded_nbody_model_beats_constant_velocity_on_test_systems():
    saved = load_forecaster("default", "nbody")
    assert saved.predicts_velocities and saved.architecture == "sake"
    samples = load_split("nbody", "test", limit=200)
    metrics = forecast_metrics(saved.model, samples, saved.task.horizon)
    assert metrics["position_mse"] < 0.25 * metrics["constant_velocity_position_mse"]
    assert saved.metadata["test_metrics"]["samples"] == 2000


def test_embedded_walking_model_reproduces_its_stored_test_error_on_the_shipped_trials():
    saved = load_forecaster("default", "walking")
    reference = reference_paths("walking", 1)
    forecast = rollout(saved.model, reference.positions, reference.velocities, reference.types, 1)[0][:, 1]
    mse = float(np.mean((forecast - reference.paths[:, -1]) ** 2))
    stored = saved.metadata["test_metrics"]
    assert mse == pytest.approx(stored["position_mse"], rel=1e-3)
    assert mse < stored["constant_velocity_position_mse"]


def test_nbody_example_runs(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "nbody_learned_integrator.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "after 5 horizon(s)" in result.stdout and (tmp_path / "nbody_learned.dcd").stat().st_size > 0
