"""The MD set-up and turn-taking step timing that the OpenMM benchmarks share (``bench.timing``)."""

import openmm
import pytest
from openmm import unit

from bench.output import write_json
from bench.timing import cpu_md_context, interleaved_step_seconds


def _context(threads: int):
    system = openmm.System()
    for _ in range(2):
        system.addParticle(12.0)
    positions = [openmm.Vec3(0.0, 0.0, 0.0), openmm.Vec3(0.3, 0.0, 0.0)] * unit.nanometer
    return cpu_md_context(system, positions, threads, 0.5)


def test_cpu_md_context_is_the_benchmarks_langevin_set_up():
    context, integrator = _context(threads=1)
    assert (
        context.getPlatform().getName() == "CPU" and context.getPlatform().getPropertyValue(context, "Threads") == "1"
    )
    assert integrator.getStepSize().value_in_unit(unit.femtosecond) == pytest.approx(0.5)
    assert integrator.getTemperature().value_in_unit(unit.kelvin) == pytest.approx(300.0)
    assert integrator.getFriction().value_in_unit(unit.picosecond**-1) == pytest.approx(1.0)
    positions = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert positions[1, 0] == pytest.approx(0.3)


def test_interleaved_step_seconds_steps_every_integrator_alike():
    runs = {name: _context(threads=1) for name in ("a", "b")}
    seconds = interleaved_step_seconds({name: integrator for name, (_, integrator) in runs.items()}, 3, 4, 5)
    assert set(seconds) == {"a", "b"} and all(value > 0.0 for value in seconds.values())
    for context, _ in runs.values():
        assert context.getState().getStepCount() == 3 + 4 * 5


def test_write_json_creates_the_folder_and_keeps_an_existing_files_permissions(tmp_path):
    path = tmp_path / "new" / "results.json"
    write_json(path, {"rows": [1, 2]})
    assert path.read_text() == '{\n  "rows": [\n    1,\n    2\n  ]\n}'
    path.chmod(0o640)
    write_json(path, {"rows": []})
    assert oct(path.stat().st_mode & 0o777) == "0o640" and path.read_text() == '{\n  "rows": []\n}'
