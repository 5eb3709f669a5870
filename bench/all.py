"""Rerun the side-by-side benchmarks and rewrite their results in BENCHMARKS.md.

Steps, in order (each one process, nothing else running; ``--only`` picks some, with the steps that depend on
them and the summary plot, and the others keep their last results):

- ``model_cost``: our Equiformer against ``equiformer-pytorch`` (:mod:`bench.model_cost`);
- ``md_compare``: MD steps of SAKE, Equiformer and TensorNet through openmm-ml (:mod:`bench.md_compare`);
- ``accuracy_budget``: test errors after ``--minutes`` of training each (:mod:`bench.accuracy_budget`);
- ``integrator_training``: the N-body SAKE and EGNN learned integrators of ``training/configs/forecast_nbody_*.yaml``,
  trained together (one thread each) for ``--integrator-minutes`` of CPU time each;
- ``integrator_accuracy`` and ``integrator_speed``: their test errors (:mod:`bench.forecast_accuracy`) and forecast
  times against the simulator (:mod:`bench.forecast_speed`);
- ``summary``: one PNG of all of it (:mod:`bench.competitors_summary`).

Each step's output, timing, commit, machine and versions are kept in ``<results>/all.json``; at the end the block
between the ``bench.all`` markers of BENCHMARKS.md is rewritten from them (machine, date, versions, commands,
tables, ratios). A failing step stops the run (and its partner processes) and leaves BENCHMARKS.md as it was.
Everything runs on the CPU, also on a machine with a GPU.

Needs the ``bench`` extra (``pip install -e ".[bench]"``) for the steps against other packages. Run from the
repository root::

    python -m bench.all                                  # about 60 minutes on 2 cores
    python -m bench.all --only md_compare summary        # rerun some steps, keep the others
"""

import argparse
import dataclasses
import datetime
import importlib.util
import json
import logging
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.output import write_json

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("bench.all")

#: packages of the ``bench`` extra, by import name
EXTRA_MODULES = ["torchmdnet", "equiformer_pytorch", "openmmtools", "openmmml"]
#: every step, in the order they run and appear in BENCHMARKS.md
STEP_NAMES = (
    "model_cost",
    "md_compare",
    "accuracy_budget",
    "integrator_training",
    "integrator_accuracy",
    "integrator_speed",
    "summary",
)
#: step -> the steps whose results it invalidates (rerun with it); ``summary`` follows every step
DEPENDENTS = {"integrator_training": ("integrator_accuracy", "integrator_speed")}
INTEGRATOR_CONFIGS = {
    "sake": ROOT / "training" / "configs" / "forecast_nbody_sake.yaml",
    "egnn": ROOT / "training" / "configs" / "forecast_nbody_egnn.yaml",
}


@dataclasses.dataclass(frozen=True)
class Step:
    """One benchmark: its title in BENCHMARKS.md and its commands (run together when there are several).

    ``needs_extra``: it imports the packages of the ``bench`` extra; ``show_output``: its standard output (Markdown
    tables) goes into BENCHMARKS.md; ``images``: PNG files it writes in the results folder, shown under it."""

    name: str
    title: str
    commands: list[list[str]]
    needs_extra: bool = False
    show_output: bool = True
    images: tuple[str, ...] = ()


