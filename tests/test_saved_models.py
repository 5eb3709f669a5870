"""Saved models: state_dict + config + metadata, weights_only loading, clear errors, atomic writes."""

import numpy as np
import pytest
import torch
from conftest import ETHANOL, energy_and_forces, make_saved, random_molecule

from attnforce.checkpoint import SCHEMA_VERSION, load_model, save_model
from attnforce.export import export_torchscript
from attnforce.models import Potential, build_model


def test_round_trip_keeps_predictions_and_metadata(tmp_path, variant):
    saved = make_saved(variant, ETHANOL, dtype=torch.float64)
    path = tmp_path / "model.pt"
    save_model(path, saved.potential, saved.architecture, saved.hyperparameters, ETHANOL, {"note": "test"})
    raw = torch.load(path, weights_only=True)  # plain types and tensors only: no pickled module
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["metadata"]["units"] == {"length": "angstrom", "energy": "eV"}
    assert raw["metadata"]["cutoff"] == saved.hyperparameters["cutoff"]
    assert raw["metadata"]["atomic_numbers"] == ETHANOL and raw["metadata"]["elements"] == [1, 6, 8]
    loaded = load_model(path, dtype=torch.float64)
    positions = random_molecule(9, seed=8)
    before, after = (
        energy_and_forces(saved.potential, positions, ETHANOL),
        energy_and_forces(loaded.potential, positions, ETHANOL),
    )
    assert float(before[0]) == float(after[0])
    np.testing.assert_array_equal(before[1].numpy(), after[1].numpy())
    assert loaded.metadata["note"] == "test"


def test_missing_corrupt_and_foreign_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_model(tmp_path / "nothing.pt")
    corrupt = tmp_path / "corrupt.pt"
    saved = make_saved("sake-allpairs", ETHANOL)
    save_model(corrupt, saved.potential, saved.architecture, saved.hyperparameters, ETHANOL)
    corrupt.write_bytes(corrupt.read_bytes()[:2000])
    with pytest.raises(ValueError, match="corrupt.pt: not a readable attnforce model"):
        load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an attnforce model"):
        load_model(foreign)


def test_newer_schema_is_refused(tmp_path):
    saved = make_saved("sake-allpairs", ETHANOL)
    path = tmp_path / "future.pt"
    save_model(path, saved.potential, saved.architecture, saved.hyperparameters, ETHANOL)
    raw = torch.load(path, weights_only=True)
    raw["schema_version"] = SCHEMA_VERSION + 1
    torch.save(raw, path)
    with pytest.raises(ValueError, match=f"schema version {SCHEMA_VERSION + 1} is not one this attnforce reads"):
        load_model(path)


def test_schema_1_sake_switch_becomes_distance_attention(tmp_path):
    """Schema 1 called SAKE's distance-attention switch ``spatial_attention``; read back, it switches the same
    attention off (and the vector block, now ``spatial_attention``, stays on)."""
    hyperparameters = dict(hidden_features=8, num_layers=1, num_heads=2, num_rbf=8, cutoff=None)
    torch.manual_seed(0)
    without_distance = dict(hyperparameters, distance_attention=False)
    potential = Potential(build_model("sake", without_distance, torch.float64), 0.3, torch.zeros(119))
    path = tmp_path / "v1.pt"
    save_model(path, potential, "sake", without_distance, ETHANOL)
    raw = torch.load(path, weights_only=True)
    raw["schema_version"] = 1
    raw["hyperparameters"] = dict(hyperparameters, spatial_attention=False)
    torch.save(raw, path)
    loaded = load_model(path, dtype=torch.float64)
    assert loaded.hyperparameters == without_distance
    positions = random_molecule(9, seed=3)
    assert float(energy_and_forces(loaded.potential, positions, ETHANOL)[0]) == float(
        energy_and_forces(potential, positions, ETHANOL)[0]
    )


def test_failed_export_leaves_no_file(tmp_path):
    saved = make_saved("sake-allpairs", ETHANOL)
    output = tmp_path / "out.pt"
    with pytest.raises(ValueError, match=r"unsupported: atom 0 \(N\)"):
        export_torchscript(saved, output, atomic_numbers=[7, 1, 1, 1])
    assert list(tmp_path.iterdir()) == []
