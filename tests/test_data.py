"""Readers convert the file's units; splits are seeded; configs are strict."""

import numpy as np
import pytest
import torch
from conftest import DATA

from attnforce.units import ev_per_kcal_per_mol, ev_per_mev
from systems import random_split, read_dataset, read_extxyz, read_npz
from systems.frames import Frames
from training.config import load_config


def test_rmd17_aspirin_is_read_in_ev(aspirin_xyz):
    frames = read_extxyz(aspirin_xyz, "meV")
    assert len(frames) == 1000
    assert frames.atomic_numbers.tolist() == [6] * 7 + [8] * 3 + [6] * 2 + [8] + [1] * 8
    first_line = aspirin_xyz.read_text().splitlines()[1]
    stored = float(first_line.split("energy=")[1].split()[0])
    assert frames.energies[0] == pytest.approx(stored * ev_per_mev, rel=1e-15)
    assert frames.energies[0] == pytest.approx(-17617.710229506634, rel=1e-12)  # the file's meV, in eV


def test_md17_ethanol_kcal_per_mol_and_rmd17_ethanol_ev_agree_in_scale():
    md17, rmd17 = DATA / "md17" / "md17_ethanol_2000.xyz", DATA / "md17" / "rmd17_ethanol_a.xyz"
    if not md17.is_file():
        pytest.skip("reference data not found")
    a, b = read_extxyz(md17, "kcal/mol"), read_extxyz(rmd17, "eV")
    # Different reference methods, same molecule: energies within 0.2% and force scales alike once both are in eV.
    assert abs(a.energies.mean() / b.energies.mean() - 1) < 2e-3
    assert np.sqrt((a.forces**2).mean()) == pytest.approx(np.sqrt((b.forces**2).mean()), rel=0.15)


@pytest.mark.parametrize("layout", ["md17", "rmd17"])
def test_npz_layouts_are_read_in_ev(tmp_path, layout):
    rng = np.random.default_rng(0)
    z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])
    r, e, f = rng.normal(size=(5, 9, 3)), rng.normal(size=5) - 97000, rng.normal(size=(5, 9, 3))
    names = {"md17": ("R", "z", "E", "F"), "rmd17": ("coords", "nuclear_charges", "energies", "forces")}[layout]
    path = tmp_path / f"{layout}.npz"
    np.savez(path, **dict(zip(names, (r, z, e[:, None] if layout == "md17" else e, f))))
    frames = read_dataset(path, "kcal/mol")
    np.testing.assert_allclose(frames.energies, e * ev_per_kcal_per_mol, rtol=1e-15)
    np.testing.assert_allclose(frames.forces, f * ev_per_kcal_per_mol, rtol=1e-15)
    np.testing.assert_array_equal(frames.positions, r)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_is_memory_mapped_and_read_only_where_used(tmp_path, compressed):
    """An uncompressed file (as published) is mapped, not loaded: reading it allocates far less than one array;
    a compressed one is read into memory once. Both give the same frames in eV."""
    import tracemalloc

    rng = np.random.default_rng(1)
    frames_count, atoms = 20_000, 21  # 10 MB per (F, N, 3) float64 array
    r, f = rng.normal(size=(frames_count, atoms, 3)), rng.normal(size=(frames_count, atoms, 3))
    e = rng.normal(size=(frames_count, 1))
    path = tmp_path / "big.npz"
    (np.savez_compressed if compressed else np.savez)(path, R=r, z=np.arange(1, atoms + 1), E=e, F=f)
    del r  # compared below through the file
    tracemalloc.start()
    frames = read_npz(path, "kcal/mol")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if compressed:
        assert peak > 2 * f.nbytes  # positions and forces held in memory
    else:
        assert isinstance(frames.positions, np.memmap)
        assert peak < f.nbytes / 4  # energies and the chunked finiteness check only
    picked = np.array([5, 19_999, 0])
    part = frames.subset(picked)
    assert type(part.positions) is np.ndarray and type(part.forces) is np.ndarray
    np.testing.assert_allclose(part.forces, f[picked] * ev_per_kcal_per_mol, rtol=1e-15)
    np.testing.assert_allclose(part.energies, e[picked, 0] * ev_per_kcal_per_mol, rtol=1e-15)
    with np.load(path) as stored:
        np.testing.assert_array_equal(part.positions, stored["R"][picked])


