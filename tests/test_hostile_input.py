"""Hostile and careless input to the command line: each case exits with 2 and one line naming the problem, prints
no traceback, runs no code from a file, and leaves the folder exactly as it was (inputs byte-identical, no new or
partial files).

Inputs are made here from the embedded aspirin structure and model, so the cases run on a fresh clone.
"""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attnforce.checkpoint import load_model, resolve_model_path
from attnforce.cli import describe_error, main
from systems.molecules import load_molecule

EMBEDDED_XYZ = Path(__file__).resolve().parents[1] / "attnforce" / "data" / "aspirin.xyz"
#: The file a crafted pickle would create if its code ran.
MARKER = "code-ran"
TRAIN_CONFIG = (
    "data:\n  path: labels_ev.xyz\n  energy_unit: eV\n  split: [2, 1, 1]\nmodel:\n  preset: sake-small\n"
    "output: {output}\n"
)


class _RunsCode:
    """Pickles to a call of ``os.system``: what a crafted file would do."""

    def __init__(self, folder: Path):
        self.command = f"touch {folder / MARKER}"

    def __reduce__(self):
        return (os.system, (self.command,))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _xyz_lines() -> list[str]:
    return EMBEDDED_XYZ.read_text().splitlines()


def _write_pdb(path: Path) -> None:
    from openmm import app, unit

    molecule = load_molecule(EMBEDDED_XYZ)
    with open(path, "w") as handle:
        app.PDBFile.writeFile(molecule.topology, molecule.positions * unit.angstrom, handle)


def _model_labelled_aspirin(frames: int, spread_a: float, rng: np.random.Generator | None = None):
    """``frames`` aspirin structures displaced by ``spread_a`` Å (normal, per coordinate, drawn from ``rng``, by
    default seeded 0) and labelled by the embedded model, in eV and eV/Å."""
    from systems.frames import Frames
    from training.evaluation import predict

    molecule = load_molecule(EMBEDDED_XYZ)
    rng = np.random.default_rng(0) if rng is None else rng
    positions = molecule.positions[None] + rng.normal(scale=spread_a, size=(frames,) + molecule.positions.shape)
    numbers = np.array(molecule.atomic_numbers)
    unlabelled = Frames(numbers, positions, np.zeros(frames), np.zeros_like(positions), "perturbed aspirin")
    energies, forces = predict(load_model("default").potential, unlabelled)
    return Frames(numbers, positions, energies, forces, "labelled.xyz")


def _labelled_frames_in_ev(path: Path, frames: int = 4) -> None:
    """Extended XYZ of perturbed aspirin labelled by the embedded model (plus noise), energies in eV."""
    rng = np.random.default_rng(0)
    labelled = _model_labelled_aspirin(frames, 0.03, rng)
    positions, energies = labelled.positions, labelled.energies
    forces = labelled.forces + rng.normal(scale=0.03, size=labelled.forces.shape)
    symbols = [line.split()[0] for line in _xyz_lines()[2:]]
    lines = []
    for k in range(frames):
        lines += [str(len(symbols)), f'energy={energies[k]:.8f} Properties=species:S:1:pos:R:3:forces:R:3 pbc="F F F"']
        lines += [
            f"{s} " + " ".join(f"{v:.8f}" for v in (*positions[k, i], *forces[k, i])) for i, s in enumerate(symbols)
        ]
    path.write_text("\n".join(lines) + "\n")


def _tampered_model(path: Path) -> None:
    """The embedded SAKE model whose metadata claims nitrogen and sulfur too."""
    saved = load_model("default")
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    stored["metadata"]["elements"] = sorted(stored["metadata"]["elements"] + [7, 16])
    torch.save(stored, path)
    assert saved.elements == [1, 6, 8]


def _crafted_model(path: Path) -> None:
    torch.save({"schema_version": 1, "architecture": _RunsCode(path.parent)}, path)


def _crafted_motion_pickle(folder: Path) -> None:
    (folder / "data" / "eghn_motion").mkdir(parents=True)
    with open(folder / "data" / "eghn_motion" / "motion_run.pkl", "wb") as handle:
        pickle.dump(([[1, 0]], [_RunsCode(folder)]), handle)
    (folder / "running.yaml").write_text("data:\n  task: running\n  data_dir: data\noutput: running_run\n")


def _motion_pickles(folder: Path) -> None:
    """EGHN-style motion pickles, each wrong in one way, and a training config for each."""
    good = [np.random.default_rng(k).normal(size=(200, 31, 3)) for k in range(11)]
    bonds = [[k + 1, k] for k in range(30)]
    variants = {
        "three_trials": (bonds, good[:3]),
        "nan_trial": (bonds, good[:5] + [np.full((200, 31, 3), np.nan)] + good[6:]),
        "bonds_out_of_range": ([[0, 99]], good),
        "short_trials": (bonds, [trial[:20] for trial in good]),
    }
    for name, content in variants.items():
        (folder / name / "eghn_motion").mkdir(parents=True)
        with open(folder / name / "eghn_motion" / "motion_run.pkl", "wb") as handle:
            pickle.dump(content, handle)
        (folder / f"{name}.yaml").write_text(f"data:\n  task: running\n  data_dir: {name}\noutput: {name}_run\n")


