"""``bench.learning_dynamics``: each setting changes what it says, curves are read at the marks, and the report
gives the mean and spread over seeds with the ratio to the baseline (no training here: that is the benchmark)."""

import pytest

from bench import learning_dynamics as study
from bench.output import write_json


def test_each_setting_changes_only_what_it_names(tmp_path):
    base = study.experiment("baseline", "aspirin", 0, 15.0, tmp_path / "run", data=tmp_path)
    assert base.training.max_cpu_minutes == 15.0 and base.training.threads == 1 and base.training.test_every == 1
    assert base.data.path == str(tmp_path / "rmd17_aspirin_1000.xyz")
    protocol_training, protocol_model = study.PROTOCOLS["sake-small"]  # whatever the embedded config says now
    assert all(getattr(base.training, key) == value for key, value in protocol_training.items())
    assert base.model.hyperparameters["cutoff"] is None and protocol_model == {"cutoff": None}
    protocol_training, protocol_model = study.PROTOCOLS["sake-small"]  # whatever the embedded config says now
    assert all(getattr(base.training, key) == value for key, value in protocol_training.items())
    assert base.model.hyperparameters["cutoff"] is None and protocol_model == {"cutoff": None}
    for setting, (_, training, hyperparameters) in study.SETTINGS.items():
        config = study.experiment(setting, "ethanol", 2, 5.0, tmp_path / "run", data=tmp_path)
        assert config.training.seed == 2 and config.data.energy_unit == "eV"
        expected = dict(training)
        factor = expected.pop("learning_rate_factor", None)
        if factor is not None:
            expected["learning_rate"] = base.training.learning_rate * factor
            expected["min_learning_rate"] = base.training.min_learning_rate * factor
        for key, value in expected.items():
            assert getattr(config.training, key) == value
        changed = {f.name for f in base.training.__dataclass_fields__.values()} - {"seed", "max_cpu_minutes"}
        assert {k for k in changed if getattr(config.training, k) != getattr(base.training, k)} == set(expected)
        assert config.model.hyperparameters == {**base.model.hyperparameters, **hyperparameters}


def test_curve_marks_and_report(tmp_path):
    curve = [
        {"cpu_minutes": m, "energy_mae_mev": 1.0, "force_mae_mev_per_a": f} for m, f in ((2, 90), (4.9, 80), (5.2, 70))
    ]
    assert study.at_mark(curve, 5.0) == 80 and study.at_mark(curve, 1.0) is None
    for setting, values in {"baseline": (100.0, 80.0, 90.0), "amsgrad": (45.0, 45.0, 45.0)}.items():
        for seed, value in enumerate(values):
            record = {"setting": setting, "seed": seed, "epochs": 10, "marks": {"5": value, "15": value / 2}}
            write_json(study.result_path(tmp_path, "sake-small", "aspirin", setting, seed), record)
    table = study.report(tmp_path)
    assert (
        "| baseline | bench.accuracy_budget's protocol | 3 | 10 | 90.0 ± 10.0 (1.00x) | 45.0 ± 5.0 (1.00x) |" in table
    )
    assert "| amsgrad | AMSGrad (NequIP) | 3 | 10 | 45.0 ± 0.0 (0.50x) | 22.5 ± 0.0 (0.50x) |" in table
    assert "**sake-small on aspirin**" in table and "ethanol" not in table and "equiformer" not in table


@pytest.mark.parametrize("model", sorted(study.BASE_CONFIGS))
@pytest.mark.parametrize("setting", sorted(study.SETTINGS))
def test_every_setting_that_applies_builds_the_model(model, setting, tmp_path):
    from attnforce.models import build_model

    if not study.applies(setting, model):
        skipped = {
            "mean_aggregation",
            "official_layer",
            "cutoff_5A",
            "cutoff_5A_lr_x3",
            "cutoff_5A_lr_x3_energy_weight_1",
        }
        assert model.startswith("equiformer") and setting in skipped
        return
    config = study.experiment(setting, "aspirin", 0, 5.0, tmp_path, data=tmp_path, model=model)
    resolved = config.model.resolved()
    assert config.model.preset == model or resolved.architecture == "sake"
    assert sum(p.numel() for p in build_model(resolved.architecture, resolved.hyperparameters).parameters()) > 0
