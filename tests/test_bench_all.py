"""``python -m bench.all``: its results block in BENCHMARKS.md, the ratios it computes, and the way it runs steps.

The benchmarks themselves need the ``bench`` extra and an hour; these tests run the orchestration on the one
step that needs neither (the summary plot, drawn from JSON results written here) and check the rest by parts."""

import argparse
import importlib.util
import json
import stat
import sys
import time

import pytest
from plots import assert_drawn_plot

from bench import all as bench_all
from bench import report
from training.config import load_config

BLOCK = f"{report.BEGIN}\nold results\n{report.END}"


def document(tmp_path, body: str = BLOCK):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\nhand-written setup\n\n{body}\n\nhand-written reading\n")
    return path


def test_replace_block_rewrites_only_between_the_markers(tmp_path):
    path = document(tmp_path)
    report.replace_block(path, f"{report.BEGIN}\nnew results\n{report.END}")
    text = path.read_text()
    assert "new results" in text and "old results" not in text
    assert text.startswith("# Benchmarks\n\nhand-written setup\n\n") and text.endswith("\n\nhand-written reading\n")
    report.replace_block(path, f"{report.BEGIN}\nnewer results\n{report.END}")  # the markers survive a rewrite
    assert path.read_text().count(report.BEGIN) == 1 and "newer results" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]  # no temporary file left


def test_replace_block_keeps_the_documents_permissions(tmp_path):
    path = document(tmp_path)
    path.chmod(0o644)
    report.replace_block(path, f"{report.BEGIN}\nnew results: Å, ×, −\n{report.END}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert "Å, ×, −" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "body, message",
    [
        ("no markers at all", "found 0 and 0"),
        (BLOCK + "\n" + BLOCK, "found 2 and 2"),
        (f"{report.END}\nold results\n{report.BEGIN}", "end marker of bench.all comes before"),
    ],
)
def test_bad_markers_are_refused_and_the_file_is_left_as_it_was(tmp_path, body, message):
    path = document(tmp_path, body)
    before = path.read_text()
    with pytest.raises(ValueError, match=message):
        report.replace_block(path, f"{report.BEGIN}\nnew\n{report.END}")
    assert path.read_text() == before