def _fake_torchscript(path: Path) -> None:
    """A zip that looks like an exported file (metadata for aspirin) but holds no loadable TorchScript."""
    import json
    import zipfile

    from attnforce.export import export_torchscript, read_metadata

    export_torchscript(load_model("default"), path.with_name("real_export.pt"))
    metadata = read_metadata(path.with_name("real_export.pt"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/constants.pkl", b"not a pickle")
        archive.writestr("model/extra/attnforce_metadata.json", json.dumps(metadata))


def _existing_run(folder: Path) -> None:
    run = folder / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"an earlier run's model")
    (folder / "train.yaml").write_text(TRAIN_CONFIG.format(output="run"))


def _files(folder: Path) -> None:
    """Inputs every case can use."""
    (folder / "mol.xyz").write_text(EMBEDDED_XYZ.read_text())
    _write_pdb(folder / "mol.pdb")
    (folder / "notes.txt").write_text("a file, not a folder\n")
    for name in ("out.dcd", "folder.pt", "folder.json"):
        (folder / name).mkdir()  # a folder with an output's name
    lines = _xyz_lines()
    (folder / "short_count.xyz").write_text("\n".join(["15"] + lines[1:]) + "\n")
    (folder / "long_count.xyz").write_text("\n".join(["30"] + lines[1:]) + "\n")
    (folder / "zero.xyz").write_text("0\n\n")
    (folder / "unknown_element.xyz").write_text("\n".join(lines[:2] + ["Qq 0 0 0"] + lines[3:]) + "\n")
    (folder / "nan.xyz").write_text("\n".join(lines[:2] + ["C nan 0 0"] + lines[3:]) + "\n")
    (folder / "nitrogen.xyz").write_text("\n".join(lines[:2] + ["N" + lines[2][1:]] + lines[3:]) + "\n")
    (folder / "garbage.xyz").write_bytes(bytes(range(256)) * 4)
    (folder / "garbage.pdb").write_bytes(bytes(range(256)) * 4)
    (folder / "garbage.yaml").write_bytes(bytes(range(256)) * 4)
    (folder / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    (folder / "garbage.npz").write_bytes(bytes(range(256)) * 4)
    (folder / "empty.pdb").write_text("")
    (folder / "empty.db").write_text("")
    import sqlite3

    with sqlite3.connect(folder / "other.db") as database:
        database.execute("CREATE TABLE notes (text TEXT)")
    (folder / "text.pdb").write_text("hello, this is not a protein\n")
    (folder / "molecule.mol2").write_text("@<TRIPOS>MOLECULE\n")
    (folder / "unknown_key.yaml").write_text("data:\n  path: mol.xyz\n  energy_unit: eV\nsurprise: 1\n")
    np.savez(
        folder / "no_systems.npz",
        positions=np.zeros((0, 5, 3)),
        velocities=np.zeros((0, 5, 3)),
        charges=np.ones((0, 5)),
    )
    nan_positions = np.zeros((1, 5, 3))
    nan_positions[0, 0, 0] = np.nan
    np.savez(folder / "nan_state.npz", positions=nan_positions, velocities=np.ones((1, 5, 3)), charges=np.ones((1, 5)))
    np.savez(
        folder / "one_system.npz",
        positions=np.random.default_rng(0).normal(size=(1, 5, 3)),
        velocities=np.zeros((1, 5, 3)),
        charges=np.array([[1.0, -1.0, 1.0, -1.0, 1.0]]),
    )
    spread = np.random.default_rng(1).normal(size=(1, 5, 3))
    for name, positions, velocities in (
        ("coincident", np.zeros((1, 5, 3)), np.zeros((1, 5, 3))),
        ("huge", np.full((1, 5, 3), 1e300), np.zeros((1, 5, 3))),
        ("fast", spread, np.full((1, 5, 3), 1e8)),
    ):
        np.savez(folder / f"{name}.npz", positions=positions, velocities=velocities, charges=np.ones((1, 5)))
    for name in ("plain_pickle.pt", "pickled.npz"):
        with open(folder / name, "wb") as handle:
            pickle.dump({"weights": _RunsCode(folder)}, handle, protocol=4)
    np.savez(folder / "object.npz", positions=np.array([{"a": 1}], dtype=object), velocities=np.zeros(1))
    _crafted_model(folder / "crafted.pt")
    _tampered_model(folder / "tampered.pt")
    (folder / "model.pt").write_bytes(resolve_model_path("default").read_bytes())
    (folder / "model.json").write_bytes(resolve_model_path("default").read_bytes())  # a model may have any name
    (folder / "sake").write_bytes(resolve_model_path("equiformer").read_bytes())  # shadows the embedded name
    _crafted_motion_pickle(folder)
    _motion_pickles(folder)
    _existing_run(folder)
    _fake_torchscript(folder / "fake_export.pt")
    os.link(folder / "model.pt", folder / "model_link.csv")
    (folder / "overlapping.xyz").write_text("\n".join(lines[:2] + [lines[2], lines[2]] + lines[4:]) + "\n")
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    first = next(iter(stored["state_dict"]))
    stored["state_dict"][first] = torch.full_like(stored["state_dict"][first], float("nan"))
    torch.save(stored, folder / "nan_weights.pt")
    (folder / "damaged").mkdir()
    torch.save({"kind": "training_state"}, folder / "damaged" / "last.pt")
    for name, extra in {
        "lr_zero": "training:\n  learning_rate: 0.0\n",
        "minutes_zero": "training:\n  max_minutes: 0\n",
        "duplicate": "training:\n  epochs: 2\n  epochs: 3\n",
        "no_weights": "training:\n  energy_weight: 0\n  force_weight: 0\n",
    }.items():
        (folder / f"{name}.yaml").write_text(TRAIN_CONFIG.format(output=name) + extra)
    (folder / "negative_cutoff.yaml").write_text(
        TRAIN_CONFIG.format(output="cut").replace(
            "preset: sake-small", "preset: sake-small\n  hyperparameters: {cutoff: -5.0}"
        )
    )
    (folder / "split_negative.yaml").write_text(TRAIN_CONFIG.format(output="split").replace("[2, 1, 1]", "[2, -5, 1]"))
    np.savez(
        folder / "complex.npz",
        positions=np.ones((1, 5, 3), dtype=complex),
        velocities=np.ones((1, 5, 3)),
        charges=np.ones((1, 5)),
    )
    (folder / "exploding.yaml").write_text(
        TRAIN_CONFIG.format(output="exploding") + "training:\n  epochs: 2\n  learning_rate: 1.0e+30\n"
    )
    (folder / "config_in_run").mkdir()
    (folder / "config_in_run" / "config.yaml").write_text(TRAIN_CONFIG.format(output="config_in_run"))
    _labelled_frames_in_ev(folder / "labels_ev.xyz")
    _round_five_files(folder, lines)


def _scaled_atom_lines(lines: list[str], factor: float) -> list[str]:
    """XYZ or extended-XYZ lines with each atom line's coordinates (columns 2-4) times ``factor``; count and
    comment lines unchanged."""
    scaled = []
    for line in lines:
        fields = line.split()
        is_atom = len(fields) in (4, 7) and not fields[0].isdigit() and "=" not in line
        coordinates = [f"{float(v) * factor:.6f}" for v in fields[1:4]] if is_atom else []
        scaled.append(" ".join(fields[:1] + coordinates + fields[4:]) if is_atom else line)
    return scaled


def _round_five_files(folder: Path, lines: list[str]) -> None:
    """Inputs of the fifth battery: wrong units, cells, devices, pipes, altered models."""
    for name, factor in (("aspirin_bohr", 1.8897), ("aspirin_pm", 100.0)):
        rows = _scaled_atom_lines(lines[2:], factor)
        (folder / f"{name}.xyz").write_text("\n".join([lines[0], "in the wrong unit"] + rows) + "\n")
    (folder / "slab.xyz").write_text(
        "\n".join([lines[0], 'Lattice="12 0 0 0 12 0 0 0 12" pbc="T T F"'] + lines[2:]) + "\n"
    )
    labelled = (folder / "labels_ev.xyz").read_text().splitlines()
    (folder / "labels_bohr.xyz").write_text("\n".join(_scaled_atom_lines(labelled, 1.8897)) + "\n")
    config = TRAIN_CONFIG.format(output="unit_run")
    (folder / "train_wrong_unit.yaml").write_text(config.replace("energy_unit: eV", "energy_unit: meV"))
    (folder / "train_in_bohr.yaml").write_text(config.replace("labels_ev.xyz", "labels_bohr.xyz"))
    molecule = load_molecule(EMBEDDED_XYZ)
    np.savez(
        folder / "z_float.npz",
        R=molecule.positions[None],
        z=np.array(molecule.atomic_numbers) + 0.7,
        E=np.zeros(1),
        F=np.zeros((1, 21, 3)),
    )
    np.save(folder / "array.npy", np.zeros((1, 5, 3)))
    (folder / "array.npy").rename(folder / "array_as.npz")
    os.mkfifo(folder / "pipe.xyz")
    (folder / "sink.csv").symlink_to("/dev/null")  # as a user's sink: a device under a CSV's name
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    stored["metadata"]["units"] = {"length": "nanometer", "energy": "kJ/mol"}
    torch.save(stored, folder / "nm_model.pt")
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    stored["hyperparameters"]["num_layers"] = 1_000_000
    torch.save(stored, folder / "deep_model.pt")
    _round_six_files(folder, lines)
    _round_seven_files(folder, lines)
    _round_eight_files(folder)
    _round_nine_files(folder)
    _round_ten_files(folder)
    _round_eleven_files(folder)


def _round_six_files(folder: Path, lines: list[str]) -> None:
    """Inputs of the sixth battery: periodic data, mixed units across frames, tampered learned integrators."""
    labelled = (folder / "labels_ev.xyz").read_text()
    (folder / "labels_box.xyz").write_text(
        labelled.replace('pbc="F F F"', 'Lattice="20 0 0 0 20 0 0 0 20" pbc="T T T"')
    )
    frames = labelled.splitlines()
    per_frame = len(frames) // 4
    last = _scaled_atom_lines(frames[3 * per_frame :], 1.8897)
    (folder / "labels_last_in_bohr.xyz").write_text("\n".join(frames[: 3 * per_frame] + last) + "\n")
    (folder / "box_fused.xyz").write_text(
        "\n".join([lines[0], 'Lattice="12 0 0 0 12 0 0 0 12" pbc="T T T"', lines[2], lines[2]] + lines[4:]) + "\n"
    )
    molecule = load_molecule(EMBEDDED_XYZ)
    np.savez(
        folder / "complex_positions.npz",
        R=molecule.positions[None].astype(complex),
        z=np.array(molecule.atomic_numbers),
        E=np.zeros(1),
        F=np.zeros((1, 21, 3)),
    )
    from integrators.saved import resolve_forecaster_path

    stored = torch.load(resolve_forecaster_path("walking"), weights_only=True)
    stored["metadata"]["task"]["bonds"].append([0, 99])
    torch.save(stored, folder / "bad_bonds.pt")
    rng = np.random.default_rng(2)
    np.savez(
        folder / "many.npz",
        positions=rng.normal(scale=3.0, size=(5001, 5, 3)),
        velocities=np.zeros((5001, 5, 3)),
        charges=np.ones((5001, 5)),
    )


def _round_seven_files(folder: Path, lines: list[str]) -> None:
    """Inputs of the seventh round: a file named like a preset, odd lattices, YAML bombs."""
    (folder / "sake-md17").write_bytes(b"the user's own model file")
    lattices = {"turned_box": "0 20 0 20 0 0 0 0 20", "huge_box": "1e300 0 0 0 1e300 0 0 0 1e300"}
    for name, lattice in lattices.items():
        comment = f'Lattice="{lattice}" pbc="T T T"'
        (folder / f"{name}.xyz").write_text("\n".join([lines[0], comment] + lines[2:]) + "\n")
    nested = ", ".join(f"&l{k} [" + ", ".join([f"*l{k - 1}" if k else "lol"] * 9) + "]" for k in range(9))
    (folder / "laughs.yaml").write_text(f"data:\n  path: [{nested}]\n")  # 9^9 strings if expanded
    (folder / "one_atom.xyz").write_text("1\na lone hydrogen\nH 0 0 0\n")
    empty = np.zeros((0, 21, 3))
    np.savez(folder / "no_frames.npz", R=empty, z=np.ones(21, int), E=np.zeros(0), F=empty)
    (folder / "deep.yaml").write_text("data:\n  path: " + "[" * 5000 + "]" * 5000 + "\n")


def _with_labels(lines: list[str], forces=None, energy=None) -> list[str]:
    """Extended-XYZ lines with each atom's forces (columns 5-7) replaced by ``forces(k, values)`` of its k-th atom
    line, and each energy by ``energy(value)``."""
    changed, atom = [], 0
    for line in lines:
        fields = line.split()
        if len(fields) == 7 and forces is not None:
            line = " ".join(fields[:4] + [f"{v:.8g}" for v in forces(atom, np.array(fields[4:], float))])
            atom += 1
        elif line.startswith("energy=") and energy is not None:
            value = float(line.split()[0].removeprefix("energy="))
            line = line.replace(line.split()[0], f"energy={energy(value):.8g}")
        changed.append(line)
    return changed


def _round_eight_files(folder: Path) -> None:
    """Inputs of the eighth round: labels no unit makes physical, and labels whose errors cannot tell the unit."""
    labelled = (folder / "labels_ev.xyz").read_text().splitlines()
    huge = _with_labels(labelled, forces=lambda k, f: f * 1e300)
    (folder / "labels_huge_forces.xyz").write_text("\n".join(huge) + "\n")
    (folder / "labels_huge_energies.xyz").write_text("\n".join(_with_labels(labelled, energy=lambda e: 1e300)) + "\n")
    rng = np.random.default_rng(1)
    unrelated = rng.normal(size=(10_000, 3))  # forces of the right size (1 eV/Å) that the model cannot match
    shuffled = _with_labels(labelled, forces=lambda k, f: unrelated[k])
    (folder / "labels_unrelated.xyz").write_text("\n".join(shuffled) + "\n")


def _round_nine_files(folder: Path) -> None:
    """Inputs of the ninth round: zips that are not torch archives, a model without metadata or with its energy
    scale altered, placeholder energies, and a structure too large for any machine's memory."""
    import zipfile

    with zipfile.ZipFile(folder / "notorch.pt", "w") as archive:
        archive.writestr("readme.txt", "a zip, not a torch archive")
    np.savez(folder / "arrays.npz", weights=np.zeros(3))
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    torch.save({key: value for key, value in stored.items() if key != "metadata"}, folder / "no_metadata.pt")
    stored["state_dict"]["energy_scale"] = stored["state_dict"]["energy_scale"] * 1000
    torch.save(stored, folder / "scaled.pt")
    labelled = (folder / "labels_ev.xyz").read_text().splitlines()
    (folder / "labels_zero_energy.xyz").write_text("\n".join(_with_labels(labelled, energy=lambda e: 0.0)) + "\n")
    grid = np.stack(np.meshgrid(*[np.arange(28)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.6
    atoms = [f"{'CHO'[i % 3]} {x:.2f} {y:.2f} {z:.2f}" for i, (x, y, z) in enumerate(grid)]
    (folder / "big.xyz").write_text(f"{len(atoms)}\n\n" + "\n".join(atoms) + "\n")


def _round_ten_files(folder: Path) -> None:
    """Inputs of the tenth round: PDBs that OpenMM's reader would read in part, coordinates beyond any box, comment
    lines with a key twice or an open quote, and a config without its data's path."""
    pdb = (folder / "mol.pdb").read_text().splitlines()
    atoms = [line for line in pdb if line.startswith(("ATOM", "HETATM"))]
    same_names = [line[:12] + f" {line[76:78].strip():<3}" + line[16:] if line in atoms else line for line in pdb]
    (folder / "same_names.pdb").write_text("\n".join(same_names) + "\n")
    cut = "\n".join(pdb[: pdb.index(atoms[8])]) + "\n" + atoms[8][:3]
    (folder / "cut.pdb").write_text(cut)
    lines = _xyz_lines()
    (folder / "far.xyz").write_text("\n".join(lines[:2] + ["C 1e300 0 0"] + lines[3:]) + "\n")
    labelled = (folder / "labels_ev.xyz").read_text().splitlines()
    twice = [
        line.replace("energy=", "energy=0.0 energy=", 1) if line.startswith("energy=") else line for line in labelled
    ]
    (folder / "energy_twice.xyz").write_text("\n".join(twice) + "\n")
    quoted = [line + ' pbc="F' if line.startswith("energy=") else line for line in labelled]
    (folder / "open_quote.xyz").write_text("\n".join(quoted) + "\n")
    (folder / "no_path.yaml").write_text("data:\n  energy_unit: eV\nmodel:\n  preset: sake-small\noutput: run\n")


def _round_eleven_files(folder: Path) -> None:
    """Inputs of the eleventh round: energies in another unit than their forces (24 frames, enough pairs of
    neighbours to measure it), Properties that contradict the rows, and an integrator config without its task."""
    _labelled_frames_in_ev(folder / "labels_24.xyz", frames=24)
    labelled = (folder / "labels_24.xyz").read_text().splitlines()
    (folder / "energies_x1000.xyz").write_text("\n".join(_with_labels(labelled, energy=lambda e: e * 1000)) + "\n")
    (folder / "x1000.yaml").write_text(
        TRAIN_CONFIG.format(output="x1000_run")
        .replace("labels_ev.xyz", "energies_x1000.xyz")
        .replace("[2, 1, 1]", "[16, 4, 4]")
    )
    swapped = [line.replace("pos:R:3:forces:R:3", "forces:R:3:pos:R:3") for line in labelled]
    (folder / "swapped.xyz").write_text("\n".join(swapped) + "\n")
    flat = [line.replace("pos:R:3", "pos:R:2") for line in labelled]
    (folder / "pos_two.xyz").write_text("\n".join(flat) + "\n")
    (folder / "no_task.yaml").write_text("data:\n  data_dir: data\noutput: run\n")
    (folder / "utf16.xyz").write_text(EMBEDDED_XYZ.read_text(), encoding="utf-16")  # Notepad's "Unicode"
    latin = EMBEDDED_XYZ.read_text().split("\n", 2)
    (folder / "latin1.xyz").write_bytes("\n".join([latin[0], "aspirin, café", latin[2]]).encode("latin-1"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    _files(folder)
    return folder


@pytest.fixture
def workdir(inputs, tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "work"
    subprocess.run(["cp", "-a", str(inputs), str(folder)], check=True)
    monkeypatch.chdir(folder)
    return folder


MD = ["md", "--platform", "CPU", "--no-minimize"]
NBODY = ["forecast", "--task", "nbody", "--output", "f.npz"]

#: (argv, words the message must hold): every case is refused with exit status 2.
CASES = {
    # Outputs that would destroy an input or each other, or cannot be written.
    "csv-is-structure": (MD + ["--structure", "mol.xyz", "--dcd", "mol.dcd", "--csv", "mol.xyz"], "must end in .csv"),
    "csv-is-dcd": (MD + ["--structure", "mol.xyz", "--dcd", "a.dcd", "--csv", "a.dcd"], "must end in .csv"),
    "dcd-named-pdb": (MD + ["--structure", "mol.xyz", "--dcd", "out.pdb"], "must end in .dcd"),
    "dcd-is-a-folder": (MD + ["--structure", "mol.xyz", "--dcd", "out.dcd"], "is a directory"),
    "topology-is-structure": (MD + ["--structure", "mol.pdb", "--dcd", "mol.dcd"], "destroy the input"),
    "png-named-csv": (MD + ["--structure", "mol.xyz", "--dcd", "a.dcd", "--png", "a.csv"], "must end in .png"),
    "dcd-under-a-file": (MD + ["--structure", "mol.xyz", "--dcd", "notes.txt/a.dcd"], "not a directory"),
    # Numbers.
    "timestep-100fs": (MD + ["--dcd", "a.dcd", "--timestep-fs", "100"], "blow apart"),
    "timestep-negative": (MD + ["--dcd", "a.dcd", "--timestep-fs", "-1"], "time step must be positive"),
    "timestep-nan": (MD + ["--dcd", "a.dcd", "--timestep-fs", "nan"], "finite"),
    "timestep-zero-with-time": (MD + ["--dcd", "a.dcd", "--timestep-fs", "0", "--time-ps", "1"], "--timestep-fs"),
    "temperature-1e9": (MD + ["--dcd", "a.dcd", "--temperature", "1e9"], "temperature in kelvin"),
    "temperature-negative": (MD + ["--dcd", "a.dcd", "--temperature", "-5"], "0 K or more"),
    "temperature-inf": (MD + ["--dcd", "a.dcd", "--temperature", "inf"], "finite"),
    "friction-negative": (MD + ["--dcd", "a.dcd", "--friction", "-1"], "friction must be"),
    "friction-huge": (MD + ["--dcd", "a.dcd", "--friction", "1e9"], "overdamped"),
    "time-inf": (MD + ["--dcd", "a.dcd", "--time-ps", "inf"], "--time-ps must be a positive"),
    "time-negative": (MD + ["--dcd", "a.dcd", "--time-ps", "-2"], "--time-ps must be a positive"),
    "time-below-one-step": (MD + ["--dcd", "a.dcd", "--time-ps", "1e-7"], "less than one step"),
    "report-interval-above-steps": (
        MD + ["--dcd", "a.dcd", "--steps", "10", "--report-interval", "100"],
        "no frame",
    ),
    "seed-zero": (MD + ["--dcd", "a.dcd", "--seed", "0"], "seed must be an integer from 1"),
    "seed-too-large": (MD + ["--dcd", "a.dcd", "--seed", "99999999999"], "seed must be an integer from 1"),
    # Structures.
    "structure-missing": (MD + ["--structure", "missing.xyz", "--dcd", "a.dcd"], "no such structure file"),
    "structure-binary-xyz": (MD + ["--structure", "garbage.xyz", "--dcd", "a.dcd"], "garbage.xyz: not a text file"),
    "structure-binary-pdb": (MD + ["--structure", "garbage.pdb", "--dcd", "a.dcd"], "garbage.pdb: not a text file"),
    "structure-empty-pdb": (MD + ["--structure", "empty.pdb", "--dcd", "a.dcd"], "empty.pdb: no ATOM"),
    "structure-text-pdb": (MD + ["--structure", "text.pdb", "--dcd", "a.dcd"], "text.pdb: no ATOM"),
    "xyz-count-too-small": (MD + ["--structure", "short_count.xyz", "--dcd", "a.dcd"], "correct the count"),
    "xyz-count-too-large": (MD + ["--structure", "long_count.xyz", "--dcd", "a.dcd"], "30 atoms announced"),
    "xyz-no-atoms": (MD + ["--structure", "zero.xyz", "--dcd", "a.dcd"], "needs atoms"),
    "xyz-unknown-element": (MD + ["--structure", "unknown_element.xyz", "--dcd", "a.dcd"], "unknown element"),
    "xyz-nan": (MD + ["--structure", "nan.xyz", "--dcd", "a.dcd"], "NaN"),
    "structure-mol2": (MD + ["--structure", "molecule.mol2", "--dcd", "a.dcd"], "unknown structure format"),
    "xyz-overlapping-atoms": (MD + ["--structure", "overlapping.xyz", "--dcd", "a.dcd"], "atoms 0 and 1 are 0 Å apart"),
    "structure-is-a-folder": (MD + ["--structure", "damaged", "--dcd", "a.dcd"], "damaged is a directory; give a"),
    "steps-beyond-dcd": (MD + ["--dcd", "a.dcd", "--steps", str(10**23)], "32-bit"),
    "time-beyond-dcd": (MD + ["--dcd", "a.dcd", "--time-ps", "1e300"], "32-bit"),
    "model-name-shadowed-by-a-file": (
        MD + ["--model", "sake", "--dcd", "a.dcd"],
        "'sake' names both an embedded model and a file here; give ./sake",
    ),
    # Fifth battery.
    "csv-is-a-device": (MD + ["--dcd", "a.dcd", "--csv", "sink.csv"], "exists and is not a regular file"),
    "export-into-the-package": (
        ["export", "default", "--output", str(EMBEDDED_XYZ.parent / "aspirin_sake.pt")],
        "inside the installed attnforce package",
    ),
    "dcd-path-not-ascii": (MD + ["--dcd", "résultats finals/traj ☃.dcd"], "takes only ASCII paths"),
    "structure-in-bohr": (
        MD + ["--structure", "aspirin_bohr.xyz", "--dcd", "a.dcd"],
        "no two atoms are within bonding",
    ),
    "structure-in-pm": (MD + ["--structure", "aspirin_pm.xyz", "--dcd", "a.dcd"], "not in Å (bohr, nm or pm?)"),
    "structure-partly-periodic": (MD + ["--structure", "slab.xyz", "--dcd", "a.dcd"], "pbc='T T F'"),
    "structure-is-a-pipe": (MD + ["--structure", "pipe.xyz", "--dcd", "a.dcd"], "pipe.xyz is not a regular file"),
    "model-in-other-units": (MD + ["--model", "nm_model.pt", "--dcd", "a.dcd"], "attnforce models work in"),
    "model-a-million-layers": (
        MD + ["--model", "deep_model.pt", "--dcd", "a.dcd"],
        "num_layers must be an integer from 1 to 64",
    ),
    "evaluate-data-in-bohr": (
        ["evaluate", "default", "labels_bohr.xyz", "--energy-unit", "eV"],
        "labels_bohr.xyz, frame 0: no two atoms are within bonding distance",
    ),
    "evaluate-fractional-atomic-numbers": (
        ["evaluate", "default", "z_float.npz", "--energy-unit", "kcal/mol", "--split", "all"],
        "atomic numbers must be integers",
    ),
    "forecast-npy-as-initial": (NBODY + ["--initial", "array_as.npz"], "a single .npy array, not an .npz archive"),
    # Sixth battery.
    "train-wrong-energy-unit": (["train", "train_wrong_unit.yaml"], "check the energy unit (eV would give"),
    "train-data-in-bohr": (["train", "train_in_bohr.yaml"], "frame 0: no two atoms are within bonding distance"),
    "evaluate-periodic-data": (
        ["evaluate", "equiformer", "labels_box.xyz", "--energy-unit", "eV"],
        "a periodic frame (Lattice=...)",
    ),
    "evaluate-last-frame-in-bohr": (
        ["evaluate", "default", "labels_last_in_bohr.xyz", "--energy-unit", "eV"],
        "labels_last_in_bohr.xyz, frame 3: no two atoms are within bonding distance",
    ),
    "evaluate-complex-positions": (
        ["evaluate", "default", "complex_positions.npz", "--energy-unit", "kcal/mol", "--split", "all"],
        "positions hold complex128 values",
    ),
    "structure-periodic-fused": (
        MD + ["--structure", "box_fused.xyz", "--model", "equiformer", "--dcd", "a.dcd"],
        "atoms 0 and 1 are 0 Å apart",
    ),
    "forecast-bonds-out-of-range": (
        ["forecast", "--task", "walking", "--model", "bad_bonds.pt", "--output", "f.npz"],
        "bad_bonds.pt: its task's bonds join particles outside its 31 particles",
    ),
    "forecast-too-many-systems-for-a-dcd": (NBODY + ["--initial", "many.npz", "--dcd", "m.dcd"], "more than a viewer"),
    "model-plain-pickle": (MD + ["--model", "plain_pickle.pt", "--dcd", "a.dcd"], "a plain pickle"),
    "timestep-denormal": (MD + ["--dcd", "a.dcd", "--timestep-fs", "1e-300"], "nothing measurable"),
    "csv-hard-link-to-model": (
        MD + ["--model", "model.pt", "--dcd", "a.dcd", "--csv", "model_link.csv"],
        "destroy the input",
    ),
    "model-is-a-learned-integrator": (
        MD + ["--model", str(resolve_model_path("default").parent / "nbody_sake.pt"), "--dcd", "a.dcd"],
        "a learned integrator",
    ),
    "model-nan-weights": (MD + ["--model", "nan_weights.pt", "--dcd", "a.dcd"], "NaN or infinite"),
    "model-fake-torchscript": (
        MD + ["--model", "fake_export.pt", "--trust-torchscript", "--dcd", "a.dcd"],
        "cannot load this TorchScript",
    ),
    "model-untrusted-torchscript": (
        MD + ["--model", "fake_export.pt", "--dcd", "a.dcd"],
        "fake_export.pt is an exported TorchScript file, a program that runs with your permissions",
    ),
    "export-output-txt": (["export", "default", "--output", "model.txt"], "must end in .pt"),
    "evaluate-json-txt": (["evaluate", "default", "labels_ev.xyz", "--json", "report.txt"], "must end in .json"),
    "train-resume-damaged-state": (["train", "train.yaml", "--resume", "--output", "damaged"], "damaged training"),
    "train-nan-in-first-epoch": (["train", "exploding.yaml"], "No epoch had finished"),
    "train-running-three-trials": (["train", "three_trials.yaml"], "running split uses 11"),
    "train-running-nan-trial": (["train", "nan_trial.yaml"], "NaN"),
    "train-running-bonds-out-of-range": (["train", "bonds_out_of_range.yaml"], "bonds must join joints"),
    "train-running-short-trials": (["train", "short_trials.yaml"], "no samples"),
    "element-the-model-lacks": (MD + ["--structure", "nitrogen.xyz", "--dcd", "a.dcd"], "N"),
    # Models.
    "model-missing": (MD + ["--model", "missing.pt", "--dcd", "a.dcd"], "no such model file"),
    "model-garbage": (MD + ["--model", "garbage.pt", "--dcd", "a.dcd"], "not a readable attnforce model"),
    "model-crafted-pickle": (MD + ["--model", "crafted.pt", "--dcd", "a.dcd"], "never unpickles"),
    "model-tampered-elements": (MD + ["--model", "tampered.pt", "--dcd", "a.dcd"], "not trained on"),
    "platform-unknown": (MD + ["--dcd", "a.dcd", "--steps", "2", "--platform", "Quantum"], "not available"),
    "export-over-model": (["export", "model.pt", "--output", "model.pt"], "destroy the input"),
    "export-to-folder": (["export", "default", "--output", "folder.pt"], "is a directory"),
    "export-over-structure": (["export", "default", "--structure", "mol.pdb", "--output", "mol.pdb"], "end in .pt"),
    "export-crafted": (["export", "crafted.pt", "--output", "x.pt"], "never unpickles"),
    "info-crafted": (["info", "crafted.pt"], "never unpickles"),
    # Evaluation.
    "evaluate-json-folder": (
        ["evaluate", "default", "labels_ev.xyz", "--energy-unit", "eV", "--json", "folder.json"],
        "is a directory",
    ),
    "evaluate-json-is-model": (
        ["evaluate", "model.json", "labels_ev.xyz", "--json", "model.json"],
        "destroy the input",
    ),
    "evaluate-json-data-xyz": (["evaluate", "default", "labels_ev.xyz", "--json", "labels_ev.xyz"], "end in .json"),
    # Ninth round.
    "md-model-foreign-zip": (MD + ["--model", "notorch.pt", "--dcd", "a.dcd"], "a zip archive but not a torch.save"),
    "md-model-npz": (MD + ["--model", "arrays.npz", "--dcd", "a.dcd"], "a NumPy .npz archive, not a torch.save"),
    "md-model-without-metadata": (MD + ["--model", "no_metadata.pt", "--dcd", "a.dcd"], "this one lacks metadata"),
    "evaluate-altered-energy-scale": (
        ["evaluate", "scaled.pt", "labels_ev.xyz", "--energy-unit", "eV"],
        "scaled.pt: its forces on labels_ev.xyz have an RMS of",
    ),
    "evaluate-placeholder-energies": (
        ["evaluate", "default", "labels_zero_energy.xyz", "--energy-unit", "eV"],
        "every frame's energy is 0 eV, while its forces say the frames' energies differ",
    ),
    "md-beyond-the-free-memory": (
        MD + ["--structure", "big.xyz", "--dcd", "a.dcd"],
        "21952 atoms (4.82e+08 atom pairs, all pairs: the model has no cutoff) need about",
    ),
    # Tenth round.
    "md-pdb-names-shared": (
        MD + ["--structure", "same_names.pdb", "--dcd", "a.dcd"],
        "21 ATOM/HETATM records, but OpenMM's reader kept 3 atoms",
    ),
    "md-pdb-cut-mid-record": (MD + ["--structure", "cut.pdb", "--dcd", "a.dcd"], "cut short before its coordinates"),
    "md-coordinates-1e300": (MD + ["--structure", "far.xyz", "--dcd", "a.dcd"], "coordinates reach 1e+300 Å, beyond"),
    "evaluate-energy-key-twice": (
        ["evaluate", "default", "energy_twice.xyz", "--energy-unit", "eV"],
        "energy_twice.xyz, line 2: energy= is given twice",
    ),
    "evaluate-open-quote": (
        ["evaluate", "default", "open_quote.xyz", "--energy-unit", "eV"],
        "open_quote.xyz, line 2: No closing quotation in the comment line",
    ),
    "train-config-without-data-path": (["train", "no_path.yaml"], "no_path.yaml.data: missing the required key(s)"),
    "evaluate-forces-not-physical": (
        ["evaluate", "default", "labels_huge_forces.xyz", "--energy-unit", "eV"],
        "the forces are not physical",
    ),
    "evaluate-energies-not-physical": (
        ["evaluate", "default", "labels_huge_energies.xyz", "--energy-unit", "eV"],
        "the energies are not physical",
    ),
    "evaluate-unit-told-by-force-size": (
        ["evaluate", "default", "labels_unrelated.xyz", "--energy-unit", "kcal/mol"],
        "the model's on the same frames is",
    ),
    "evaluate-ev-read-as-mev": (
        ["evaluate", "default", "labels_ev.xyz", "--bootstrap", "10"],
        "check the energy unit (eV would give",
    ),
    "evaluate-exported-file": (
        ["evaluate", "real_export.pt", "labels_ev.xyz", "--energy-unit", "eV"],
        "an exported TorchScript file",
    ),
    "evaluate-empty-db": (["evaluate", "default", "empty.db", "--energy-unit", "eV"], "empty file"),
    "evaluate-sqlite-not-ase": (
        ["evaluate", "default", "other.db", "--energy-unit", "eV"],
        "not a readable ASE database",
    ),
    "evaluate-empty-unit": (["evaluate", "default", "labels_ev.xyz", "--energy-unit", ""], "unknown energy unit"),
    "forecast-negative-noise": (
        ["forecast", "--task", "nbody", "--initial", "one_system.npz", "--ensemble", "2", "--noise", "-1"]
        + ["--output", "f.npz"],
        "standard deviation",
    ),
    "evaluate-binary-data": (["evaluate", "default", "garbage.xyz", "--energy-unit", "eV"], "not a text file"),
    "evaluate-npz-garbage": (["evaluate", "default", "garbage.npz", "--energy-unit", "eV"], "not a readable .npz"),
    "evaluate-unknown-unit": (
        ["evaluate", "default", "labels_ev.xyz", "--energy-unit", "furlong"],
        "unknown energy unit",
    ),
    # Training.
    "train-binary-config": (["train", "garbage.yaml"], "garbage.yaml: not a text file"),
    "train-unknown-key": (["train", "unknown_key.yaml"], "surprise"),
    "train-learning-rate-zero": (["train", "lr_zero.yaml"], "learning_rate: must be a positive number"),
    "train-max-minutes-zero": (["train", "minutes_zero.yaml"], "max_minutes: must be a positive number"),
    "train-duplicate-key": (["train", "duplicate.yaml"], "given more than once"),
    "train-negative-cutoff": (["train", "negative_cutoff.yaml"], "cutoff must be a positive number"),
    "train-no-weights": (["train", "no_weights.yaml"], "nothing would be learned"),
    "train-split-negative": (["train", "split_negative.yaml"], "each positive or one of them -1"),
    "train-missing-config": (["train", "missing.yaml"], "no such config file"),
    "train-over-earlier-run": (["train", "train.yaml"], "already holds a run"),
    "train-resume-without-state": (["train", "train.yaml", "--resume"], "no last.pt"),
    "train-over-its-config": (["train", "config_in_run/config.yaml"], "destroy the input"),
    "train-output-is-a-file": (["train", "train.yaml", "--output", "notes.txt"], "not a directory"),
    # Learned integrators.
    "train-running-crafted-pickle": (
        ["train", "running.yaml"],
        "refused: it could run code",
    ),
    "forecast-no-systems": (
        NBODY + ["--initial", "no_systems.npz"],
        "nothing to forecast",
    ),
    "forecast-garbage-initial": (
        NBODY + ["--initial", "garbage.npz"],
        "not a readable .npz",
    ),
    "forecast-object-initial": (
        ["forecast", "--task", "walking", "--initial", "object.npz", "--output", "f.npz"],
        "not a readable .npz",
    ),
    "forecast-complex-initial": (
        NBODY + ["--initial", "complex.npz"],
        "expected real numbers",
    ),
    "forecast-nan-initial": (NBODY + ["--initial", "nan_state.npz"], "NaN"),
    "forecast-coincident-initial": (NBODY + ["--initial", "coincident.npz"], "particles 0 and 1 of system 0 coincide"),
    "forecast-huge-initial": (NBODY + ["--initial", "huge.npz"], "positions reach 1e+300, far beyond"),
    "forecast-fast-initial": (NBODY + ["--initial", "fast.npz"], "velocities reach 1e+08, far beyond"),
    "forecast-pickled-initial": (NBODY + ["--initial", "pickled.npz"], "pickled Python objects, which attnforce never"),
    "forecast-over-initial": (
        ["forecast", "--task", "nbody", "--initial", "one_system.npz", "--output", "one_system.npz"],
        "destroy the input",
    ),
    "forecast-output-folder": (["forecast", "--task", "nbody", "--output", "out.dcd"], "must end in .npz"),
    "forecast-dcd-named-pdb": (
        ["forecast", "--task", "nbody", "--output", "f.npz", "--dcd", "f.pdb"],
        "must end in .dcd",
    ),
    "forecast-horizons-1e8": (
        ["forecast", "--task", "nbody", "--initial", "one_system.npz", "--horizons", "100000000", "--output", "f.npz"],
        "GiB of memory is free",
    ),
    "forecast-horizons-1e6-test-set": (
        ["forecast", "--task", "nbody", "--horizons", "1000000", "--output", "f.npz"],
        "GiB of memory is free",
    ),
    # Seventh round.
    "info-preset-shadowed-by-file": (["info", "sake-md17"], "names both a preset and a file here"),
    "lattice-turned": (
        MD + ["--structure", "turned_box.xyz", "--dcd", "a.dcd"],
        "turned_box.xyz, line 2: Lattice='0 20 0 20 0 0 0 0 20': OpenMM takes a along x",
    ),
    "md-one-atom": (MD + ["--structure", "one_atom.xyz", "--dcd", "a.dcd"], "nothing for a learned potential"),
    "info-unknown-name": (["info", "equiformer-huge"], "is no file, embedded model or preset"),
    "evaluate-no-frames": (["evaluate", "default", "no_frames.npz", "--energy-unit", "eV"], "0 frames of 21 atoms"),
    "forecast-running-without-model": (
        ["forecast", "--task", "running", "--data-dir", "data", "--output", "f.npz"],
        "no embedded learned integrator for 'running'",
    ),
    "forecast-ensemble-1e9": (
        NBODY + ["--initial", "one_system.npz", "--ensemble", "1000000000"],
        "ensemble of 1000000000 member(s) each need about",
    ),
    "lattice-1e300": (MD + ["--structure", "huge_box.xyz", "--dcd", "a.dcd"], "huge_box.xyz, line 2: Lattice="),
    "yaml-billion-laughs": (["train", "laughs.yaml"], "laughs.yaml.data.path: expected str, got [['lol', 'lol',"),
    "yaml-nested-5000-deep": (["train", "deep.yaml"], "deep.yaml: values nested too deeply"),
    # Eleventh round.
    "train-energies-in-another-unit-than-forces": (
        ["train", "x1000.yaml"],
        "energies_x1000.xyz: its energies and forces are in different units",
    ),
    "evaluate-energies-in-another-unit-than-forces": (
        ["evaluate", "default", "energies_x1000.xyz", "--energy-unit", "meV"],
        "energies in meV with forces in eV/Å give 1e+03",
    ),
    "evaluate-properties-against-the-rows": (
        ["evaluate", "default", "swapped.xyz", "--energy-unit", "eV"],
        "swapped.xyz, line 2: Properties='species:S:1:forces:R:3:pos:R:3' contradicts the rows",
    ),
    "evaluate-positions-in-two-columns": (
        ["evaluate", "default", "pos_two.xyz", "--energy-unit", "eV"],
        "pos_two.xyz, line 2: Properties='species:S:1:pos:R:2:forces:R:3' declares pos:R:2",
    ),
    "train-integrator-config-without-task": (["train", "no_task.yaml"], "no_task.yaml.data: ['data_dir'] belong to"),
    # Twelfth round.
    "structure-in-utf16": (MD + ["--structure", "utf16.xyz", "--dcd", "a.dcd"], "utf16.xyz: UTF-16 text, which"),
    "structure-in-latin1": (
        MD + ["--structure", "latin1.xyz", "--dcd", "a.dcd"],
        "latin1.xyz: text in an encoding other than UTF-8 (byte 0xE9 on line 2, 'é' in Latin-1): save it as UTF-8",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_one_line_and_the_folder_unchanged(case, workdir, caplog, capsys):
    argv, words = CASES[case]
    before = snapshot(workdir)
    assert main(argv) == 2
    captured = capsys.readouterr()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and words in errors[0].getMessage(), caplog.text
    assert "\n" not in errors[0].getMessage() and len(errors[0].getMessage()) < 500
    assert "Traceback" not in caplog.text + captured.out + captured.err
    assert "weights_only=False" not in caplog.text and "weights_only` set to `False" not in caplog.text
    assert snapshot(workdir) == before
    assert not (workdir / MARKER).exists()


def test_a_plot_path_with_no_plot_is_a_contradiction(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(MD + ["--dcd", "a.dcd", "--png", "p.png", "--no-plot"])
    assert stopped.value.code == 2 and "--no-plot: not allowed with argument --png" in capsys.readouterr().err


def test_outputs_that_clash_are_refused_before_any_work(tmp_path):
    from attnforce.atomic import check_outputs

    (tmp_path / "in.pdb").write_text("x")
    with pytest.raises(ValueError, match="destroy the input"):
        check_outputs({"--out": tmp_path / "in.pdb"}, {"--structure": tmp_path / "in.pdb"})
    with pytest.raises(ValueError, match="are the same file"):
        check_outputs({"a": tmp_path / "x.csv", "b": tmp_path / "sub" / ".." / "x.csv"})
    check_outputs({"a": tmp_path / "new" / "x.csv"}, {"missing input": tmp_path / "none.xyz", "embedded": None})


@pytest.mark.parametrize(
    "atoms, words",
    [([], "atoms is empty"), ([0.5], "integer atom indices"), ([0, 0], "more than once"), ([99], "outside")],
)
def test_add_force_refuses_bad_atom_lists(atoms, words):
    import openmm

    from attnforce.openmm.force import add_force

    molecule = load_molecule(EMBEDDED_XYZ)
    system = openmm.System()
    for atom in molecule.topology.atoms():
        system.addParticle(atom.element.mass)
    with pytest.raises(ValueError, match=words):
        add_force(system, molecule.topology, "default", atoms=atoms)
    assert system.getNumForces() == 0


def test_crafted_pickles_run_no_code(tmp_path):
    from systems.forecasting import running_trials
    from systems.restricted_pickle import load_array_pickle

    _crafted_model(tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match="never unpickles") as refused:
        load_model(tmp_path / "crafted.pt")
    assert "posix.system" in str(refused.value) and "weights_only" not in str(refused.value)
    _crafted_motion_pickle(tmp_path)
    with pytest.raises(ValueError, match="posix.system"):
        running_trials(tmp_path / "data" / "eghn_motion" / "motion_run.pkl")
    assert not (tmp_path / MARKER).exists()
    arrays = ([[1, 0]], [np.arange(6.0).reshape(1, 2, 3)], {"n": 3})
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(arrays))
    loaded = load_array_pickle(tmp_path / "plain.pkl")
    assert loaded[0] == [[1, 0]] and np.array_equal(loaded[1][0], arrays[1][0]) and loaded[2] == {"n": 3}


@pytest.mark.parametrize(
    "error, words",
    [
        (PermissionError(13, "Permission denied", "/x/out.dcd"), "/x/out.dcd: Permission denied; check its"),
        (IsADirectoryError(21, "Is a directory", "out.csv"), "out.csv: Is a directory; give a file name"),
        (MemoryError(), "out of memory; ask for less"),
        (OverflowError("Python int too large to convert to C int"), "unexpected OverflowError"),
        (ZeroDivisionError("float division by zero"), "--debug"),
        (RuntimeError("The following operation failed\nframe #0: c10::Error"), "(--debug shows the details)"),
    ],
)
def test_every_error_becomes_one_line(error, words, monkeypatch, caplog):
    import attnforce.cli

    def fail(args):
        raise error

    monkeypatch.setattr(attnforce.cli, "_info", fail)
    assert main(["info"]) == 2
    assert words in caplog.text and "Traceback" not in caplog.text
    assert "\n" not in describe_error(error)
    with pytest.raises(type(error)):
        main(["--debug", "info"])


def test_openmm_exception_is_one_line():
    import openmm

    assert describe_error(openmm.OpenMMException("Particle coordinate is NaN.\nmore")) == (
        "OpenMM: Particle coordinate is NaN."
    )


def test_simtk_deprecation_notice_is_filtered_and_other_warnings_stand():
    script = "import logging, attnforce.openmm.force; logging.getLogger('x').warning('a real warning')"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "simtk" not in done.stderr and "a real warning" in done.stderr


def test_evaluate_warns_about_a_molecule_the_model_never_saw(workdir, caplog):
    lines = (workdir / "labels_ev.xyz").read_text().splitlines()
    frames = [lines[k : k + 23] for k in range(0, len(lines), 23)]
    ethanol_like = []
    for frame in frames:  # drop aspirin's last 2 hydrogens: same elements, another molecule
        ethanol_like += ["19", frame[1]] + frame[2:21]
    (workdir / "other.xyz").write_text("\n".join(ethanol_like) + "\n")
    assert main(["evaluate", "default", "other.xyz", "--energy-unit", "eV", "--bootstrap", "10"]) == 0
    assert "never saw" in caplog.text and "C9H6O4" in caplog.text


def test_evaluate_tells_scaled_energies_from_shifted_ones(workdir, caplog):
    """Too few frames for the energy-force check: energies 1000 times the model's are called scaled (another unit),
    energies a constant 2 eV per atom away another zero of energy, and labels of the model's own scale neither."""
    labelled = (workdir / "labels_ev.xyz").read_text().splitlines()
    (workdir / "scaled.xyz").write_text("\n".join(_with_labels(labelled, energy=lambda e: e * 1000)) + "\n")
    (workdir / "shifted.xyz").write_text("\n".join(_with_labels(labelled, energy=lambda e: e + 42.0)) + "\n")
    said = {}
    for name in ("labels_ev.xyz", "scaled.xyz", "shifted.xyz"):
        caplog.clear()
        assert main(["evaluate", "default", name, "--energy-unit", "eV", "--bootstrap", "10"]) == 0
        said[name] = caplog.text
    assert "scaled" not in said["labels_ev.xyz"] and "zero of energy" not in said["labels_ev.xyz"]
    assert "they are scaled, most likely in another unit" in said["scaled.xyz"]
    assert "zero of energy" not in said["scaled.xyz"]
    assert "(+2 eV per atom, nearly constant): another zero of energy" in said["shifted.xyz"]
    assert "scaled" not in said["shifted.xyz"]


def test_killed_md_leaves_no_partial_file(tmp_path):
    """SIGKILL mid-run: the process's watcher removes its temporary files (the writer cannot: SIGKILL is not caught),
    and the next run with the same outputs succeeds."""
    command = [sys.executable, "-m", "attnforce.cli", "md", "--platform", "CPU", "--no-minimize", "--dcd", "md.dcd"]
    killed = subprocess.Popen([*command, "--steps", "100000"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".md.*.partial.csv")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # mid-run: the DCD and CSV are being written
    assert len(list(tmp_path.glob(".md.*.partial.*"))) >= 3  # being written
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    deadline = time.monotonic() + 30
    while list(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.iterdir()) == [], killed.stderr.read()  # nothing under the final or temporary names
    done = subprocess.run([*command, "--steps", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.csv", "md.dcd", "md.pdb", "md.png"]


def test_partial_files_of_a_live_writer_are_kept(tmp_path):
    from attnforce.atomic import atomic_output

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".out.{sleeper.pid}-abcdefgh.partial.csv"
        live.write_text("another process is writing this")
        dead = tmp_path / ".out.999999999-abcdefgh.partial.csv"  # beyond any process id
        dead.write_text("left by a killed run")
        with atomic_output(tmp_path / "out.csv") as tmp:
            tmp.write_text("new")
        assert live.exists() and not dead.exists() and (tmp_path / "out.csv").read_text() == "new"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_md_blow_up_names_its_likely_causes(tmp_path):
    from integrators.md import run_md

    with pytest.raises(FloatingPointError, match="Likely causes: the time step"):
        run_md(
            "default",
            "default",
            400,
            tmp_path / "hot.dcd",
            timestep_fs=8.0,  # legal (with a warning), and unstable for aspirin without constraints
            temperature_k=300.0,
            report_interval=20,
            minimize=False,
            platform="CPU",
            seed=1,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_terminated_md_removes_its_partial_files(tmp_path, stop):
    """``kill PID`` (SIGTERM) or a closed terminal (SIGHUP) mid-run: exit 128 + the signal, one line, and none of
    the run's temporary files left."""
    command = [sys.executable, "-m", "attnforce.cli", "md", "--platform", "CPU", "--no-minimize", "--dcd", "md.dcd"]
    run = subprocess.Popen([*command, "--steps", "100000"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".md.*.partial.csv")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    run.send_signal(stop)
    assert run.wait(timeout=60) == 128 + stop
    assert f"terminated ({stop.name})" in run.stderr.read()
    assert list(tmp_path.iterdir()) == []


#: A command stuck in C++ with stop signals blocked in its main thread, so that Python's handler never runs (as in
#: OpenMM's minimiser, which holds a signal's handler until it returns): it has started an output and says so.
_STUCK_IN_CPP = """
import ctypes, signal, sys
import attnforce.cli
from attnforce.atomic import atomic_output

def stuck(args):
    with atomic_output("out.csv") as tmp:
        tmp.write_text("half of a table")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        print("ready", flush=True)
        ctypes.CDLL(None).sleep(60)

attnforce.cli._info = stuck
sys.exit(attnforce.cli.main(["info"]))
"""


def test_a_stop_signal_ends_a_command_stuck_in_cpp(tmp_path):
    """SIGTERM while C++ holds the handler back: the stop watch removes the started output and ends the process
    STOP_GRACE_S later with 128 + SIGTERM and one line, instead of after the C++ returns."""
    from attnforce.cli import STOP_GRACE_S

    run = subprocess.Popen(
        [sys.executable, "-c", _STUCK_IN_CPP], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert run.stdout.readline() == "ready\n", run.stderr.read()
    assert [p.name for p in tmp_path.iterdir() if ".partial." in p.name]  # the output is being written
    sent = time.monotonic()
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=40) == 128 + signal.SIGTERM
    waited = time.monotonic() - sent
    stderr = run.stderr.read()
    assert "terminated (SIGTERM); outputs not finished were removed" in stderr and "Traceback" not in stderr
    assert STOP_GRACE_S <= waited < 40  # the watch ended it, not the end of the 60 s sleep
    assert list(tmp_path.iterdir()) == []


def test_a_stop_signal_wrapped_by_a_library_is_still_a_stop(monkeypatch, caplog):
    """A library that turns the signal's exception into its own (as a failed import's ``__set_name__`` does): the
    command still ends as stopped, with the signal's status, not as a failure of that library."""
    import attnforce.cli

    def wrapped(args):
        try:
            signal.raise_signal(signal.SIGTERM)
        except BaseException as error:
            raise RuntimeError("Error calling __set_name__") from error

    monkeypatch.setattr(attnforce.cli, "_info", wrapped)
    assert main(["info"]) == 128 + signal.SIGTERM
    assert "terminated (SIGTERM)" in caplog.text and "__set_name__" not in caplog.text


def test_ctrl_c_while_the_command_line_loads_is_one_line(tmp_path):
    """Ctrl-C during the imports, before ``main`` runs: one line and 130, not the traceback of an import."""
    script = (  # Python's own Ctrl-C handler, even where the test runs with SIGINT ignored (a background job)
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv[0] = 'attnforce'; "
        "import attnforce; signal.raise_signal(signal.SIGINT)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr.strip() == "ERROR attnforce: interrupted", done.stderr


def test_closed_and_broken_standard_output(tmp_path):
    """Results printed to a closed standard output would be lost: refused. A reader that stops early (``| head``)
    is normal use: exit 0 and no error."""
    attnforce = [sys.executable, "-m", "attnforce.cli"]
    closed = subprocess.run([*attnforce, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert closed.returncode == 0  # the control: DEVNULL is open
    shell = f"{' '.join(attnforce)} info >&-"
    closed = subprocess.run(shell, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert closed.returncode == 2 and "standard output is closed" in closed.stderr
    piped = subprocess.run(
        f"{' '.join(attnforce)} info | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert piped.returncode == 0 and "Broken pipe" not in piped.stderr and "Traceback" not in piped.stderr
    ascii_only = subprocess.run(
        [*attnforce, "info"],
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert ascii_only.returncode == 0 and b"meV/?" in ascii_only.stdout  # "Å" replaced, not a failed run


def test_legal_long_names_bom_and_legacy_files_are_read(tmp_path):
    """Legal inputs the checks must not refuse: a 250-character output name, an XYZ with a byte-order mark, and a
    model saved in PyTorch's legacy (pre-1.6) format, which the weights-only reader still reads safely."""
    from attnforce.atomic import atomic_output

    long_name = tmp_path / ("a" * 246 + ".csv")
    with atomic_output(long_name) as partial:
        partial.write_text("x")
    assert long_name.read_text() == "x"
    bom = tmp_path / "bom.xyz"
    bom.write_bytes(b"\xef\xbb\xbf" + EMBEDDED_XYZ.read_bytes())
    assert load_molecule(bom).atomic_numbers == load_molecule(EMBEDDED_XYZ).atomic_numbers
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    torch.save(stored, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert load_model(tmp_path / "legacy.pt").architecture == "sake"


def test_failed_output_removes_the_folders_it_made(tmp_path):
    from attnforce.atomic import atomic_output

    with pytest.raises(RuntimeError), atomic_output(tmp_path / "new" / "deeper" / "x.csv") as partial:
        partial.write_text("half")
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []


def test_ase_calculator_refuses_fused_atoms_and_non_finite_results():
    from ase import Atoms

    from attnforce.calculator import AttnforceCalculator

    molecule = load_molecule(EMBEDDED_XYZ)
    positions = molecule.positions.copy()
    positions[1] = positions[0]
    atoms = Atoms(numbers=molecule.atomic_numbers, positions=positions, calculator=AttnforceCalculator("default"))
    with pytest.raises(ValueError, match="atoms 0 and 1 are 0 Å apart"):
        atoms.get_potential_energy()


def test_third_battery_run_folders_package_and_bombs(tmp_path):
    """Links inside a run folder (a resumed run would write through them), run folders and outputs inside the
    installed package, unsupported dtypes, a pickle whose lists share references 2^60 ways, and a YAML mapping of
    20,000 keys (checked for repeats in linear time)."""
    from attnforce.atomic import PACKAGE, atomic_output
    from systems.forecasting import running_trials
    from training.config import load_config
    from training.loop import check_run_directory

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"kind": "training_state"}, run / "last.pt")
    (tmp_path / "victim.txt").write_text("mine")
    (run / "metrics.csv").symlink_to(tmp_path / "victim.txt")
    with pytest.raises(ValueError, match="metrics.csv link to other files"):
        check_run_directory(run, resume=True)
    (run / "metrics.csv").unlink()
    (run / "config.yaml").symlink_to(tmp_path / "nowhere.yaml")  # dangling: a fresh run would create it outside
    with pytest.raises(ValueError, match="config.yaml link to other files"):
        check_run_directory(run, resume=False)
    with pytest.raises(ValueError, match="inside the installed attnforce package"):
        check_run_directory(PACKAGE / "data", resume=True)
    with (
        pytest.raises(ValueError, match="inside the installed attnforce package"),
        atomic_output(PACKAGE / "data" / "aspirin_sake.pt"),
    ):
        pass
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model("default", torch.float16)
    inner: list = [1.0]
    for _ in range(60):
        inner = [inner, inner]
    (tmp_path / "bomb.pkl").write_bytes(pickle.dumps(([[0, 1]], [inner])))
    with pytest.raises(ValueError, match="trials must be NumPy arrays"):
        running_trials(tmp_path / "bomb.pkl")
    many = tmp_path / "many.yaml"
    many.write_text("data:\n" + "".join(f"  k{i}: {i}\n" for i in range(20_000)))
    with pytest.raises(ValueError, match="k0"):
        load_config(many)  # unknown keys, named, after the repeat check


def test_train_output_option_must_name_a_folder(workdir, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "train.yaml", "--output", " "])
    assert stop.value.code == 2 and "argument --output: ' ' is empty: give a file name" in capsys.readouterr().err


def test_seventh_round_boxes_translations_links_and_streams(tmp_path):
    """A periodic topology added to a System that kept OpenMM's default box; a float32 model 1e5 Å from the origin
    (positions are centred in float64 first); a failed output under ``link/..`` (the folders made are removed
    where they physically are); a comment line holding U+2028 (a line break for ``str.splitlines`` only)."""
    import openmm
    from openmm import app, unit

    from attnforce.atomic import atomic_output
    from attnforce.calculator import AttnforceCalculator
    from attnforce.openmm.force import add_force
    from attnforce.openmm.module import OpenMMModule

    molecule = load_molecule(EMBEDDED_XYZ)
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for atom in molecule.topology.atoms():
        topology.addAtom(atom.name, atom.element, residue)
    topology.setPeriodicBoxVectors([openmm.Vec3(3, 0, 0), openmm.Vec3(0, 3, 0), openmm.Vec3(0, 0, 3)] * unit.nanometer)
    system = openmm.System()
    for atom in topology.atoms():
        system.addParticle(atom.element.mass)
    with pytest.raises(ValueError, match=r"periodic box \(3x3x3 nm\) is not the System's default box \(2x2x2 nm\)"):
        add_force(system, topology, "equiformer")
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    assert add_force(system, topology, "equiformer") == 0

    saved = load_model("default")  # float32
    module = OpenMMModule(saved.potential, torch.tensor(molecule.atomic_numbers), torch.arange(21))
    nm = torch.tensor(molecule.positions, dtype=torch.float64) / 10
    with torch.no_grad():
        near, far = float(module(nm)), float(module(nm + 1e4))  # 1e4 nm = 1e5 Å: float32 spacing there is 0.008 Å
    assert abs(near - far) < 0.05  # kJ/mol; 146 kJ/mol before the centring (1e6 Å)
    from ase import Atoms

    atoms = Atoms(numbers=molecule.atomic_numbers, positions=molecule.positions, calculator=AttnforceCalculator())
    forces = atoms.get_forces()
    atoms.translate([1e5, -1e5, 1e5])
    assert np.abs(atoms.get_forces() - forces).max() < 1e-4  # eV/Å; 0.38 before
    atoms.pbc = True  # with ASE's default cell: all zeros
    with pytest.raises(ValueError, match="need a cell of positive volume"):
        atoms.get_potential_energy()

    (tmp_path / "target" / "inner").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to(tmp_path / "target" / "inner")
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "lnk" / ".." / "new" / "x.csv") as partial:
        partial.write_text("half")
        raise RuntimeError("the run failed")
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["inner"]  # no empty target/new left

    lines = _xyz_lines()
    (tmp_path / "sep.xyz").write_text("\n".join([lines[0], "aspirin \u2028 from \x0c a file"] + lines[2:]) + "\n")
    assert load_molecule(tmp_path / "sep.xyz").atomic_numbers == molecule.atomic_numbers


def test_closed_standard_error_loses_the_log_not_the_run(tmp_path):
    shell = f"{sys.executable} -m attnforce.cli md --platform CPU --no-minimize --steps 4 --dcd o.dcd 2>&-"
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "trajectory: o.dcd" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "o.dcd", "o.pdb", "o.png"]


@pytest.mark.parametrize(
    "command, words",
    [("train", "smaller batch_size"), ("evaluate", "--bootstrap"), ("forecast", "--horizons"), (None, "ask for less")],
)
def test_out_of_memory_names_the_command_s_options(command, words):
    assert words in describe_error(MemoryError(), command)


def test_fourth_battery_api_misuse_and_legal_files(tmp_path, caplog):
    """The fourth battery's API cases: a trust switch given as a string, an export over its own model, arguments
    of the wrong type, a GPU that is not there, a damaged weight; and legal files: a skewed lattice (reduced here),
    extended XYZ with its columns in another order, one frame to evaluate."""
    import openmm
    from openmm import app

    from attnforce.export import export_torchscript
    from attnforce.openmm.force import add_force, learned_force, load_force_model
    from systems import read_dataset
    from training.evaluation import bootstrap_metrics, predict
    from training.loop import usable_threads

    with pytest.raises(TypeError, match="trust_torchscript must be True or False, got 'no'"):
        load_force_model("default", trust_torchscript="no")
    stored = torch.load(resolve_model_path("default"), weights_only=True)
    torch.save(stored, tmp_path / "mine.pt")
    before = (tmp_path / "mine.pt").read_bytes()
    with pytest.raises(ValueError, match="would destroy the input"):
        export_torchscript(tmp_path / "mine.pt", tmp_path / "mine.pt")
    assert (tmp_path / "mine.pt").read_bytes() == before
    molecule = load_molecule(EMBEDDED_XYZ)
    with pytest.raises(TypeError, match="system must be an openmm.System, got NoneType"):
        add_force(None, molecule.topology, "default")
    with pytest.raises(TypeError, match="topology must be an openmm.app.Topology"):
        add_force(openmm.System(), "aspirin.xyz", "default")
    with pytest.raises(TypeError, match="model must be a path or an embedded model's name"):
        load_model(None)
    with pytest.raises(ValueError, match="CUDA device"):
        learned_force(molecule.topology, "default", backend="python", device=f"cuda:{torch.cuda.device_count()}")
    stored["state_dict"]["model.embedding.weight"] = torch.zeros(3, 3)
    torch.save(stored, tmp_path / "bad_shape.pt")
    with pytest.raises(ValueError, match="size mismatch for model.embedding.weight"):
        load_model(tmp_path / "bad_shape.pt")
    assert usable_threads(100_000) == len(os.sched_getaffinity(0))

    lines = _xyz_lines()
    (tmp_path / "skewed.xyz").write_text("\n".join([lines[0], 'Lattice="30 0 0 25 30 0 0 0 30"'] + lines[2:]) + "\n")
    box = load_molecule(tmp_path / "skewed.xyz").topology.getPeriodicBoxVectors()
    assert [round(x, 9) for x in box[1].value_in_unit(openmm.unit.angstrom)] == [-5.0, 30.0, 0.0]  # b - a
    rows = [line.split() for line in lines[2:]]
    swapped = [" ".join(row[1:4] + row[:1]) for row in rows]
    (tmp_path / "swapped.xyz").write_text("\n".join([lines[0], "Properties=pos:R:3:species:S:1"] + swapped) + "\n")
    np.testing.assert_array_equal(load_molecule(tmp_path / "swapped.xyz").positions, molecule.positions)
    assert isinstance(molecule.topology, app.Topology)

    _labelled_frames_in_ev(tmp_path / "one.xyz", frames=1)
    frames = read_dataset(tmp_path / "one.xyz", "eV")
    energies, forces = predict(load_model("default").potential, frames)
    result = bootstrap_metrics(energies, forces, frames, 100)
    assert all(value["low"] is None for value in result.values()) and "no bootstrap interval" in caplog.text


def test_whole_numbers_and_a_full_standard_output(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["md", "--steps", "1e3", "--dcd", "a.dcd"])
    assert "expected a whole number such as 1000 (not 1e3 or 1.5), got '1e3'" in capsys.readouterr().err
    done = subprocess.run(
        f"{sys.executable} -m attnforce.cli info > /dev/full", shell=True, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "standard output could not be written (No space left on device)" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounting a small tmpfs needs root on Linux")
def test_export_to_a_full_disk_is_one_line_not_an_abort(tmp_path):
    """torch's archive writer aborts the process (C++ terminate) when its destructor's write fails on a full disk;
    attnforce writes archives from memory, so the failure is one line and nothing is left."""
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "attnforce.cli", "export", "default", "--output", str(full / "o.pt")],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert result.returncode == 2, result.stderr[-2000:]
        assert "no space left" in result.stderr and "terminate called" not in result.stderr
        assert "frame #" not in result.stderr and "Traceback" not in result.stderr
        assert list(full.iterdir()) == []
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_a_forecast_whose_last_output_fails_leaves_none_of_its_outputs(workdir, monkeypatch, caplog):
    import errno

    import integrators.forecast_outputs

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    before = snapshot(workdir)
    argv = NBODY + ["--initial", "one_system.npz", "--dcd", "f.dcd", "--png", "f.png"]
    with monkeypatch.context() as patched:
        patched.setattr(integrators.forecast_outputs, "plot_forecast", full_disk)
        assert main(argv) == 2
    assert "no space left" in caplog.text.lower() and "Traceback" not in caplog.text
    assert snapshot(workdir) == before  # the NPZ, DCD and PDB written before the plot are gone too
    assert main(argv) == 0
    assert {"f.npz", "f.dcd", "f.pdb", "f.png"} <= {p.name for p in workdir.iterdir()}


def test_ninth_round_names_options_units_streams_and_limits(workdir, capsys, caplog):
    """Empty and over-long output names name their option; an ASE database is read in its format's eV; forces that
    read small in the stated unit are warned about; the calculator refuses no atoms; a PyTorch that cannot load
    (a memory limit) is one line from the command line."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    from attnforce.calculator import AttnforceCalculator
    from systems import read_dataset
    from training.statistics import check_data

    for name, words in (("", "argument --dcd: '' is empty: give a file name"), ("x" * 300 + ".dcd", "is 304 bytes")):
        with pytest.raises(SystemExit) as stop:
            main(MD + ["--dcd", name])
        assert stop.value.code == 2 and words in capsys.readouterr().err
    frames = read_dataset("labels_ev.xyz", "eV")
    with connect("labels.db") as database:
        for positions, energy, forces in zip(frames.positions, frames.energies, frames.forces, strict=True):
            atoms = Atoms(numbers=frames.atomic_numbers, positions=positions)
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            database.write(atoms)
    assert main(["evaluate", "default", "labels.db", "--bootstrap", "5"]) == 0  # no --energy-unit: ASE's eV
    assert "| force_mae_mev_per_a |" in capsys.readouterr().out
    caplog.clear()
    check_data(read_dataset("labels_ev.xyz", "kcal/mol"), "kcal/mol")
    assert "read in kcal/mol, its forces' RMS is" in caplog.text and "(eV would give" in caplog.text
    caplog.clear()
    check_data(frames, "eV")
    assert "forces' RMS" not in caplog.text
    empty = Atoms()
    empty.calc = AttnforceCalculator(str(EMBEDDED_XYZ.parent / "aspirin_sake.pt"))  # a file here is named sake
    with pytest.raises(ValueError, match="holds no atoms"):
        empty.get_potential_energy()
    command = Path(sys.executable).parent / "attnforce"
    if sys.platform == "linux" and command.exists():
        done = subprocess.run(
            ["bash", "-c", f"ulimit -v 1000000; {command} info"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith("ERROR attnforce: PyTorch could not be loaded (") and done.stderr.count("\n") == 1


def test_a_pdb_with_alternate_locations_is_read_as_openmm_reads_it(tmp_path):
    """Atoms at two alternate locations (A, B) are legal: OpenMM keeps the first, and so does the record count."""
    pdb = tmp_path / "mol.pdb"
    _write_pdb(pdb)
    lines = pdb.read_text().splitlines()
    located = []
    for line in lines:
        if line.startswith(("ATOM", "HETATM")):
            located += [line[:16] + "A" + line[17:], line[:16] + "B" + line[17:]]
        else:
            located.append(line)
    (tmp_path / "alternate.pdb").write_text("\n".join(located) + "\n")
    molecule = load_molecule(tmp_path / "alternate.pdb")
    np.testing.assert_allclose(molecule.positions, load_molecule(pdb).positions)


def test_energies_that_do_not_follow_their_forces_are_warned_about(caplog):
    """Energies shuffled between frames no longer match the forces' work between neighbouring frames."""
    from systems.frames import Frames
    from training.statistics import check_data, energy_force_agreement

    labelled = _model_labelled_aspirin(120, 0.03)
    rng = np.random.default_rng(1)
    shuffled = Frames(
        labelled.atomic_numbers, labelled.positions, rng.permutation(labelled.energies), labelled.forces, "shuffled.xyz"
    )
    exact, unrelated = energy_force_agreement(labelled), energy_force_agreement(shuffled)
    assert exact.compared == unrelated.compared == 60  # the closer half of 120 neighbour pairs
    assert exact.correlation > 0.8 and 0.5 < exact.scale < 2.0
    assert abs(unrelated.correlation) < 3 / np.sqrt(60)
    check_data(labelled, "eV")
    assert "do not follow" not in caplog.text
    check_data(shuffled, "eV")
    assert "shuffled.xyz: its energies do not follow its forces: over 60 pairs of neighbouring frames" in caplog.text


def test_sparse_frames_of_a_large_molecule_are_not_called_misaligned(aspirin_xyz, caplog):
    """100 frames spread over rMD17 aspirin's 1000 are far apart (0.4 Å RMSD to the nearest): over every pair
    their energies and work decorrelate (r = -0.01), over the closer half they do not (0.74)."""
    from systems.readers import read_dataset
    from training.statistics import check_data, energy_force_agreement

    frames = read_dataset(aspirin_xyz, "meV")
    sparse = frames.subset(frames.spread(100))
    agreement = energy_force_agreement(sparse)
    assert agreement.correlation > 3 / np.sqrt(agreement.compared) and 0.3 < agreement.scale < 1.1
    check_data(sparse, "meV")
    assert "do not follow" not in caplog.text


@pytest.mark.parametrize(
    "factor, reading",
    [
        (1000.0, "energies in meV with forces in eV/Å give 1e+03"),
        (1e-3, "energies in eV with forces in meV/Å give 0.001"),
        (96.485, "energies in kJ/mol with forces in eV/Å give 96.5"),
    ],
)
def test_energies_and_forces_in_different_units_are_refused(factor, reading):
    """Energies scaled against their forces (battery 8's U05: eV energies times 1000, declared eV, trained silently)
    are refused whatever unit is declared, with the readings that would give the measured factor."""
    from systems.frames import Frames
    from training.statistics import check_data

    labelled = _model_labelled_aspirin(40, 0.03)
    scaled = Frames(
        labelled.atomic_numbers, labelled.positions, labelled.energies * factor, labelled.forces, "scaled.xyz"
    )
    for declared in ("eV", "meV"):
        with pytest.raises(ValueError, match="scaled.xyz: its energies and forces are in different units") as error:
            check_data(scaled, declared)
        assert reading in str(error.value)


def test_eleventh_round_devices_atoms_and_a_file_size_limit(tmp_path):
    """The calculator names a device that is not there and atoms that are not Atoms; a DCD that reaches the
    shell's file-size limit (``ulimit -f``) is named with the limit, not mdtraj's "'dict' object is not callable",
    and leaves no output."""

    from attnforce.calculator import AttnforceCalculator

    with pytest.raises(ValueError, match=r"device 123 \(torch reads it as cuda:123\)"):
        AttnforceCalculator("sake", device=123 if not torch.cuda.device_count() > 123 else "cuda:999")
    with pytest.raises(ValueError, match="attnforce runs models on cpu or cuda devices"):
        AttnforceCalculator("sake", device="meta")
    with pytest.raises(TypeError, match="atoms must be an ase.Atoms, got str 'notatoms'"):
        AttnforceCalculator("sake").calculate("notatoms")

    (tmp_path / "mol.xyz").write_bytes(EMBEDDED_XYZ.read_bytes())
    limited = ["bash", "-c", 'ulimit -f 50 && exec "$0" "$@"', sys.executable]  # no fork hook in this threaded process
    result = subprocess.run(
        limited
        + ["-m", "attnforce.cli", "md", "--structure", "mol.xyz", "--steps", "3000", "--dcd", "run.dcd"]
        + ["--report-interval", "1", "--no-minimize", "--platform", "CPU"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "run.dcd reached this shell's file-size limit of 51200 bytes (ulimit -f)" in result.stderr
    assert "Traceback" not in result.stderr and "TypeError" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mol.xyz"]


def test_repeated_frames_say_nothing_of_the_energy_unit():
    """Twenty copies of one frame (battery 9's N11) have no neighbour to compare: the check passes them by, where
    it divided by zero."""
    from systems.frames import Frames
    from training.statistics import check_data, energy_force_agreement

    one = _model_labelled_aspirin(1, 0.03)
    repeated = Frames(
        one.atomic_numbers,
        np.repeat(one.positions, 20, axis=0),
        np.repeat(one.energies, 20),
        np.repeat(one.forces, 20, axis=0),
        "repeated.xyz",
    )
    assert energy_force_agreement(repeated).scale is None
    check_data(repeated, "eV")


def test_comment_lines_split_as_a_shell_would_and_long_ones_in_linear_time():
    """Battery 10's T28: a 10 MB comment line took shlex minutes (quadratic); the reader's own split agrees with
    shlex on extended-XYZ comment lines and reads that line at once (here as a plain comment: no key=value)."""
    import shlex

    from systems.readers import parse_extxyz_comment

    lines = ['energy=-1.5 Properties=species:S:1:pos:R:3 pbc="F F F"', "a \"b c\"d 'e f'", "", "  plain  comment "]
    for line in lines:
        expected = dict(token.split("=", 1) for token in shlex.split(line) if "=" in token)
        assert parse_extxyz_comment(line) == {key.lower(): value for key, value in expected.items()}
    with pytest.raises(ValueError, match="No closing quotation"):
        parse_extxyz_comment('pbc="F F')
    assert parse_extxyz_comment("x" * 10_000_000) == {}
    assert parse_extxyz_comment('note="' + "x" * 5_000_000 + '"') == {"note": "x" * 5_000_000}
