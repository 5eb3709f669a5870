"""Side-by-side timing: the candidates take turns within each round, so drifts of the machine's speed fall on
all of them alike; and the MD set-up that every OpenMM benchmark times."""

import functools
import statistics
import time
from collections.abc import Callable


def interleaved_medians(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of one call of each of ``runs`` over ``rounds`` rounds, the calls taking turns in each."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def cpu_md_context(system, positions, threads: int, timestep_fs: float):
    """A Context of ``system`` on OpenMM's CPU platform (``threads`` threads) with a ``LangevinMiddleIntegrator``
    at 300 K, friction 1/ps and ``timestep_fs`` fs, at ``positions`` (with length units): (context, integrator)."""
    import openmm
    from openmm import unit

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, timestep_fs * unit.femtosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)})
    context.setPositions(positions)
    return context, integrator


def interleaved_step_seconds(integrators: dict, warmup: int, steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per MD step of each of ``integrators`` (name -> OpenMM integrator of a live Context): each
    takes ``warmup`` steps, then rounds of ``steps`` steps, taking turns (:func:`interleaved_medians`)."""
    for integrator in integrators.values():
        integrator.step(warmup)
    runs = {name: functools.partial(integrator.step, steps) for name, integrator in integrators.items()}
    return {name: seconds / steps for name, seconds in interleaved_medians(runs, rounds).items()}