def test_npz_of_another_dtype_or_byte_order_is_read_as_native_float64(tmp_path):
    rng = np.random.default_rng(2)
    r, f = rng.normal(size=(4, 3, 3)), rng.normal(size=(4, 3, 3))
    np.savez(tmp_path / "odd.npz", R=r.astype(">f8"), z=np.array([8, 1, 1]), E=np.zeros(4), F=f.astype(np.float32))
    part = read_npz(tmp_path / "odd.npz", "eV").subset(np.arange(4))
    for array in (part.positions, part.forces):
        assert array.dtype == np.dtype(np.float64) and array.dtype.isnative
    np.testing.assert_array_equal(part.positions, r)
    np.testing.assert_allclose(part.forces, f.astype(np.float32), rtol=0)
    torch.as_tensor(part.positions)  # a byte-swapped array would be refused here


def test_npz_with_nan_or_truncated_is_refused(tmp_path):
    r = np.zeros((3, 2, 3))
    r[2, 1, 0] = np.nan
    np.savez(tmp_path / "nan.npz", R=r, z=np.array([1, 1]), E=np.zeros(3), F=np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="positions contain NaN"):
        read_npz(tmp_path / "nan.npz")
    data = (tmp_path / "nan.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz file"):
        read_npz(tmp_path / "cut.npz")


def test_npz_with_unknown_keys_names_both_layouts(tmp_path):
    np.savez(tmp_path / "x.npz", positions=np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="match neither MD17"):
        read_npz(tmp_path / "x.npz")


def test_unknown_energy_unit_and_element_and_truncation_are_named(tmp_path, aspirin_xyz):
    with pytest.raises(ValueError, match="unknown energy unit 'Ry'"):
        read_extxyz(aspirin_xyz, "Ry")
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=1.0\nC 0 0 0 0 0 0\nXq 1 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"bad.xyz, line 4: bad atom line \(unknown element symbol 'Xq'\)"):
        read_extxyz(bad, "eV")
    bad.write_text("3\nProperties=species:S:1:pos:R:3:forces:R:3 energy=1.0\nC 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="truncated"):
        read_extxyz(bad, "eV")
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_extxyz(tmp_path / "missing.xyz", "eV")


def test_frames_refuse_wrong_shapes_and_nan():
    z = np.array([1, 1])
    with pytest.raises(ValueError, match=r"forces has shape \(3, 2, 2\), expected \(3, 2, 3\)"):
        Frames(z, np.zeros((3, 2, 3)), np.zeros(3), np.zeros((3, 2, 2)))
    positions = np.zeros((3, 2, 3))
    positions[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="positions contain NaN"):
        Frames(z, positions, np.zeros(3), np.zeros((3, 2, 3)))


def test_random_split_is_seeded_disjoint_and_complete():
    a = random_split(1000, [800, 100, -1], seed=3)
    b = random_split(1000, [800, 100, -1], seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert [len(s) for s in a] == [800, 100, 100]
    assert len(np.unique(np.concatenate(a))) == 1000
    assert not np.array_equal(random_split(1000, [800, 100, -1], seed=4)[0], a[0])
    with pytest.raises(ValueError, match="need 1100 frames"):
        random_split(1000, [1000, 100], seed=0)


def test_config_is_loaded_strictly(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("data: {path: x.xyz, energy_unit: eV}\ntraining: {epochs: 3}\n")
    assert load_config(good).training.epochs == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: x.xyz, energy_unit: eV}\ntraining: {epoch: 3}\n")
    with pytest.raises(ValueError, match=r"training: unknown key\(s\) \['epoch'\]"):
        load_config(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("data: {path: x.xyz}\n")
    with pytest.raises(ValueError, match="energy_unit"):
        load_config(missing)


def test_ase_database_round_trip(tmp_path, aspirin_xyz):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    frames = read_extxyz(aspirin_xyz, "meV").subset(np.arange(4))
    path = tmp_path / "aspirin.db"
    with connect(str(path)) as db:
        for positions, energy, forces in zip(frames.positions, frames.energies, frames.forces, strict=True):
            atoms = Atoms(numbers=frames.atomic_numbers, positions=positions)
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            db.write(atoms)
    read = read_dataset(path, "eV")
    np.testing.assert_array_equal(read.atomic_numbers, frames.atomic_numbers)
    np.testing.assert_allclose(read.positions, frames.positions)
    np.testing.assert_allclose(read.energies, frames.energies)
    np.testing.assert_allclose(read.forces, frames.forces)
    with pytest.raises(ValueError, match="no rows match"):
        from systems.readers import read_ase_db

        read_ase_db(path, selection="natoms=3")
    (tmp_path / "bad.db").write_text("not a database")
    with pytest.raises(ValueError, match="not a readable ASE database"):
        read_dataset(tmp_path / "bad.db", "eV")