def plan(args: argparse.Namespace) -> list[Step]:
    """Every step of :data:`STEP_NAMES`, in that order, with the arguments of this run."""
    python = [sys.executable, "-m"]
    results, runs = Path(args.results), Path(args.runs)
    integrator_runs = {name: integrator_run(runs, name) for name in INTEGRATOR_CONFIGS}
    return [
        Step(
            "model_cost",
            "Model cost: our Equiformer against equiformer-pytorch",
            [python + ["bench.model_cost", "--json", str(results / "model_cost.json")]],
            needs_extra=True,
        ),
        Step(
            "md_compare",
            "MD throughput: our models against TensorNet through openmm-ml",
            [python + ["bench.md_compare", "--json", str(results / "md_compare.json")]],
            needs_extra=True,
        ),
        Step(
            "accuracy_budget",
            "Accuracy at an equal training budget: SAKE and Equiformer against TensorNet",
            [
                python
                + ["bench.accuracy_budget", "--minutes", f"{args.minutes:g}", "--output", str(runs / "accuracy_budget")]
                + ["--json", str(results / "accuracy_budget.json")]
            ],
            needs_extra=True,
        ),
        Step(
            "integrator_training",
            f"Learned integrators: SAKE and EGNN trained on N-body, {args.integrator_minutes:g} CPU minutes each",
            [python + ["attnforce.cli", "train", str(path.with_suffix(".yaml"))] for path in integrator_runs.values()],
            show_output=False,
        ),
        Step(
            "integrator_accuracy",
            "Learned integrators: N-body test errors of SAKE and EGNN",
            [
                python
                + ["bench.forecast_accuracy", *map(str, integrator_runs.values())]
                + [
                    "--png",
                    str(results / "integrator_accuracy.png"),
                    "--json",
                    str(results / "integrator_accuracy.json"),
                ]
            ],
            images=("integrator_accuracy.png",),
        ),
        Step(
            "integrator_speed",
            "Learned integrators: time to forecast the 2000 N-body test systems",
            [
                python
                + ["bench.forecast_speed", "--models"]
                + [f"{name}={path / 'best.pt'}" for name, path in integrator_runs.items()]
                + ["sake-shipped=default", "--repeats", "3", "--threads", "1"]
                + ["--json", str(results / "integrator_speed.json")]
            ],
        ),
        Step(
            "summary",
            "Summary plot",
            [
                python
                + ["bench.competitors_summary", "--results", str(results), "--output", str(results / "summary.png")]
            ],
            show_output=False,
            images=("summary.png",),
        ),
    ]


def integrator_run(runs: Path, name: str) -> Path:
    """The run directory of the learned integrator ``name`` (a key of :data:`INTEGRATOR_CONFIGS`); its config is
    the same path with ``.yaml``."""
    return runs / f"forecast_nbody_{name}"


def write_integrator_configs(runs: Path, cpu_minutes: float) -> None:
    """The N-body configs with the run's CPU budget, on the CPU, with run directories under ``runs`` (strictly
    re-read): nothing else of issue 4's protocol changes. Earlier runs in those directories are removed."""
    from training.config import dump_config, load_config

    runs.mkdir(parents=True, exist_ok=True)
    for name, source in INTEGRATOR_CONFIGS.items():
        shutil.rmtree(integrator_run(runs, name), ignore_errors=True)
        config = load_config(source)
        config.training.max_cpu_minutes = cpu_minutes
        config.training.max_minutes = None
        config.training.device = "cpu"  # the budget is CPU time, and BENCHMARKS.md reports CPU figures
        config.output = str(integrator_run(runs, name))
        path = integrator_run(runs, name).with_suffix(".yaml")
        dump_config(config, path)
        load_config(path)


def shown(command: list[str]) -> str:
    """A command as a user would type it: ``python -m ...`` from the repository root."""
    words = ["python" if word == sys.executable else word.replace(f"{ROOT}/", "") for word in command]
    return " ".join(shlex.quote(word) for word in words)


