"""The command line, as a user types it (in-process through ``main``)."""

import argparse
import json
import os
import re
import subprocess
import sys

import mdtraj
import pytest

from attnforce.cli import build_parser, main
from attnforce.export import read_metadata

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = ["train", "export", "md", "evaluate", "forecast", "info"]


def _listed_commands(help_text: str) -> list[str]:
    """The entries of the COMMAND listing in ``--help``: the lines indented by exactly four spaces in the
    positional-arguments section (an entry's wrapped help is indented further)."""
    section = help_text.split("\npositional arguments:\n", 1)[1].split("\n\n", 1)[0]
    return [match[1] for line in section.splitlines() if (match := re.match(r" {4}(\S+)", line))]


def test_help_lists_every_command():
    (subcommands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(subcommands.choices) == COMMANDS
    for command, parser in subcommands.choices.items():
        assert callable(parser.get_default("handler")), f"{command} has no handler"
    done = subprocess.run(
        [sys.executable, "-m", "attnforce.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0
    assert _listed_commands(done.stdout) == COMMANDS


@pytest.mark.parametrize("model, architecture", [("default", "sake"), ("equiformer", "equiformer")])
def test_export_embedded_model(tmp_path, capsys, model, architecture):
    assert main(["export", model, "--output", str(tmp_path / "model.pt")]) == 0
    metadata = read_metadata(tmp_path / "model.pt")
    assert metadata["architecture"] == architecture and len(metadata["atomic_numbers"]) == 21
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["default", "equiformer"])
def test_md_with_embedded_model_and_structure(tmp_path, capsys, model):
    """The user switches model and nothing else."""
    dcd = tmp_path / "aspirin.dcd"
    assert (
        main(
            [
                "md",
                "--model",
                model,
                "--structure",
                "default",
                "--steps",
                "40",
                "--report-interval",
                "20",
                "--dcd",
                str(dcd),
                "--seed",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test energy MAE" in out and "ns/day" in out
    assert mdtraj.load(str(dcd), top=str(tmp_path / "aspirin.pdb")).n_frames == 2


def test_md_with_exported_model_and_pdb(tmp_path, capsys):
    assert main(["export", "default", "--output", str(tmp_path / "m.pt"), "--output-forces"]) == 0
    assert (
        main(
            [
                "md",
                "--model",
                "default",
                "--steps",
                "2",
                "--report-interval",
                "1",
                "--dcd",
                str(tmp_path / "a.dcd"),
                "--no-plot",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "md",
                "--model",
                str(tmp_path / "m.pt"),
                "--trust-torchscript",
                "--structure",
                str(tmp_path / "a.pdb"),
                "--steps",
                "4",
                "--report-interval",
                "2",
                "--dcd",
                str(tmp_path / "b.dcd"),
                "--no-plot",
            ]
        )
        == 0
    )
    assert "steps/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["md", "--model", "missing.pt", "--dcd", "x.dcd"], "no such model file"),
        (["md", "--structure", "missing.xyz", "--dcd", "x.dcd"], "no such structure file"),
        (["export", "missing.pt", "--output", "x.pt"], "no such model file"),
    ],
)
def test_bad_input_exits_with_a_message_and_writes_nothing(tmp_path, monkeypatch, caplog, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_info_lists_each_embedded_model_once_and_describes_one(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "architectures: equiformer, sake" in out
    assert out.count("embedded model 'default', 'sake' (aspirin_sake.pt)") == 1 and "test energy MAE" in out
    assert out.count("embedded model 'equiformer' (aspirin_equiformer.pt): equiformer") == 1
    assert "equiformer-md17, equiformer-md17-linear, equiformer-md17-dot-product" in out
    assert main(["info", "default"]) == 0
    assert '"parameters": 325053' in capsys.readouterr().out


def test_info_counts_a_presets_parameters(capsys):
    assert main(["info", "equiformer-md17"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["architecture"] == "equiformer" and described["parameters"] == 3_496_001


def test_cuda_graphs_flags_fix_the_exported_graph_and_reach_the_force(tmp_path, capsys, caplog):
    """``export --cuda-graphs`` writes a fixed-graph module that ``md --cuda-graphs`` accepts (on the CPU platform
    openmm-torch ignores the option); a module exported without it is refused by ``md --cuda-graphs`` before any
    file is written."""
    fixed, searched = tmp_path / "fixed.pt", tmp_path / "searched.pt"
    assert main(["export", "default", "--output", str(fixed), "--cuda-graphs"]) == 0
    assert main(["export", "default", "--output", str(searched)]) == 0
    assert read_metadata(fixed)["fixed_graph"] is True and read_metadata(searched)["fixed_graph"] is False
    run = ["md", "--structure", "default", "--steps", "4", "--report-interval", "2", "--platform", "CPU"]
    run += ["--no-plot", "--cuda-graphs", "--seed", "1", "--trust-torchscript"]
    assert main([*run, "--model", str(fixed), "--dcd", str(tmp_path / "fixed.dcd")]) == 0
    assert mdtraj.load(str(tmp_path / "fixed.dcd"), top=str(tmp_path / "fixed.pdb")).n_frames == 2
    assert "steps/s" in capsys.readouterr().out
    assert main([*run, "--model", str(searched), "--dcd", str(tmp_path / "searched.dcd")]) == 2
    assert "exported without a fixed graph" in caplog.text
    assert sorted(path.name for path in tmp_path.glob("searched*")) == ["searched.pt"]  # no DCD, PDB or CSV