def write_results(folder):
    """Small JSON results in the benchmarks' own layouts, with ratios easy to check by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    cost = []
    for structures, ours_ms, theirs_ms in ((1, 10.0, 25.0), (64, 100.0, 300.0)):
        for model, ms, peak in (("attnforce-equiformer", ours_ms, 100.0), ("equiformer-pytorch", theirs_ms, 150.0)):
            for kind in ("forward", "forward + forces"):
                cost.append({"model": model, "structures": structures, "pass": kind, "ms": ms, "peak_mb": peak})
    (folder / "model_cost.json").write_text(json.dumps({"rows": cost}))
    md = [
        {"system": "aspirin", "model": m, "ms_per_step": ms, "ns_per_day": 1.0}
        for m, ms in (("sake-small", 5.0), ("equiformer-small", 20.0), ("tensornet-72", 10.0))
    ]
    (folder / "md_compare.json").write_text(json.dumps({"rows": md}))
    accuracy = [
        {"molecule": "ethanol", "model": m, "force_mae_mev_per_a": f, "energy_mae_mev": 1.0, "epochs": 3}
        for m, f in (("sake-small", 30.0), ("equiformer-small", 60.0), ("tensornet-80", 15.0), ("tensornet-72", 20.0))
    ]
    (folder / "accuracy_budget.json").write_text(json.dumps({"minutes": 5.0, "rows": accuracy}))
    integrators = [
        {"architecture": a, "velocity_weight": 0.0, "test_position_mse": mse, "cpu_minutes": minutes}
        for a, mse, minutes in (("sake", 0.005, 15.0), ("egnn", 0.01, 12.0))
    ]
    (folder / "integrator_accuracy.json").write_text(json.dumps(integrators))
    speed = [  # the reference is found by its label, not its place
        {"method": "simulator, dt = 0.01", "seconds": 0.4, "position_mse": 0.01},
        {"method": "simulator, dt = 0.001 (reference)", "seconds": 4.0, "position_mse": 0.0},
        {"method": "sake (sake, best.pt)", "seconds": 1.0, "position_mse": 0.005},
        {"method": "egnn (egnn, best.pt)", "seconds": 0.5, "position_mse": 0.01},
    ]
    (folder / "integrator_speed.json").write_text(json.dumps(speed))


def test_headline_ratios_are_computed_from_the_results(tmp_path):
    write_results(tmp_path)
    assert report.headlines("model_cost", tmp_path) == [
        "energy + forces, equiformer-pytorch's time / ours: 2.50x at 1, 3.00x at 64 structures",
        "peak memory at 64 structures, equiformer-pytorch's / ours: 1.50x",
    ]
    assert report.headlines("md_compare", tmp_path) == [
        "aspirin, MD steps per second against tensornet-72: sake-small 2.00x, equiformer-small 0.50x"
    ]
    (ethanol,) = report.headlines("accuracy_budget", tmp_path)
    assert ethanol.endswith("sake-small / tensornet-80 2.00x, equiformer-small / tensornet-72 3.00x")
    (integrator,) = report.headlines("integrator_accuracy", tmp_path)
    assert integrator == (
        "N-body test position MSE, EGNN's / SAKE's: 2.00x (EGNN 0.01 after 12.0 CPU min, SAKE 0.005 after 15.0)"
    )
    speed = report.headlines("integrator_speed", tmp_path)
    assert speed[0] == "forecast time, SAKE's / EGNN's: 2.00x"
    assert speed[1] == (
        "forecast time / that of the simulator, dt = 0.001 (reference): simulator, dt = 0.01: 0.100; sake: 0.250; "
        "egnn: 0.125"
    )
    assert report.headlines("summary", tmp_path) == []


def test_the_summary_step_runs_and_rewrites_the_block(tmp_path):
    results = tmp_path / "results"
    write_results(results)
    path = document(tmp_path)
    arguments = ["--results", str(results), "--runs", str(tmp_path / "runs"), "--document", str(path)]
    assert bench_all.main(["--only", "summary", *arguments]) == 0
    text = path.read_text()
    assert "old results" not in text and "hand-written setup" in text and "hand-written reading" in text
    assert "#### Summary plot" in text and "python -m bench.competitors_summary" in text
    assert "| torch | " in text and "| CPU | " in text and "Latest run: `python -m bench.all --only summary" in text
    assert "![Summary plot](results/summary.png)" in text
    assert_drawn_plot(results / "summary.png", size=(1440, 1008), panels=(2, 2))  # bars, lines and points
    stored = json.loads((results / "all.json").read_text())
    assert set(stored["records"]) == {"summary"} and stored["run"]["versions"]["openmm"] != "not installed"

    # A failing step (its training runs are missing) stops the run: the block stays, the earlier record is kept.
    before = path.read_text()
    assert bench_all.main(["--only", "integrator_accuracy", *arguments]) == 1
    assert path.read_text() == before
    assert set(json.loads((results / "all.json").read_text())["records"]) == {"summary"}


@pytest.mark.skipif(importlib.util.find_spec("torchmdnet") is not None, reason="the bench extra is installed")
def test_steps_against_other_packages_need_the_bench_extra(tmp_path, caplog):
    path = document(tmp_path)
    before = path.read_text()
    code = bench_all.main(["--only", "md_compare", "--results", str(tmp_path / "r"), "--document", str(path)])
    assert code == 2 and "pip install -e" in caplog.text and "torchmdnet" in caplog.text
    assert path.read_text() == before and not (tmp_path / "r").exists()


def test_a_document_without_markers_is_refused_before_any_step(tmp_path, caplog):
    path = document(tmp_path, "no markers")
    code = bench_all.main(["--only", "summary", "--results", str(tmp_path / "r"), "--document", str(path)])
    assert code == 2 and "found 0 and 0" in caplog.text and not (tmp_path / "r").exists()


def test_integrator_configs_keep_the_protocol_and_change_only_budget_and_output(tmp_path):
    stale = bench_all.integrator_run(tmp_path, "sake") / "best.pt"  # an earlier run's model must not be reused
    stale.parent.mkdir()
    stale.write_text("old")
    bench_all.write_integrator_configs(tmp_path, 2.5)
    assert not stale.parent.exists()
    for name, source in bench_all.INTEGRATOR_CONFIGS.items():
        written, original = load_config(tmp_path / f"forecast_nbody_{name}.yaml"), load_config(source)
        assert written.training.max_cpu_minutes == 2.5 and written.output == str(tmp_path / f"forecast_nbody_{name}")
        assert written.model == original.model and written.data == original.data
        assert written.training.device == "cpu"
        written.training.max_cpu_minutes = original.training.max_cpu_minutes
        written.training.device = original.training.device
        assert written.training == original.training


def test_warps_start_up_messages_are_left_out_of_the_tables():
    output = (
        "Warp 1.19.0 initialized:\n   CUDA Toolkit 13.4, CUDA driver not available\n   Devices:\n"
        '     "cpu"      : "CPU"\n'
        "Module compose_tensor_float32 81ccaa3 load on device 'cpu' took 0.37 ms  (cached)\n"
        "caption\n| a | b |\n|---|---|\n| 1 | 2 |\n\n  an indented line of the benchmark\n"
    )
    expected = "caption\n| a | b |\n|---|---|\n| 1 | 2 |\n\n  an indented line of the benchmark"
    assert report.results_text(output) == expected


def test_a_step_from_an_earlier_run_is_kept_and_says_so(tmp_path):
    results = tmp_path / "results"
    write_results(results)
    earlier = {
        "title": "MD throughput",
        "commands": ["python -m bench.md_compare"],
        "run_id": "2026-01-01T00:00:00+00:00",
        "date": "2026-01-01 00:00 UTC",
        "commit": "abc1234",
        "machine": {},
        "versions": {"torch": "0.0.1"},
        "minutes": 1.0,
        "output": "| earlier table |",
        "show_output": True,
        "images": [],
    }
    (results / "all.json").write_text(json.dumps({"records": {"md_compare": earlier}}))
    path = document(tmp_path)
    arguments = ["--results", str(results), "--runs", str(tmp_path / "runs"), "--document", str(path)]
    assert bench_all.main(["--only", "summary", *arguments]) == 0
    text = path.read_text()
    assert "| earlier table |" in text
    assert (
        "(2026-01-01 00:00 UTC, 1.0 min; from an earlier run, commit abc1234; its versions differed: torch 0.0.1.)"
        in text
    )
    summary = text[text.index("#### Summary plot") :]
    assert "from an earlier run" not in summary
    assert set(json.loads((results / "all.json").read_text())["records"]) == {"md_compare", "summary"}


def test_only_pulls_in_the_steps_that_depend_on_a_rerun_one(tmp_path):
    arguments = argparse.Namespace(results=str(tmp_path), runs=str(tmp_path), minutes=1, integrator_minutes=1)
    assert [step.name for step in bench_all.plan(arguments)] == list(bench_all.STEP_NAMES)
    assert bench_all.selected(None) == list(bench_all.STEP_NAMES)
    assert bench_all.selected(["md_compare"]) == ["md_compare", "summary"]
    assert bench_all.selected(["integrator_training"]) == [
        "integrator_training",
        "integrator_accuracy",
        "integrator_speed",
        "summary",
    ]


def test_steps_of_several_commands_return_all_outputs_or_stop_at_the_first_failure():
    python = [sys.executable, "-c"]
    step = bench_all.Step("pair", "a pair", [python + ["print('first')"], python + ["print('second')"]])
    output, _ = bench_all.run_step(step)
    assert output.split() == ["first", "second"]

    failing = bench_all.Step(
        "pair", "a pair", [python + ["import time; time.sleep(60)"], python + ["raise SystemExit(3)"]]
    )
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"exited with 3"):
        bench_all.run_step(failing)
    assert time.perf_counter() - start < 50  # the sleeping partner was stopped, not waited for