def run_step(step: Step) -> tuple[str, float]:
    """Run a step's commands (together when several) from the repository root; their stdout and the minutes.

    Raises RuntimeError naming the first command that failed, after stopping the others."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        outputs = [Path(folder) / f"{index}.out" for index in range(len(step.commands))]
        processes = []
        for command, output in zip(step.commands, outputs, strict=True):
            with open(output, "w") as stream:  # the child keeps its own handle
                processes.append(subprocess.Popen(command, cwd=ROOT, stdout=stream, text=True))
        while True:
            codes = [process.poll() for process in processes]  # every one, each time
            if all(code is not None for code in codes):
                break
            if any(code not in (None, 0) for code in codes):
                for process in processes:
                    if process.poll() is None:
                        process.terminate()
                        process.wait()
                break
            time.sleep(0.5)
        for command, process in zip(step.commands, processes, strict=True):
            if process.returncode != 0 and process.returncode != -signal.SIGTERM:
                raise RuntimeError(f"step {step.name}: `{shown(command)}` exited with {process.returncode}")
        if any(process.returncode != 0 for process in processes):
            raise RuntimeError(f"step {step.name}: stopped")
        text = "\n".join(output.read_text() for output in outputs)
    return text, (time.perf_counter() - start) / 60


def check_extra(steps: list[Step]) -> None:
    """Raise RuntimeError, with the command that installs them, if ``steps`` need the ``bench`` extra's packages and
    some are missing."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    needing = [step.name for step in steps if step.needs_extra]
    if missing and needing:
        raise RuntimeError(
            f'steps {needing} need the bench extra, and {missing} are not installed: pip install -e ".[bench]"'
        )


def selected(only: list[str] | None) -> list[str]:
    """The steps to run, in order: all, or ``only`` with the steps that depend on them and the summary plot."""
    if not only:
        return list(STEP_NAMES)
    chosen = set(only) | {"summary"}
    for name in only:
        chosen.update(DEPENDENTS.get(name, ()))
    return [name for name in STEP_NAMES if name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget of each accuracy run")
    parser.add_argument(
        "--integrator-minutes", type=float, default=15.0, help="CPU-time training budget of each learned integrator"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=STEP_NAMES,
        help="run these steps (with the steps that depend on them, and the summary plot); keep the others' results",
    )
    parser.add_argument("--results", default=str(ROOT / "bench" / "results" / "competitors"), help="JSON, PNG")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "bench_all"), help="training runs' folder")
    parser.add_argument("--document", default=str(ROOT / "BENCHMARKS.md"), help="the Markdown file to rewrite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.results, args.runs = str(Path(args.results).resolve()), str(Path(args.runs).resolve())
    results, document = Path(args.results), Path(args.document)
    names = selected(args.only)
    steps = [step for step in plan(args) if step.name in names]
    try:
        check_extra(steps)
        report.marker_span(document)  # before hours of work
    except (RuntimeError, ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2
    results.mkdir(parents=True, exist_ok=True)
    records_path = results / "all.json"
    records_file = json.loads(records_path.read_text()) if records_path.is_file() else {}
    records = records_file.setdefault("records", {})
    now = datetime.datetime.now(datetime.timezone.utc)
    run = {
        "id": now.isoformat(),
        "command": shown([sys.executable, "-m", "bench.all", *(argv if argv is not None else sys.argv[1:])]),
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "commit": report.commit(),  # before the steps write their results into the working tree
        "machine": report.machine(),
        "versions": report.versions(),
    }
    started = time.perf_counter()
    for index, step in enumerate(steps, 1):
        logger.info("step %d/%d: %s", index, len(steps), step.name)
        if step.name == "integrator_training":
            write_integrator_configs(Path(args.runs), args.integrator_minutes)
        try:
            output, minutes = run_step(step)
        except RuntimeError as error:
            logger.error("%s; %s is unchanged, the steps before it are kept in %s", error, document, records_path)
            return 1
        records[step.name] = {
            "title": step.title,
            "commands": [shown(command) for command in step.commands],
            "run_id": run["id"],
            "date": run["date"],
            "commit": run["commit"],
            "machine": run["machine"],
            "versions": run["versions"],
            "minutes": minutes,
            "output": output,
            "show_output": step.show_output,
            "images": list(step.images),
        }
        write_json(records_path, records_file)
    records_file["run"] = dict(run, minutes=(time.perf_counter() - started) / 60)
    write_json(records_path, records_file)
    block = report.render(records_file["run"], records, list(STEP_NAMES), results, document)
    report.replace_block(document, block)
    logger.info("rewrote the bench.all block of %s", document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
