"""Forecasting the 2000 N-body test systems 1000 steps (1 time unit) ahead: learned integrators against the
numerical simulator, side by side in one run.

- ``simulator``: the protocol's own integrator (:func:`systems.nbody.advance`, kick-drift, dt = 0.001, 1000
  steps), vectorised over the systems in NumPy; it produced the reference, so its error is zero by construction.
- ``simulator, dt = 0.01 / 0.1``: the same integrator with 100 or 10 larger steps, the cheap numerical
  alternative to a learned one (forces clipped to the protocol's 0.1 / 0.001 as in the reference).
- learned integrators: one forward pass per system, in batches of ``--batch-size``, float32.

Every method runs ``--repeats`` times; the table gives the median wall time, its ratio to the simulator's and
the position MSE against the reference frame 40. Threads: ``--threads`` for torch; NumPy's elementwise work
is single-threaded.

Run from the repository root::

    python -m bench.forecast_speed --models nbody=default egnn=runs/forecast_nbody_egnn/best.pt
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.output import write_json
from integrators.forecast import step
from integrators.saved import load_forecaster
from systems.forecasting import NBODY_DT, load_split
from systems.nbody import advance


def _timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="*", default=["sake=default"], help="LABEL=MODEL pairs (default: sake=default)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    test = load_split("nbody", "test")
    rows = []

    def simulator(steps: int):
        dt = NBODY_DT * 1000 / steps
        return advance(test.positions, test.velocities, test.charges, steps, dt=dt, max_force=0.1 / NBODY_DT)[0]

    reference_seconds = None
    for label, steps in (
        ("simulator, dt = 0.001 (reference)", 1000),
        ("simulator, dt = 0.01", 100),
        ("simulator, dt = 0.1", 10),
    ):
        seconds, positions = _timed(lambda steps=steps: simulator(steps), args.repeats)
        reference_seconds = reference_seconds or seconds
        rows.append((label, seconds, positions))
    for pair in args.models:
        label, model = pair.split("=", 1)
        saved = load_forecaster(model, "nbody")
        step(saved.model, test.positions[:10], test.velocities[:10], test.types[:10])  # warm-up
        seconds, (positions, _) = _timed(
            lambda saved=saved: step(saved.model, test.positions, test.velocities, test.types, args.batch_size),
            args.repeats,
        )
        rows.append((f"{label} ({saved.architecture}, {Path(saved.path).name})", seconds, positions))

    results = []
    lines = [
        f"Forecast of {len(test)} N-body test systems, 1000 steps of {NBODY_DT} ahead; {args.threads} torch thread(s), "
        f"median of {args.repeats}",
        "",
        "| method | wall time (s) | time / simulator's | position MSE vs reference |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds, positions in rows:
        mse = float(np.mean((positions - test.target_positions) ** 2))
        results.append({"method": label, "seconds": seconds, "ratio": seconds / reference_seconds, "position_mse": mse})
        lines.append(f"| {label} | {seconds:.3f} | {seconds / reference_seconds:.4f} | {mse:.3g} |")
    print("\n".join(lines))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
